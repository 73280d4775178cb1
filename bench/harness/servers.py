"""The servers under test: how to start each on a scenario, when it is ready, how to stop it.

Owns the command lines of ferricorn, Granian, uvicorn and the hyper ceiling
(``server_command``), the paths of the Rust example binaries, what a run needs before it
starts (``missing_requirements``, ``raise_fd_limit``), free ports, the readiness check with
one real request (``wait_until_serving``), shutdown (``stop_server``) and the set-up every
child process gets (``child_setup``: SIGINT restored, CPU pinning). Must not put load on a
server nor sample it: the drivers and procstat do.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import REPO
from .scenarios import SCENARIOS, Scenario

HOST = "127.0.0.1"
ALL_SERVERS = ("ferricorn", "granian", "uvicorn", "hyper")


def example_binary(name: str) -> Path:
    """Where ``cargo build --release --example NAME`` puts that example."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "examples" / name


def hyper_binary() -> Path:
    """The ceiling server (bench/hyper_hello.rs)."""
    return example_binary("hyper_hello")


def loadgen_binary() -> Path:
    """The load generator for the sse-tokens and idle-10k scenarios (bench/loadgen.rs)."""
    return example_binary("loadgen")


def server_command(
    server: str, scenario: Scenario, port: int, ferricorn_args: list[str]
) -> list[str] | None:
    """The command line serving ``scenario`` on ``port``, or None if the server can't run it."""
    py = sys.executable
    extra = list(scenario.server_args.get(server, ()))
    if server == "ferricorn":
        return [
            py, "-m", "ferricorn", scenario.app, "--port", str(port),
            "--no-access-log", "--log-level", "warning", *extra, *ferricorn_args,
        ]
    if server == "granian":
        # --http 1: all load here is HTTP/1.1, and the other servers speak only that.
        return [
            py, "-m", "granian", "--interface", "asgi", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--http", "1", "--no-access-log", "--log-level", "warning",
            *extra, scenario.app,
        ]
    if server == "uvicorn":
        return [
            py, "-m", "uvicorn", scenario.app, "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning", *extra,
        ]
    if server == "hyper":
        if scenario.ceiling is None:
            return None
        return [str(hyper_binary()), "--port", str(port), *scenario.ceiling]
    raise ValueError(f"unknown server {server!r}")


def missing_requirements(servers: list[str], scenarios: list[str]) -> list[str]:
    """What is missing to run ``scenarios`` on ``servers`` (empty when all is there)."""
    problems = []
    kinds = {SCENARIOS[name].kind for name in scenarios}
    if kinds & {"wrk", "overload"} and shutil.which("wrk") is None:
        problems.append("wrk is not on PATH (apt-get install wrk)")
    if kinds & {"sse", "idle", "ws"} and not loadgen_binary().exists():
        problems.append(
            f"{loadgen_binary()} is missing (cargo build --release --example loadgen)"
        )
    modules = {"ferricorn": "ferricorn", "granian": "granian", "uvicorn": "uvicorn"}
    for server in servers:
        if server in modules and importlib.util.find_spec(modules[server]) is None:
            problems.append(f"{server} is not installed in {sys.prefix}")
        with_ceiling = any(SCENARIOS[name].ceiling is not None for name in scenarios)
        if server == "hyper" and with_ceiling and not hyper_binary().exists():
            problems.append(
                f"{hyper_binary()} is missing "
                "(cargo build --release --example hyper_hello)"
            )
    if {"granian", "uvicorn"} & set(servers):
        for module in ("uvloop", "httptools"):
            if importlib.util.find_spec(module) is None:
                problems.append(f"{module} is not installed in {sys.prefix}")
    # uvicorn's --ws auto picks its websockets-sansio protocol when websockets is installed.
    if "ws" in kinds and "uvicorn" in servers and importlib.util.find_spec("websockets") is None:
        problems.append(f"websockets is not installed in {sys.prefix} (uvicorn[standard])")
    return problems


def raise_fd_limit(needed: int, scenario: str) -> str | None:
    """Raise this process's soft RLIMIT_NOFILE to ``needed`` or more (servers inherit it).

    Returns what is wrong when the hard limit is too low for ``scenario``, else None.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"the open-file limit is {hard} (hard), {needed} are needed for {scenario}"
            f" (raise it, e.g. ulimit -n {needed}, or leave {scenario} out)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return None


def free_port() -> int:
    """A currently free loopback TCP port (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_request(scenario: Scenario, port: int, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send the scenario's request once (as wrk will) and return (status, body)."""
    headers = {"Content-Type": scenario.content_type} if scenario.content_type else {}
    request = urllib.request.Request(
        f"http://{HOST}:{port}{scenario.path}",
        data=scenario.body if scenario.method == "POST" else None,
        method=scenario.method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until_serving(
    proc: subprocess.Popen, scenario: Scenario, port: int, timeout: float = 30.0
) -> str | None:
    """Wait until the server accepts connections, then check one real request.

    Returns None when the server answers correctly, otherwise what went wrong.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return f"server exited with code {proc.returncode} before serving"
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > deadline:
                return f"server not accepting connections after {timeout:.0f}s"
            time.sleep(0.05)
    try:
        status, body = http_request(scenario, port)
    except (OSError, urllib.error.URLError) as err:
        return f"request failed: {err}"
    problem = scenario.check(status, body)
    return f"wrong answer: {problem}" if problem else None


def stop_server(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGINT the server (then SIGTERM), waiting up to ``grace`` s, then SIGKILL its group."""
    for sig, wait_s in ((signal.SIGINT, grace), (signal.SIGTERM, 3.0)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            print(f"server {proc.pid} still running {wait_s:g}s after {sig.name}", file=sys.stderr)
    # The server runs in its own session (process group id == its pid): this reaches any
    # worker it leaves behind, and only processes this script started.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """A preexec_fn: default SIGINT handling, and pinning to ``cpus`` when given.

    A harness started in the background (nohup, CI, ``cmd &``) may inherit SIGINT ignored,
    and children would inherit that too; servers must see SIGINT to shut down cleanly.
    """

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup
