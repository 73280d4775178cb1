#!/usr/bin/env python3
"""Benchmark orchestrator: ferricorn against uvicorn, Granian and a pure-Rust hyper ceiling.

For each round, each scenario and each server in turn (the server order rotates every round),
it starts the server as a subprocess on a free loopback port with one worker, checks that the
app answers correctly, runs a short wrk warm-up and then a measured ``wrk --latency`` run, and
stops the server (SIGINT, then SIGKILL). Per run it records requests/s, the 50/75/90/99%
latencies and the server's CPU time per request (utime+stime of the whole process tree from
/proc, which is steadier than requests/s on a small, noisy machine). It reports the medians
across rounds with the ratios of the baseline server (ferricorn) to each other server, as a
table on stdout, as Markdown (``--out``, default bench/RESULTS.md) and as a chart (``--chart``,
default docs/bench.png). Raw per-run data and logs go to bench/out/.

Five scenarios are measured with ``target/release/examples/loadgen`` (bench/loadgen.rs)
instead of wrk, because wrk can neither time the events inside a response, hold connections
idle nor speak WebSocket: ``sse-tokens`` (1,000 concurrent token streams: events/s, inter-event
delays, peak RSS per open stream), ``sse-2k`` and ``sse-10k`` (the same with 2,000 and 10,000
streams of 40 events 50 ms apart) and ``idle-10k`` (10,000 idle connections: RSS per
connection, latency of the requests served meanwhile, connections still open at the end) get
their own report section;
``ws-echo`` (100 WebSocket clients doing echo round trips for ``--duration`` seconds) joins the
wrk tables, with messages/s in place of requests/s.

Two more get the "Cancellation and overload" section: ``cancel`` (asyncio clients in this
process abandon requests whose app task sleeps; the delay from each close to the
``CancelledError`` in the app, bench/apps/cancel_probe.py) and ``overload`` (the 100 ms app
under twice the load its concurrency limit admits, wrk counting the responses by status with
bench/lua/count_status.lua). Scenarios can pass their own flags to each server
(``Scenario.server_args``), e.g. ferricorn's ``--cancel-on-disconnect``.

Run it from anywhere; when ``.venv-bench`` exists in the repo root and this is not already its
interpreter, the script re-executes itself with it. ``make bench`` (bench/bench.mk) sets up
that venv. Only the standard library is needed, plus matplotlib for the chart.

Examples::

    python bench/run.py
    python bench/run.py --servers granian,uvicorn --scenarios hello,echo-4k --rounds 1
    python bench/run.py --from-json bench/out/results.json   # re-render reports only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANALYSIS = REPO / "bench" / "ANALYSIS.md"
VENV = REPO / ".venv-bench"
OUT_DIR = REPO / "bench" / "out"
LUA_DIR = REPO / "bench" / "lua"
HOST = "127.0.0.1"
ALL_SERVERS = ("ferricorn", "granian", "uvicorn", "hyper")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Request bodies sent by the wrk Lua scripts in bench/lua/; keep both sides in sync.
BODY_4K = b"0123456789abcdef" * 256
BODY_1M = b"0123456789abcdef" * 65536
FASTAPI_ITEM = b'{"name":"widget","price":9.99,"quantity":3,"tags":["red","small","sale"]}'


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

Check = Callable[[int, bytes], "str | None"]


def expect_body(expected: bytes) -> Check:
    """A check that wants status 200 and exactly ``expected`` as the body."""

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}, expected 200"
        if body != expected:
            return f"body {body[:60]!r}... ({len(body)} bytes), expected {len(expected)} bytes"
        return None

    return check


def expect_json(predicate: Callable[[object], bool], what: str) -> Check:
    """A check that wants status 200 and a JSON body satisfying ``predicate``."""

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}, expected 200: {body[:200]!r}"
        try:
            document = json.loads(body)
        except ValueError:
            return f"body is not JSON: {body[:60]!r}"
        return None if predicate(document) else f"expected {what}, got {body[:200]!r}"

    return check


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario: the app to serve and the load to put on it."""

    name: str
    app: str  # import target, "module:attribute"
    summary: str
    check: Check = field(repr=False)
    method: str = "GET"
    path: str = "/"
    connections: int = 100
    lua: str | None = None  # file name in bench/lua/
    body: bytes = field(default=b"", repr=False)
    content_type: str | None = None
    ideal_rps: float | None = None  # when the app itself bounds the throughput (events/s: sse)
    wrk_timeout_s: int = 5
    kind: str = "wrk"  # the load generator: "wrk", or a loadgen mode ("sse", "idle", "ws")
    load_path: str | None = None  # loadgen's request path, when it differs from ``path``
    hold_s: float = 0.0  # idle: seconds loadgen holds the connections once all are open
    events: int = 0  # sse: events per stream (the app's ``n``)
    interval_s: float = 0.0  # sse: seconds between two events of a stream (``interval``)
    # The hyper ceiling's flags for this scenario (examples/hyper_hello.rs), or None where
    # there is no pure-Rust equivalent of the app to compare with.
    ceiling: tuple[str, ...] | None = None
    # Extra command-line flags per server ("ferricorn", "granian", "uvicorn"), e.g. limits.
    server_args: dict[str, tuple[str, ...]] = field(
        default_factory=dict, hash=False, compare=False, repr=False
    )


# sse-tokens: what each of the 1,000 streams carries (bench/apps/sse_tokens.py).
SSE_EVENTS = 200
SSE_INTERVAL_S = 0.01
# sse-2k and sse-10k: 2,000 and 10,000 streams on one worker, each 40 events 50 ms apart (2 s
# per stream).
SSE_2K_STREAMS = 2_000
SSE_10K_STREAMS = 10_000
SSE_10K_EVENTS = 40
SSE_10K_INTERVAL_S = 0.05
# ws-echo: the WebSocket clients, each doing sequential echo round trips of a message this big.
WS_CLIENTS = 100
WS_MESSAGE_BYTES = 32
# idle-10k: RSS is read this long after loadgen reports all connections open.
IDLE_SETTLE_S = 1.0
# idle-10k: loadgen connects one at a time without a timeout, so a server that stops accepting
# (Granian at its --backpressure, which defaults to its --backlog, 1024) stalls it in SYN
# retries. The run is cut short when the server's socket count has not grown for this long.
IDLE_STALL_S = 10.0
RSS_SAMPLE_S = 0.05  # RSS sampling period while loadgen runs
# sse and ws: the server's open descriptors are counted every this many RSS samples (0.5 s),
# since listing 10,000 of them takes a few milliseconds.
FD_SAMPLE_EVERY = 10
LOADGEN_TIMEOUT_S = 180.0  # a loadgen run taking longer than this is killed and marked failed
# cancel: the client sends GET /work?id=N, waits CANCEL_HOLD_S and closes the connection, with
# CANCEL_CONCURRENCY such clients at a time; CANCEL_SETTLE_S after the last close the harness
# collects the app's cancel times. --cancel-requests sets N (default CANCEL_REQUESTS).
CANCEL_REQUESTS = 300
CANCEL_CONCURRENCY = 20
CANCEL_HOLD_S = 0.05
CANCEL_SETTLE_S = 1.0
# overload: the 100 ms app with OVERLOAD_CONNECTIONS wrk connections, twice the OVERLOAD_LIMIT
# requests that ferricorn (and uvicorn, counting connections) let in at once.
OVERLOAD_LIMIT = 200
OVERLOAD_CONNECTIONS = 2 * OVERLOAD_LIMIT


def sse_delay_target_ms(scenario: Scenario) -> float:
    """The p99 inter-event delay an sse scenario should stay under: twice the app's interval."""
    return 2 * scenario.interval_s * 1000


def _stream_body() -> bytes:
    chunks = [f"chunk {i:02d} ".ljust(127, ".").encode() + b"\n" for i in range(10)]
    return b"".join(chunks)


def token_streams(
    name: str, streams: int, events: int, interval_s: float, summary: str | None = None
) -> Scenario:
    """An sse scenario: ``streams`` loadgen clients at once, each reading one stream of
    ``events`` small events ``interval_s`` apart from bench/apps/sse_tokens.py."""
    ideal = streams / interval_s
    return Scenario(
        name=name,
        app="bench.apps.sse_tokens:app",
        summary=summary or f"{streams:,} concurrent text/event-stream streams on one worker,"
        f" each {events} `data:` events {interval_s * 1000:g} ms apart, measured with loadgen;"
        f" ideal {ideal:,.0f} events/s, target p99 inter-event delay"
        f" <= {2 * interval_s * 1000:g} ms; RSS per open stream",
        kind="sse",
        path="/?n=3&interval=0",  # the readiness check; the load uses load_path
        load_path=f"/?n={events}&interval={interval_s}",
        connections=streams,
        events=events,
        interval_s=interval_s,
        ideal_rps=ideal,
        check=expect_body(b"data: tok0\n\ndata: tok1\n\ndata: tok2\n\n"),
        ceiling=(),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="hello",
            app="bench.apps.hello:app",
            summary='GET, 13-byte "Hello, world!" text body',
            ceiling=(),
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="json",
            app="bench.apps.json_1k:app",
            summary="GET, 1 KiB pre-serialized JSON document",
            check=expect_json(lambda d: isinstance(d, dict) and len(d["users"]) == 8, "8 users"),
        ),
        Scenario(
            name="echo-4k",
            app="bench.apps.echo_4k:app",
            summary="POST 4 KiB, read with receive() and echoed back",
            method="POST",
            lua="post_4k.lua",
            body=BODY_4K,
            content_type="application/octet-stream",
            check=expect_body(BODY_4K),
        ),
        Scenario(
            name="upload-1m",
            app="bench.apps.upload_1m:app",
            summary="POST 1 MiB, counted chunk by chunk, reply is the byte count",
            method="POST",
            lua="post_1m.lua",
            body=BODY_1M,
            content_type="application/octet-stream",
            check=expect_body(str(len(BODY_1M)).encode()),
            wrk_timeout_s=10,
        ),
        Scenario(
            name="stream-10",
            app="bench.apps.stream_10:app",
            summary="GET, 10 x 128-byte more_body chunks (chunked encoding)",
            check=expect_body(_stream_body()),
        ),
        Scenario(
            name="slow-100ms",
            app="bench.apps.slow_100ms:app",
            summary="GET, app awaits asyncio.sleep(0.1); 1,000 connections, ideal 10,000 req/s",
            connections=1000,
            ideal_rps=10_000.0,
            ceiling=("--delay-ms", "100"),
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="fastapi",
            app="bench.apps.fastapi_items:app",
            summary="FastAPI POST /items with a pydantic body, JSON reply",
            method="POST",
            path="/items",
            lua="fastapi_item.lua",
            body=FASTAPI_ITEM,
            content_type="application/json",
            check=expect_json(
                lambda d: d == {"name": "widget", "total": 29.97, "tag_count": 3},
                '{"name":"widget","total":29.97,"tag_count":3}',
            ),
        ),
        token_streams(
            "sse-tokens", 1000, SSE_EVENTS, SSE_INTERVAL_S,
            summary=f"1,000 concurrent GET text/event-stream streams of {SSE_EVENTS} small"
            f" `data:` events {SSE_INTERVAL_S * 1000:g} ms apart (LLM-style token streaming),"
            " measured with loadgen; ideal 100,000 events/s, target p99 inter-event delay"
            f" <= {2 * SSE_INTERVAL_S * 1000:g} ms",
        ),
        token_streams("sse-2k", SSE_2K_STREAMS, SSE_10K_EVENTS, SSE_10K_INTERVAL_S),
        token_streams("sse-10k", SSE_10K_STREAMS, SSE_10K_EVENTS, SSE_10K_INTERVAL_S),
        Scenario(
            name="ws-echo",
            app="bench.apps.ws_echo:app",
            summary=f"WebSocket echo: {WS_CLIENTS} clients, each sends a {WS_MESSAGE_BYTES}-byte"
            " text message and waits for the echo, over and over (loadgen ws); throughput is"
            " echo round trips (messages) per second, latency the round trip",
            kind="ws",
            path="/",  # the readiness check (plain HTTP); the WebSocket load uses load_path
            load_path="/ws",
            connections=WS_CLIENTS,
            check=expect_body(b"ws-echo"),
        ),
        Scenario(
            name="idle-10k",
            app="bench.apps.hello:app",
            summary="10,000 idle connections (nothing sent) held open 3 s while loadgen times"
            " one GET / on a fresh connection every 100 ms; measures RSS per connection",
            kind="idle",
            connections=10_000,
            hold_s=3.0,
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="cancel",
            app="bench.apps.cancel_probe:app",
            summary="GET /work?id=N (the app sleeps 60 s), client closes the connection after"
            f" {CANCEL_HOLD_S * 1000:g} ms; delay from the close to CancelledError in the app's"
            f" task, {CANCEL_CONCURRENCY} clients at a time (asyncio sockets in the harness);"
            " ferricorn with --cancel-on-disconnect, the others with their defaults",
            kind="cancel",
            path="/results",  # the readiness check
            check=expect_json(lambda d: isinstance(d, dict) and "cancels" in d, "results"),
            server_args={"ferricorn": ("--cancel-on-disconnect",)},
        ),
        Scenario(
            name="overload",
            app="bench.apps.slow_100ms:app",
            summary=f"the 100 ms app under {OVERLOAD_CONNECTIONS} wrk connections, twice the"
            f" {OVERLOAD_LIMIT} requests ferricorn lets in at once (--limit-concurrency"
            f" {OVERLOAD_LIMIT} --limit-queue 0: the rest get 503 at once); uvicorn with"
            f" --limit-concurrency {OVERLOAD_LIMIT} (counts connections), Granian has no such"
            " limit (defaults); responses counted by status (bench/lua/count_status.lua)",
            kind="overload",
            connections=OVERLOAD_CONNECTIONS,
            lua="count_status.lua",
            check=expect_body(b"Hello, world!"),
            server_args={
                "ferricorn": ("--limit-concurrency", str(OVERLOAD_LIMIT), "--limit-queue", "0"),
                "uvicorn": ("--limit-concurrency", str(OVERLOAD_LIMIT)),
            },
        ),
    ]
}


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


def example_binary(name: str) -> Path:
    """Where ``cargo build --release --example NAME`` puts that example."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "examples" / name


def hyper_binary() -> Path:
    """The ceiling server (examples/hyper_hello.rs)."""
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


# --------------------------------------------------------------------------------------------
# Processes: ports, readiness, CPU accounting, shutdown
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A currently free loopback TCP port (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onward), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (Granian runs its worker as a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _read_stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU seconds of the process tree, plus children it has already reaped."""
    ticks = 0
    for pid in process_tree(root):
        fields = _read_stat(pid)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == root:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def tree_socket_count(root: int) -> int:
    """Sockets open in the process tree (listening socket and connections)."""
    count = 0
    for pid in process_tree(root):
        try:
            entries = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        for entry in entries:
            try:
                count += os.readlink(entry.path).startswith("socket:")
            except OSError:
                pass
    return count


def tree_fd_count(root: int) -> int:
    """Open file descriptors of the process tree (cheaper than telling the sockets apart)."""
    count = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            count += len(os.listdir(f"/proc/{pid}/fd"))
    return count


def tree_rss_mib(root: int) -> float:
    """Resident memory of the process tree, in MiB."""
    total_kib = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            total_kib += int(match.group(1))
    return total_kib / 1024


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


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_RE_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_RE_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RE_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_RE_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkResult:
    """What one wrk run reported. Latencies are in milliseconds."""

    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99"
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        """Failed or timed-out requests (wrk leaves timeouts out of the latency figures)."""
        return (
            self.connect_errors + self.read_errors + self.write_errors
            + self.timeouts + self.non_2xx
        )


def parse_wrk(output: str) -> WrkResult:
    """Parse the text report of ``wrk --latency``; raises ValueError if it is not one."""
    rps = _RE_RPS.search(output)
    total = _RE_TOTAL.search(output)
    percentiles = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
                   for m in _RE_PERCENTILE.finditer(output)}
    if not rps or not total or set(percentiles) != {"50", "75", "90", "99"}:
        raise ValueError(f"unrecognised wrk output:\n{output}")
    result = WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)] / 1e3,
        rps=float(rps.group(1)),
        latency_ms=percentiles,
    )
    if socket_errors := _RE_SOCKET_ERRORS.search(output):
        connect, read, write, timeout = map(int, socket_errors.groups())
        result.connect_errors, result.read_errors = connect, read
        result.write_errors, result.timeouts = write, timeout
    if non_2xx := _RE_NON_2XX.search(output):
        result.non_2xx = int(non_2xx.group(1))
    return result


def wrk_command(scenario: Scenario, port: int, duration: float, threads: int) -> list[str]:
    """The wrk command line for one run of ``scenario``."""
    command = [
        "wrk", f"-t{min(threads, scenario.connections)}", f"-c{scenario.connections}",
        f"-d{max(1, round(duration))}s", f"--timeout={scenario.wrk_timeout_s}s", "--latency",
    ]
    if scenario.lua:
        command += ["-s", str(LUA_DIR / scenario.lua)]
    return [*command, f"http://{HOST}:{port}{scenario.path}"]


# --------------------------------------------------------------------------------------------
# One measurement, and the whole campaign
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured run of one server on one scenario."""

    scenario: str
    server: str
    round: int
    ok: bool
    error: str | None = None
    rps: float | None = None
    requests: int | None = None
    latency_ms: dict[str, float] | None = None
    cpu_us_per_request: float | None = None
    cpu_utilisation: float | None = None  # server CPU seconds per wall second
    rss_mib: float | None = None
    errors: int | None = None
    command: str | None = None
    wrk_command: str | None = None
    # loadgen scenarios (sse, idle, ws): the figures derived for the report (see measure_sse,
    # measure_idle and measure_ws), loadgen's own JSON line, and its command line. ws runs
    # also fill in rps, latency_ms and the CPU figures, so that they join the wrk tables.
    loadgen: dict[str, float] | None = None
    loadgen_output: dict[str, float] | None = None
    loadgen_command: str | None = None
    # cancel and overload: the figures for their report section (see measure_cancel and
    # measure_overload).
    figures: dict[str, float] | None = None


def measure(scenario: Scenario, server: str, round_no: int, args: argparse.Namespace) -> Run:
    """Start ``server`` on ``scenario``, check its answer, measure it, stop it."""
    port = free_port()
    command = server_command(server, scenario, port, args.ferricorn_args)
    assert command is not None
    run = Run(scenario.name, server, round_no, ok=False, command=shlex.join(command))
    log_dir = OUT_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"r{round_no}-{scenario.name}-{server}"
    # The apps are imported as bench.apps.X from the repo root, whatever the server's sys.path.
    pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath))
    with open(log_dir / f"{stem}.server.log", "wb") as server_log:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=server_log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=child_setup(args.server_cpus),
        )
        try:
            problem = wait_until_serving(proc, scenario, port)
            if problem:
                server_log.flush()
                tail = (log_dir / f"{stem}.server.log").read_text(errors="replace")
                tail = " | ".join(tail.strip().splitlines()[-3:])
                run.error = f"{problem}" + (f" (log: {tail})" if tail else "")
                return run
            measurer = {"wrk": measure_wrk, "sse": measure_sse, "idle": measure_idle,
                        "ws": measure_ws, "cancel": measure_cancel,
                        "overload": measure_overload}
            measurer[scenario.kind](run, proc, scenario, port, args, log_dir, stem)
        except ValueError as err:
            run.error = str(err)
        finally:
            stop_server(proc)
    return run


def measure_wrk(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """Warm up with wrk, then the measured wrk run; fills in ``run``."""
    if args.warmup > 0:
        subprocess.run(
            wrk_command(scenario, port, args.warmup, args.threads),
            capture_output=True, preexec_fn=child_setup(args.wrk_cpus), check=False,
        )
    wrk = wrk_command(scenario, port, args.duration, args.threads)
    run.wrk_command = shlex.join(wrk)
    cpu_before, wall_before = tree_cpu_seconds(proc.pid), time.monotonic()
    completed = subprocess.run(
        wrk, capture_output=True, text=True, check=False,
        preexec_fn=child_setup(args.wrk_cpus),
    )
    cpu_after, wall_after = tree_cpu_seconds(proc.pid), time.monotonic()
    run.rss_mib = round(tree_rss_mib(proc.pid), 1)
    (log_dir / f"{stem}.wrk.txt").write_text(completed.stdout + completed.stderr)
    if proc.poll() is not None:
        run.error = f"server died during the run (exit code {proc.returncode})"
        return
    if completed.returncode != 0:
        run.error = f"wrk exited with {completed.returncode}: {completed.stderr.strip()}"
        return
    result = parse_wrk(completed.stdout)
    cpu = cpu_after - cpu_before
    run.ok = result.requests > 0
    run.error = None if run.ok else "no request completed"
    run.rps = result.rps
    run.requests = result.requests
    run.latency_ms = result.latency_ms
    run.errors = result.errors
    run.cpu_us_per_request = cpu / result.requests * 1e6 if result.requests else None
    run.cpu_utilisation = cpu / (wall_after - wall_before)


# --------------------------------------------------------------------------------------------
# loadgen: token streams and idle connections
# --------------------------------------------------------------------------------------------


def start_loadgen(command: list[str], args: argparse.Namespace) -> subprocess.Popen:
    """Start loadgen (on the wrk CPUs when pinning), its stdout and stderr piped.

    Each writes a line or two, so the pipes never fill while the caller samples the server.
    """
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=child_setup(args.wrk_cpus),
    )


def watch_rss(root: int, loadgen: subprocess.Popen, seconds: float) -> float:
    """Peak RSS (MiB) of the ``root`` tree, sampled every RSS_SAMPLE_S.

    Samples until ``loadgen`` exits or ``seconds`` have passed, whichever comes first.
    """
    peak = 0.0
    end = time.monotonic() + seconds
    while loadgen.poll() is None and time.monotonic() < end:
        peak = max(peak, tree_rss_mib(root))
        time.sleep(RSS_SAMPLE_S)
    return peak


def watch_streams(root: int, loadgen: subprocess.Popen, seconds: float) -> tuple[float, int]:
    """Peak RSS (MiB) and peak number of open descriptors of the ``root`` tree while
    ``loadgen`` runs (at most ``seconds``): RSS every RSS_SAMPLE_S, descriptors every
    FD_SAMPLE_EVERY samples."""
    peak_rss, peak_fds, sample = 0.0, 0, 0
    end = time.monotonic() + seconds
    while loadgen.poll() is None and time.monotonic() < end:
        peak_rss = max(peak_rss, tree_rss_mib(root))
        if sample % FD_SAMPLE_EVERY == 0:
            peak_fds = max(peak_fds, tree_fd_count(root))
        sample += 1
        time.sleep(RSS_SAMPLE_S)
    return peak_rss, peak_fds


def finish_loadgen(
    loadgen: subprocess.Popen, proc: subprocess.Popen, mode: str, log_dir: Path, stem: str,
    timeout: float = LOADGEN_TIMEOUT_S,
) -> dict[str, float]:
    """Wait up to ``timeout`` s for loadgen (then kill it), log and parse its JSON line.

    Raises ValueError when loadgen or the server failed.
    """
    try:
        out, err = loadgen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        loadgen.kill()
        out, err = loadgen.communicate()
        (log_dir / f"{stem}.loadgen.txt").write_text(out + err)
        raise ValueError(f"loadgen {mode} did not finish in {LOADGEN_TIMEOUT_S:g} s") from None
    (log_dir / f"{stem}.loadgen.txt").write_text(out + err)
    if proc.poll() is not None:
        raise ValueError(f"server died during the run (exit code {proc.returncode})")
    if loadgen.returncode != 0:
        raise ValueError(f"loadgen exited with {loadgen.returncode}: {err.strip()[-300:]}")
    lines = out.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise ValueError(f"unrecognised loadgen output: {out[-300:]!r}") from None
    if result.get("mode") != mode:
        raise ValueError(f"unrecognised loadgen output: {out[-300:]!r}")
    return result


@dataclass
class SampledLoad:
    """One loadgen run with the server watched: loadgen's JSON line, the server's RSS and
    open descriptors before and at their peak, its CPU seconds, and loadgen's own CPU."""

    result: dict
    rss_before: float
    rss_peak: float
    fds_before: int
    fds_peak: int
    cpu: float
    loadgen_cpu: float

    def open_peak(self, clients: int) -> int:
        """The most connections the server held at once (at most the clients)."""
        return min(clients, max(0, self.fds_peak - self.fds_before))


def run_sampled_loadgen(
    command: list[str], mode: str, proc: subprocess.Popen, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> SampledLoad:
    """Runs loadgen while sampling the server (see ``watch_streams``)."""
    rss_before = tree_rss_mib(proc.pid)
    fds_before = tree_fd_count(proc.pid)
    cpu_before = tree_cpu_seconds(proc.pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen = start_loadgen(command, args)
    rss_peak, fds_peak = watch_streams(proc.pid, loadgen, LOADGEN_TIMEOUT_S)
    cpu = tree_cpu_seconds(proc.pid) - cpu_before
    result = finish_loadgen(loadgen, proc, mode, log_dir, stem, timeout=5.0)
    # Only loadgen is reaped in between: this is its own CPU time (client-side load).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen_cpu = (children.ru_utime + children.ru_stime
                   - children_before.ru_utime - children_before.ru_stime)
    return SampledLoad(result, rss_before, max(rss_before, rss_peak), fds_before, fds_peak,
                       cpu, loadgen_cpu)


def measure_sse(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """``scenario.connections`` concurrent event streams with ``loadgen sse``.

    The server's RSS is sampled every RSS_SAMPLE_S while loadgen runs, and its open
    descriptors every FD_SAMPLE_EVERY samples: the peak RSS minus the RSS before, divided by
    the most streams open at once (descriptors at the peak minus before, at most the clients),
    gives the memory per open stream. A server that caps its connections (Granian's
    --backpressure) holds fewer streams open than there are clients.
    """
    binary = str(loadgen_binary())
    if args.warmup > 0:  # 100 short streams of 10 events, discarded
        warm = [binary, "sse", "--port", str(port), "--clients", "100",
                "--path", f"/?n=10&interval={scenario.interval_s:g}"]
        finish_loadgen(start_loadgen(warm, args), proc, "sse", log_dir, f"{stem}.warmup")
    command = [binary, "sse", "--port", str(port), "--path", scenario.load_path or scenario.path,
               "--clients", str(scenario.connections)]
    run.loadgen_command = shlex.join(command)
    load = run_sampled_loadgen(command, "sse", proc, args, log_dir, stem)
    result, rss_before, rss_peak, cpu = load.result, load.rss_before, load.rss_peak, load.cpu
    run.loadgen_output = result
    completed, clients, seconds = result["completed"], result["clients"], result["seconds"]
    # loadgen also counts each completed stream's final chunk ("0\r\n\r\n") as an event.
    events = result["events"] - completed
    open_peak = load.open_peak(clients)
    run.loadgen = {
        "clients": clients,
        "completed": completed,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds if seconds else 0.0,
        "delay_p50_ms": result["delay_p50_ms"],
        "delay_p99_ms": result["delay_p99_ms"],
        "delay_max_ms": result["delay_max_ms"],
        "rss_before_mib": round(rss_before, 2),
        "rss_peak_mib": round(rss_peak, 2),
        "open_peak": open_peak,
        "kib_per_stream": (rss_peak - rss_before) * 1024 / (open_peak or clients),
        "cpu_us_per_event": cpu / events * 1e6 if events else 0.0,
        "cpu_utilisation": cpu / seconds if seconds else 0.0,
        "loadgen_cpu_utilisation": load.loadgen_cpu / seconds if seconds else 0.0,
    }
    run.rss_mib = round(rss_peak, 1)
    run.ok = events > 0
    run.error = None if run.ok else "no event delivered"


def measure_ws(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """WebSocket echo with ``loadgen ws``: ``scenario.connections`` clients, each doing echo
    round trips of one WS_MESSAGE_BYTES text message for ``--duration`` seconds, after a
    ``--warmup`` run of the same kind (discarded).

    The figures fill the wrk fields too (messages/s as rps, round-trip p50/p99, the server's
    CPU per message), so that ws-echo joins the main results and ratio tables.
    """
    binary = str(loadgen_binary())

    def command(seconds: float) -> list[str]:
        return [binary, "ws", "--port", str(port), "--path", scenario.load_path or scenario.path,
                "--clients", str(scenario.connections), "--hold", f"{seconds:g}",
                "--size", str(WS_MESSAGE_BYTES)]

    if args.warmup > 0:
        finish_loadgen(start_loadgen(command(args.warmup), args), proc, "ws", log_dir,
                       f"{stem}.warmup")
    measured = command(args.duration)
    run.loadgen_command = shlex.join(measured)
    load = run_sampled_loadgen(measured, "ws", proc, args, log_dir, stem)
    result, rss_before, rss_peak, cpu = load.result, load.rss_before, load.rss_peak, load.cpu
    run.loadgen_output = result
    messages, seconds = result["messages"], result["seconds"]
    clients, failed = result["clients"], result["failed"]
    run.loadgen = {
        "clients": clients,
        "failed": failed,
        "open_peak": load.open_peak(clients),
        "messages": messages,
        "seconds": seconds,
        "messages_per_s": result["messages_per_s"],
        "latency_p50_ms": result["latency_p50_ms"],
        "latency_p99_ms": result["latency_p99_ms"],
        "rss_before_mib": round(rss_before, 2),
        "rss_peak_mib": round(rss_peak, 2),
        "cpu_us_per_message": cpu / messages * 1e6 if messages else 0.0,
        "cpu_utilisation": cpu / seconds if seconds else 0.0,
        "loadgen_cpu_utilisation": load.loadgen_cpu / seconds if seconds else 0.0,
    }
    run.rps = result["messages_per_s"]
    run.requests = messages
    run.latency_ms = {"50": result["latency_p50_ms"], "99": result["latency_p99_ms"]}
    run.errors = failed
    run.cpu_us_per_request = cpu / messages * 1e6 if messages else None
    run.cpu_utilisation = cpu / seconds if seconds else None
    run.rss_mib = round(rss_peak, 1)
    run.ok = messages > 0
    run.error = None if run.ok else (
        f"no echo completed: {failed} of {clients} clients failed (handshake or echo)")


def wait_for_open(
    loadgen: subprocess.Popen, root: int, sockets_before: int
) -> tuple[bool, int]:
    """Wait for loadgen's "open N" line on stderr while watching the server accept.

    Returns (True, _) once loadgen reports its connections open, (False, accepted) when the
    server's socket count has not grown for IDLE_STALL_S, when loadgen exits first or after
    LOADGEN_TIMEOUT_S.
    """
    deadline = time.monotonic() + LOADGEN_TIMEOUT_S
    accepted, last_growth = 0, time.monotonic()
    while time.monotonic() < deadline:
        readable, _, _ = select.select([loadgen.stderr], [], [], 0.5)
        if readable:
            line = loadgen.stderr.readline()
            if line.startswith("open "):
                return True, accepted
            if not line:  # loadgen exited
                break
            continue
        now_accepted = tree_socket_count(root) - sockets_before
        if now_accepted > accepted:
            accepted, last_growth = now_accepted, time.monotonic()
        elif time.monotonic() - last_growth > IDLE_STALL_S:
            break
    return False, tree_socket_count(root) - sockets_before


def measure_idle(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """``scenario.connections`` idle connections with ``loadgen idle``.

    RSS is read IDLE_SETTLE_S after loadgen reports all connections open; (that - RSS before)
    / connections is the memory per idle connection. The server's socket count at that moment
    tells how many it had accepted. loadgen times a request every 100 ms meanwhile, and
    reports at the end how many of its connections the server has not closed.

    When the server stops accepting before all are open (see IDLE_STALL_S), loadgen is stopped
    and the run records a stall: how many connections the server accepted, and the memory
    per accepted connection; the request latencies and still-open count are then unknown.
    """
    command = [str(loadgen_binary()), "idle", "--port", str(port), "--path", scenario.path,
               "--connections", str(scenario.connections), "--hold", f"{scenario.hold_s:g}"]
    run.loadgen_command = shlex.join(command)
    rss_before = tree_rss_mib(proc.pid)
    sockets_before = tree_socket_count(proc.pid)
    started = time.monotonic()
    loadgen = start_loadgen(command, args)
    opened, accepted = wait_for_open(loadgen, proc.pid, sockets_before)
    if not opened:
        rss_stalled = tree_rss_mib(proc.pid)
        exited = loadgen.poll() is not None
        if not exited:
            loadgen.kill()
        out, err = loadgen.communicate()
        (log_dir / f"{stem}.loadgen.txt").write_text(out + err)
        if proc.poll() is not None:
            raise ValueError(f"server died during the run (exit code {proc.returncode})")
        if exited or accepted <= 0:
            raise ValueError(
                f"loadgen never reported its connections open (exit code {loadgen.returncode}"
                f"{': ' + err.strip()[-200:] if err.strip() else ''})"
            )
        # The server stopped accepting: a result about the server, not a harness failure.
        run.loadgen = {
            "stalled": 1,
            "accepted": accepted,
            "rss_before_mib": round(rss_before, 2),
            "rss_open_mib": round(rss_stalled, 2),
            "kib_per_connection": (rss_stalled - rss_before) * 1024 / accepted,
        }
        run.rss_mib = round(rss_stalled, 1)
        run.ok = True
        return
    open_s = time.monotonic() - started
    rss_peak = watch_rss(proc.pid, loadgen, IDLE_SETTLE_S)
    rss_open = tree_rss_mib(proc.pid)
    accepted = tree_socket_count(proc.pid) - sockets_before
    rss_peak = max(rss_peak, rss_open, watch_rss(proc.pid, loadgen, LOADGEN_TIMEOUT_S))
    result = finish_loadgen(loadgen, proc, "idle", log_dir, stem, timeout=5.0)
    run.loadgen_output = result
    connections = result["connections"]
    run.loadgen = {
        "stalled": 0,
        "connections": connections,
        "failed": result["failed"],
        "open_s": round(open_s, 3),
        "accepted": accepted,
        "rss_before_mib": round(rss_before, 2),
        "rss_open_mib": round(rss_open, 2),
        "rss_peak_mib": round(rss_peak, 2),
        "kib_per_connection": (rss_open - rss_before) * 1024 / connections if connections else 0,
        "requests": result["requests"],
        "latency_p50_ms": result["latency_p50_ms"],
        "latency_max_ms": result["latency_max_ms"],
        "still_open": result["still_open"],
    }
    run.rss_mib = round(rss_open, 1)
    run.ok = connections > 0
    run.error = None if run.ok else "no connection opened"


# --------------------------------------------------------------------------------------------
# cancel (asyncio clients in this process) and overload (wrk, responses counted by status)
# --------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


async def cancel_clients(port: int, count: int) -> tuple[dict[int, float], int]:
    """``count`` clients, CANCEL_CONCURRENCY at a time: each sends ``GET /work?id=N``, waits
    CANCEL_HOLD_S and closes its connection. Returns {N: time.monotonic() just before the
    close} and the number of clients that could not connect or send."""
    closes: dict[int, float] = {}
    failed = 0
    gate = asyncio.Semaphore(CANCEL_CONCURRENCY)

    async def client(request_id: int) -> None:
        nonlocal failed
        async with gate:
            try:
                _reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                failed += 1
                return
            try:
                writer.write(f"GET /work?id={request_id} HTTP/1.1\r\nHost: {HOST}:{port}"
                             "\r\n\r\n".encode())
                await writer.drain()
                await asyncio.sleep(CANCEL_HOLD_S)
                closes[request_id] = time.monotonic()
            except OSError:
                failed += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    await asyncio.gather(*(client(i) for i in range(count)))
    return closes, failed


def measure_cancel(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """Client close -> CancelledError in the app (bench/apps/cancel_probe.py).

    The clients run in this process (asyncio), so their time.monotonic() and the app's read
    the same clock. CANCEL_SETTLE_S after the last close the harness fetches the app's
    /results, then /release ends the sleeps nobody cancelled so that the server stops at once.
    """
    count = args.cancel_requests
    started = time.monotonic()
    closes, failed = asyncio.run(cancel_clients(port, count))
    seconds = time.monotonic() - started
    time.sleep(CANCEL_SETTLE_S)
    base = f"http://{HOST}:{port}"
    with urllib.request.urlopen(f"{base}/results", timeout=10) as response:
        results = json.loads(response.read())
    with urllib.request.urlopen(f"{base}/release", timeout=10) as response:
        released = int(response.read())
    (log_dir / f"{stem}.cancel.json").write_text(json.dumps(
        {"closes": closes, "failed": failed, "released": released, **results}) + "\n")
    if proc.poll() is not None:
        raise ValueError(f"server died during the run (exit code {proc.returncode})")
    reached = {request_id for request_id, _ in results["arrivals"]} & set(closes)
    delays = [(cancelled_at - closes[request_id]) * 1000
              for request_id, cancelled_at in results["cancels"] if request_id in closes]
    run.figures = {
        "requests": len(closes),
        "failed": failed,
        "reached": len(reached),
        "cancelled": len(delays),
        "not_cancelled": len(closes) - len(delays),
        "released": released,
        "seconds": round(seconds, 3),
    }
    if delays:
        run.figures |= {
            "delay_p50_ms": percentile(delays, 0.50),
            "delay_p99_ms": percentile(delays, 0.99),
            "delay_max_ms": max(delays),
        }
    run.ok = len(closes) > 0
    run.error = None if run.ok else f"no client got its request out ({failed} failed)"


_RE_STATUSES = re.compile(r"^statuses:(.*)$", re.MULTILINE)


def measure_overload(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """A wrk run (as measure_wrk) whose Lua script counts the responses by status."""
    measure_wrk(run, proc, scenario, port, args, log_dir, stem)
    if not run.ok:
        return
    output = (log_dir / f"{stem}.wrk.txt").read_text()
    result = parse_wrk(output)
    match = _RE_STATUSES.search(output)
    if match is None:
        raise ValueError(f"no status counts in the wrk output ({scenario.lua})")
    statuses = {int(code): int(n) for code, n in
                (part.split("=") for part in match.group(1).split())}
    ok = statuses.get(200, 0)
    total = sum(statuses.values())
    run.figures = {
        "responses": total,
        "ok": ok,
        "shed_503": statuses.get(503, 0),
        "other_status": total - ok - statuses.get(503, 0),
        "socket_errors": result.connect_errors + result.read_errors + result.write_errors,
        "timeouts": result.timeouts,
        "ok_per_s": ok / result.seconds,
        "responses_per_s": total / result.seconds,
        "shed_share": (total - ok) / total if total else 0.0,
        "latency_p50_ms": result.latency_ms["50"],
        "latency_p99_ms": result.latency_ms["99"],
    }


def describe(run: Run) -> str:
    """One progress line."""
    head = f"[round {run.round}] {run.scenario:<11} {run.server:<9}"
    if not run.ok:
        return f"{head} FAILED: {run.error}"
    f = run.figures
    if f is not None and "cancelled" in f:
        delays = (f" delay p50 {f['delay_p50_ms']:.2f} p99 {f['delay_p99_ms']:.2f}"
                  f" max {f['delay_max_ms']:.2f} ms" if f["cancelled"] else "")
        return (f"{head} cancelled {f['cancelled']:.0f} of {f['requests']:.0f}"
                f" (reached the app {f['reached']:.0f}){delays}")
    if f is not None:
        return (
            f"{head} {f['ok_per_s']:>8,.0f} x200/s of {f['responses_per_s']:,.0f} responses/s"
            f"  shed {f['shed_share']:.1%}  p50 {f['latency_p50_ms']:.2f}"
            f" p99 {f['latency_p99_ms']:.2f} ms  socket errors {f['socket_errors']:.0f},"
            f" timeouts {f['timeouts']:.0f}"
        )
    g = run.loadgen
    if g is not None and "messages_per_s" in g:
        return (
            f"{head} {g['messages_per_s']:>10,.0f} msg/s  p50 {g['latency_p50_ms']:7.2f} ms"
            f"  p99 {g['latency_p99_ms']:7.2f} ms  cpu {run.cpu_us_per_request or 0:6.1f}"
            f" us/msg  clients failed {g['failed']:.0f}/{g['clients']:.0f}"
            f"  RSS peak {g['rss_peak_mib']:.1f} MiB  cores: server"
            f" {g['cpu_utilisation']:.2f}, loadgen {g['loadgen_cpu_utilisation']:.2f}"
        )
    if g is not None and "events_per_s" in g:
        return (
            f"{head} {g['events_per_s']:>10,.0f} events/s  delay p50 {g['delay_p50_ms']:.2f}"
            f" p99 {g['delay_p99_ms']:.2f} max {g['delay_max_ms']:.2f} ms"
            f"  streams {g['completed']:.0f}/{g['clients']:.0f}"
            + (f" (open at once {g['open_peak']:.0f})" if "open_peak" in g else "")
            + f"  RSS {g['rss_before_mib']:.1f} -> peak {g['rss_peak_mib']:.1f} MiB"
            f" ({g['kib_per_stream']:.1f} KiB/stream)  cores: server"
            f" {g['cpu_utilisation']:.2f}, loadgen {g['loadgen_cpu_utilisation']:.2f}"
        )
    if g is not None and g.get("stalled"):
        return (
            f"{head} STALLED: the server stopped accepting at {g['accepted']:.0f} connections"
            f" (no new one for {IDLE_STALL_S:g} s)  RSS {g['rss_before_mib']:.1f} ->"
            f" {g['rss_open_mib']:.1f} MiB ({g['kib_per_connection']:.2f} KiB/accepted conn)"
        )
    if g is not None:
        return (
            f"{head} {g['connections']:.0f} open in {g['open_s']:.1f} s"
            f" ({g['accepted']:.0f} accepted)"
            f"  RSS {g['rss_before_mib']:.1f} -> {g['rss_open_mib']:.1f} MiB"
            f" ({g['kib_per_connection']:.2f} KiB/conn)  {g['requests']:.0f} requests"
            f" p50 {g['latency_p50_ms']:.2f} max {g['latency_max_ms']:.2f} ms"
            f"  still open {g['still_open']:.0f}"
        )
    lat = run.latency_ms or {}
    return (
        f"{head} {run.rps:>10,.0f} req/s  p50 {lat['50']:7.2f} ms  p99 {lat['99']:7.2f} ms  "
        f"cpu {run.cpu_us_per_request:6.1f} us/req ({run.cpu_utilisation:.2f} cores)"
        + (f"  errors {run.errors}" if run.errors else "")
    )


def run_campaign(args: argparse.Namespace) -> list[Run]:
    """All rounds x scenarios x servers, alternating servers; the server order rotates."""
    runs = []
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(args.servers)
        order = args.servers[shift:] + args.servers[:shift]
        for name in args.scenarios:
            scenario = SCENARIOS[name]
            for server in order:
                if server_command(server, scenario, 0, args.ferricorn_args) is None:
                    continue
                run = measure(scenario, server, round_no, args)
                print(describe(run), file=sys.stderr, flush=True)
                runs.append(run)
                time.sleep(args.pause)
    return runs


def app_cost_scenarios(scenarios: list[str]) -> list[str]:
    """The scenarios whose app's own cost is measured: the CPU-bound wrk ones (not the ones
    that sleep, where the ideal bounds the throughput)."""
    return [n for n in scenarios if SCENARIOS[n].kind == "wrk" and not SCENARIOS[n].ideal_rps]


def measure_app_costs(scenarios: list[str]) -> dict[str, float]:
    """Per scenario, the app's CPU us per request called in-process (bench/appcost.py)."""
    costs = {}
    for name in app_cost_scenarios(scenarios):
        scenario = SCENARIOS[name]
        with tempfile.NamedTemporaryFile(suffix=".body") as body:
            body.write(scenario.body)
            body.flush()
            command = [sys.executable, str(REPO / "bench" / "appcost.py"), scenario.app,
                       "--method", scenario.method, "--path", scenario.path]
            if scenario.body:
                command += ["--body-file", body.name]
            if scenario.content_type:
                command += ["--content-type", scenario.content_type]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                                  check=False, timeout=120)
        if done.returncode != 0:
            print(f"[app cost] {name}: failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
            continue
        costs[name] = json.loads(done.stdout.strip().splitlines()[-1])["us_per_request"]
        print(f"[app cost] {name:<11} {costs[name]:6.1f} us/req in-process", file=sys.stderr)
    return costs


# --------------------------------------------------------------------------------------------
# Summaries and reports
# --------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """Medians across the successful rounds of one (scenario, server)."""

    scenario: str
    server: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    rss_mib: float
    errors: int
    spread: float  # (max - min) / median of req/s across rounds


def summarise(runs: list[Run]) -> dict[tuple[str, str], Summary]:
    """Group the successful wrk and ws runs by (scenario, server) and take medians."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        # wrk and ws runs have an rps; overload runs (wrk too) have their own section.
        if run.ok and run.rps is not None and run.figures is None:
            groups.setdefault((run.scenario, run.server), []).append(run)
    return {
        key: Summary(
            scenario=key[0],
            server=key[1],
            rounds=len(group),
            rps=statistics.median(r.rps for r in group),
            p50_ms=statistics.median(r.latency_ms["50"] for r in group),
            p99_ms=statistics.median(r.latency_ms["99"] for r in group),
            cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in group),
            rss_mib=statistics.median(r.rss_mib or 0.0 for r in group),
            errors=sum(r.errors or 0 for r in group),
            spread=(max(r.rps for r in group) - min(r.rps for r in group))
            / statistics.median(r.rps for r in group),
        )
        for key, group in groups.items()
    }


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` formatted like "1.23x", or "-" when either is missing."""
    return f"{a / b:.2f}x" if a and b else "-"


def comparison_columns(baseline: str, servers: list[str]) -> list[str]:
    """The servers that the baseline is compared with."""
    return [s for s in servers if s != baseline] if baseline in servers else []


def fmt_rps(value: float) -> str:
    """Requests/s for tables: thousands separators, no decimals."""
    return f"{value:,.0f}"


def results_rows(
    summary: dict[tuple[str, str], Summary], scenarios: list[str], servers: list[str]
) -> list[list[str]]:
    """Rows of the main table: one per (scenario, server) measured."""
    rows = []
    for name in scenarios:
        ideal = SCENARIOS[name].ideal_rps
        for server in servers:
            s = summary.get((name, server))
            if s is None:
                continue
            note = f"{s.rps / ideal:.0%} of ideal {ideal:,.0f}" if ideal else ""
            if SCENARIOS[name].kind == "ws":
                note = "req/s: echo round trips (messages)/s; CPU per message"
                if s.errors:
                    note += f"; {s.errors} client(s) failed"
            elif s.errors:
                note = ", ".join(filter(None, [note, f"{s.errors} failed requests"]))
            rows.append([
                name, server, fmt_rps(s.rps), f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}",
                f"{s.cpu_us_per_request:.1f}", f"{s.rss_mib:.0f}", str(s.rounds),
                f"{s.spread:.0%}" if s.rounds > 1 else "-", note,
            ])
    return rows


RESULT_HEADER = [
    "scenario", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "RSS MiB", "rounds",
    "spread", "notes",
]


def ratio_rows(
    summary: dict[tuple[str, str], Summary], scenarios: list[str], baseline: str,
    others: list[str],
) -> list[list[str]]:
    """Rows of the ratio table: baseline req/s over each other server's, and CPU/req likewise."""
    rows = []
    for name in scenarios:
        base = summary.get((name, baseline))
        row = [name]
        for other in others:
            theirs = summary.get((name, other))
            row.append(ratio(base and base.rps, theirs and theirs.rps))
        for other in others:
            theirs = summary.get((name, other))
            row.append(
                ratio(base and base.cpu_us_per_request, theirs and theirs.cpu_us_per_request)
            )
        if any(cell != "-" for cell in row[1:]):
            rows.append(row)
    return rows


def ratio_header(baseline: str, others: list[str]) -> list[str]:
    """Header of the ratio table."""
    return (
        ["scenario"]
        + [f"req/s {baseline}/{o}" for o in others]
        + [f"CPU/req {baseline}/{o}" for o in others]
    )


APP_COST_HEADER = [
    "scenario", "app us/req in-process", "server", "server CPU us/req", "app's share",
    "server's own us/req", "best req/s ratio over it",
]


def app_cost_rows(
    summary: dict[tuple[str, str], Summary], costs: dict[str, float], servers: list[str]
) -> list[list[str]]:
    """Per scenario and Python server: its CPU per request beside the app's own cost, and the
    best ratio a server that cost nothing could reach over it (its CPU / the app's)."""
    rows = []
    for name, app_us in costs.items():
        for server in servers:
            s = summary.get((name, server))
            if s is None or server == "hyper" or not s.cpu_us_per_request:
                continue
            total = s.cpu_us_per_request
            rows.append([
                name, f"{app_us:.1f}", server, f"{total:.1f}", f"{min(app_us / total, 1):.0%}",
                f"{max(total - app_us, 0):.1f}", f"{total / app_us:.2f}x",
            ])
    return rows


def app_cost_section(data: dict, table: Callable, prose: bool) -> list[str]:
    """The "Server or app: which one is the bottleneck" section (empty without figures)."""
    costs = data.get("app_costs") or {}
    summary = summarise([Run(**r) for r in data["runs"]])
    rows = app_cost_rows(summary, costs, data["settings"]["servers"])
    if not rows:
        return []
    lines = ["## Server or app: which one is the bottleneck", ""]
    if prose:
        lines += [
            "`bench/appcost.py` calls each app in-process, with no server and no socket: a"
            " Task per call, a scope dict per call, a `receive()` that returns the whole body"
            " and a `send()` that does nothing, on uvloop. That CPU time per request is a floor"
            " under every server: the rest of a server's CPU per request (from the tables"
            " above) is its own. Where the app's share is high, the app is the bottleneck and"
            " no server can be much faster; \"best req/s ratio over it\" is what a server"
            " that cost nothing at all would reach against that server (its CPU per request"
            " over the app's).",
            "",
        ]
    return [*lines, table(APP_COST_HEADER, rows), ""]


LoadgenSummary = dict[tuple[str, str], dict[str, float]]


def summarise_loadgen(runs: list[Run], attribute: str = "loadgen") -> LoadgenSummary:
    """Per (scenario, server): the median of each loadgen figure (or of each of the figures
    in ``attribute``) across the successful rounds, plus "rounds"."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in runs:
        if run.ok and getattr(run, attribute) is not None:
            groups.setdefault((run.scenario, run.server), []).append(getattr(run, attribute))
    summary: LoadgenSummary = {}
    for key, group in groups.items():
        names = dict.fromkeys(name for g in group for name in g)
        summary[key] = {
            name: statistics.median(g[name] for g in group if name in g) for name in names
        } | {"rounds": len(group), "stalled_rounds": sum(g.get("stalled", 0) for g in group)}
    return summary


def loadgen_scenario(kind: str, scenarios: list[str]) -> str | None:
    """The (first) selected scenario measured with loadgen mode ``kind``."""
    return next((n for n in scenarios if SCENARIOS[n].kind == kind), None)


def loadgen_scenarios(kind: str, scenarios: list[str]) -> list[str]:
    """All the selected scenarios measured with loadgen mode ``kind``."""
    return [n for n in scenarios if n in SCENARIOS and SCENARIOS[n].kind == kind]


def sse_header(name: str) -> list[str]:
    """Header of the table of the sse scenario ``name`` (its own delay target)."""
    return [
        "server", "events/s", "of ideal", "delay p50 ms", "delay p99 ms", "delay max ms",
        f"p99 <= {sse_delay_target_ms(SCENARIOS[name]):g} ms", "streams done", "open at once",
        "RSS before MiB", "RSS peak MiB", "KiB/stream", "CPU us/event", "rounds", "notes",
    ]

IDLE_HEADER = [
    "server", "open", "accepted", "open in s", "RSS before MiB", "RSS open MiB", "KiB/conn",
    "requests", "req p50 ms", "req max ms", "still open", "rounds", "notes",
]


def sse_rows(summary: LoadgenSummary, name: str, servers: list[str]) -> list[list[str]]:
    """Rows of the sse-tokens table: one per server measured."""
    ideal = SCENARIOS[name].ideal_rps
    target = sse_delay_target_ms(SCENARIOS[name])
    rows = []
    for server in servers:
        g = summary.get((name, server))
        if g is None:
            continue
        notes = []
        if g["completed"] < g["clients"]:
            notes.append(f"{g['clients'] - g['completed']:,.0f} streams incomplete")
        if g.get("open_peak") and g["open_peak"] < 0.9 * g["clients"]:
            notes.append(f"at most {g['open_peak']:,.0f} streams open at once")
        rows.append([
            server, fmt_rps(g["events_per_s"]),
            f"{g['events_per_s'] / ideal:.0%}" if ideal else "-",
            f"{g['delay_p50_ms']:.2f}", f"{g['delay_p99_ms']:.2f}", f"{g['delay_max_ms']:.2f}",
            "yes" if g["delay_p99_ms"] <= target else "no",
            f"{g['completed']:,.0f}/{g['clients']:,.0f}",
            f"{g['open_peak']:,.0f}" if "open_peak" in g else "-",
            f"{g['rss_before_mib']:.1f}", f"{g['rss_peak_mib']:.1f}",
            f"{g['kib_per_stream']:.1f}", f"{g['cpu_us_per_event']:.1f}",
            f"{g['rounds']:.0f}", ", ".join(notes),
        ])
    return rows


def idle_rows(summary: LoadgenSummary, name: str, servers: list[str]) -> list[list[str]]:
    """Rows of the idle-10k table: one per server measured."""

    def cell(g: dict[str, float], figure: str, fmt: str) -> str:
        return fmt.format(g[figure]) if figure in g else "-"

    rows = []
    for server in servers:
        g = summary.get((name, server))
        if g is None:
            continue
        notes = []
        if g["stalled_rounds"]:
            notes.append(
                f"stopped accepting at {g['accepted']:,.0f} connections for"
                f" {IDLE_STALL_S:g} s in {g['stalled_rounds']:.0f} of {g['rounds']:.0f}"
                " round(s); KiB/conn over the accepted ones"
            )
        if g.get("failed"):
            notes.append(f"{g['failed']:,.0f} connects failed")
        if "connections" in g and g["accepted"] < g["connections"]:
            notes.append(f"{g['connections'] - g['accepted']:,.0f} not accepted after"
                         f" {IDLE_SETTLE_S:g} s")
        if "still_open" in g and g["still_open"] < g["connections"]:
            notes.append(f"server closed {g['connections'] - g['still_open']:,.0f} idle")
        rows.append([
            server, cell(g, "connections", "{:,.0f}"), cell(g, "accepted", "{:,.0f}"),
            cell(g, "open_s", "{:.1f}"), cell(g, "rss_before_mib", "{:.1f}"),
            cell(g, "rss_open_mib", "{:.1f}"), cell(g, "kib_per_connection", "{:.2f}"),
            cell(g, "requests", "{:.0f}"), cell(g, "latency_p50_ms", "{:.2f}"),
            cell(g, "latency_max_ms", "{:.2f}"), cell(g, "still_open", "{:,.0f}"),
            f"{g['rounds']:.0f}", ", ".join(notes),
        ])
    return rows


def loadgen_comparison(
    summary: LoadgenSummary, scenarios: list[str], servers: list[str], baseline: str
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table: the key figures of the loadgen scenarios per
    server, with the baseline's ratio to each other server where a ratio means something."""
    present = [s for s in servers if any((n, s) in summary for n in scenarios)]
    others = comparison_columns(baseline, present)
    header = ["metric", *present, *[f"{baseline}/{o}" for o in others]]
    specs = []  # (scenario, figure, label, format, ratio?)
    for sse in loadgen_scenarios("sse", scenarios):
        specs += [
            (sse, "events_per_s", f"{sse}: events/s (higher is better)", fmt_rps, True),
            (sse, "completed", f"{sse}: streams completed", "{:,.0f}".format, False),
            (sse, "delay_p99_ms", f"{sse}: p99 inter-event delay ms (target <="
             f" {sse_delay_target_ms(SCENARIOS[sse]):g})", "{:.2f}".format, False),
            (sse, "kib_per_stream", f"{sse}: KiB per open stream (peak)", "{:.1f}".format,
             True),
            (sse, "cpu_us_per_event", f"{sse}: CPU us/event", "{:.1f}".format, True),
        ]
    if idle := loadgen_scenario("idle", scenarios):
        specs += [
            (idle, "kib_per_connection", f"{idle}: KiB per idle connection",
             "{:.2f}".format, True),
            (idle, "latency_p50_ms", f"{idle}: request p50 ms", "{:.2f}".format, False),
            (idle, "still_open", f"{idle}: connections still open at the end",
             "{:,.0f}".format, False),
        ]
    rows = []
    for name, figure, label, fmt, with_ratio in specs:
        values = {s: summary[(name, s)][figure] for s in present
                  if figure in summary.get((name, s), {})}
        if not values:
            continue
        row = [label]
        for server in present:
            g = summary.get((name, server), {})
            cell = fmt(values[server]) if server in values else "-"
            if server in values and g.get("stalled_rounds"):
                cell += f" ({g['accepted']:,.0f} accepted)"
            row.append(cell)
        for other in others:
            row.append(ratio(values.get(baseline), values.get(other)) if with_ratio else "-")
        rows.append(row)
    return header, rows


def loadgen_sections(data: dict, table: Callable, prose: bool) -> list[str]:
    """The "Streams and idle connections" section: a table per loadgen scenario and the
    side-by-side comparison. ``table`` renders (header, rows); ``prose`` adds the
    explanations (Markdown)."""
    settings = data["settings"]
    scenarios, servers = settings["scenarios"], settings["servers"]
    summary = summarise_loadgen([Run(**r) for r in data["runs"]])
    sses, idle = loadgen_scenarios("sse", scenarios), loadgen_scenario("idle", scenarios)
    if not any(k[0] in (*sses, idle) for k in summary):
        return []
    lines = ["## Streams and idle connections", ""]
    if prose:
        lines += [
            "Measured with `loadgen` (`bench/loadgen.rs`, built by `cargo build --release"
            " --example loadgen`) instead of wrk: one run per round and server, medians across"
            " rounds. RSS is that of the server's whole process tree.",
            "",
        ]
    for sse in sses:
        if not (rows := sse_rows(summary, sse, servers)):
            continue
        scenario = SCENARIOS[sse]
        interval_ms = scenario.interval_s * 1000
        lines += [f"### {sse}", ""]
        if prose:
            lines += [
                f"{scenario.connections:,} concurrent clients each read one stream of"
                f" {scenario.events} `data:` events {interval_ms:g} ms apart"
                f" (`bench/apps/sse_tokens.py`, `{scenario.load_path}`), so the ideal is"
                f" {scenario.ideal_rps:,.0f} events/s. events/s counts the events delivered"
                " (loadgen's count minus the final chunk it also counts once per stream) over"
                " loadgen's wall time, connection set-up included. The delays are the gaps"
                " between consecutive events of a stream as the client reads them: the app"
                f" sleeps {interval_ms:g} ms between events, so anything above that is lag"
                " (a delay near 0 means events arrived together, after a lag); the target is"
                f" a p99 of at most {sse_delay_target_ms(scenario):g} ms. RSS is sampled every"
                f" {RSS_SAMPLE_S * 1000:g} ms while loadgen runs and the server's open"
                f" descriptors every {RSS_SAMPLE_S * FD_SAMPLE_EVERY:g} s; open at once is the"
                " most descriptors it held beyond those before the run (at most the clients),"
                " and KiB/stream is (RSS peak - RSS before) / open at once. A server that caps"
                " its connections (Granian's `--backpressure`, by default its `--backlog`,"
                " 1,024) holds fewer streams than there are clients and serves the rest"
                " later. CPU us/event is the server's CPU time during the run per event"
                " delivered.",
                "",
            ]
        lines += [table(sse_header(sse), rows), ""]
    if idle and (rows := idle_rows(summary, idle, servers)):
        scenario = SCENARIOS[idle]
        lines += [f"### {idle}", ""]
        if prose:
            lines += [
                f"loadgen opens {scenario.connections:,} connections one after another and"
                f" sends nothing on them, then holds them {scenario.hold_s:g} s while it times"
                f" one `GET {scenario.path}` (hello app) on a fresh connection every 100 ms."
                " open in s: until all connects returned. accepted: how many more sockets the"
                f" server held {IDLE_SETTLE_S:g} s later; RSS open is read at that moment, and"
                " KiB/conn is (RSS open - RSS before) / connections. still open: connections"
                " the server had not closed when the hold ended (every server runs with its"
                " default timeouts). loadgen connects one at a time, so a server that stops"
                " accepting stalls it: when the server's socket count has not grown for"
                f" {IDLE_STALL_S:g} s the run is cut short, and the row shows how many"
                " connections it accepted and the KiB per accepted connection.",
                "",
            ]
        lines += [table(IDLE_HEADER, rows), ""]
    header, rows = loadgen_comparison(summary, scenarios, servers, settings["baseline"])
    if rows:
        lines += [f"### Side by side ({settings['baseline']} / other)", ""]
        if prose:
            lines += [
                "Ratios only where they mean something: events/s above 1, KiB and CPU below 1"
                f" favour {settings['baseline']}.",
                "",
            ]
        lines += [table(header, rows), ""]
    return lines


CANCEL_HEADER = [
    "server", "flags", "requests", "reached app", "cancelled", "not cancelled",
    "delay p50 ms", "delay p99 ms", "delay max ms", "rounds",
]

OVERLOAD_HEADER = [
    "server", "flags", "200/s", "responses/s", "shed", "503s", "other status",
    "socket errors", "timeouts", "p50 ms", "p99 ms", "rounds",
]


def server_flags(name: str, server: str, code: bool) -> str:
    """The scenario's extra flags for ``server``, for the tables (``code``: in backquotes)."""
    flags = SCENARIOS[name].server_args.get(server) if name in SCENARIOS else None
    if not flags:
        return "defaults"
    return f"`{shlex.join(flags)}`" if code else shlex.join(flags)


def cancel_rows(
    summary: LoadgenSummary, name: str, servers: list[str], code: bool
) -> list[list[str]]:
    """Rows of the cancel table: one per server measured."""
    rows = []
    for server in servers:
        f = summary.get((name, server))
        if f is None:
            continue
        delays = [f"{f[k]:.2f}" if k in f else "-"
                  for k in ("delay_p50_ms", "delay_p99_ms", "delay_max_ms")]
        rows.append([
            server, server_flags(name, server, code), f"{f['requests']:,.0f}",
            f"{f['reached']:,.0f}", f"{f['cancelled']:,.0f}",
            f"{f['not_cancelled']:,.0f} of {f['requests']:,.0f}", *delays, f"{f['rounds']:.0f}",
        ])
    return rows


def overload_rows(
    summary: LoadgenSummary, name: str, servers: list[str], code: bool
) -> list[list[str]]:
    """Rows of the overload table: one per server measured."""
    rows = []
    for server in servers:
        f = summary.get((name, server))
        if f is None:
            continue
        rows.append([
            server, server_flags(name, server, code), fmt_rps(f["ok_per_s"]),
            fmt_rps(f["responses_per_s"]), f"{f['shed_share']:.1%}", f"{f['shed_503']:,.0f}",
            f"{f['other_status']:,.0f}", f"{f['socket_errors']:,.0f}", f"{f['timeouts']:,.0f}",
            f"{f['latency_p50_ms']:.2f}", f"{f['latency_p99_ms']:.2f}", f"{f['rounds']:.0f}",
        ])
    return rows


def robustness_sections(data: dict, table: Callable, prose: bool) -> list[str]:
    """The "Cancellation and overload" section: a table for each of the two scenarios."""
    settings = data["settings"]
    scenarios, servers = settings["scenarios"], settings["servers"]
    summary = summarise_loadgen([Run(**r) for r in data["runs"]], attribute="figures")
    cancel, overload = loadgen_scenario("cancel", scenarios), loadgen_scenario(
        "overload", scenarios)
    lines: list[str] = []
    if cancel and (rows := cancel_rows(summary, cancel, servers, prose)):
        lines += [f"### {cancel}", ""]
        if prose:
            requests = settings.get("cancel_requests", CANCEL_REQUESTS)
            lines += [
                f"{requests} clients, {CANCEL_CONCURRENCY} at a time (asyncio sockets in the"
                f" harness), each sends `GET /work?id=N` to `bench/apps/cancel_probe.py`, whose"
                " task then sleeps 60 s without calling `receive()`; the client closes its"
                f" connection {CANCEL_HOLD_S * 1000:g} ms later. The delay is from just before"
                " the client's close to the `CancelledError` in the app's task (both"
                " `time.monotonic()` on the same host); reached app: requests the app saw"
                " start. A server that only reports a disconnect through `receive()` never"
                " cancels such a task: it shows as not cancelled (the sleeps are released"
                f" {CANCEL_SETTLE_S:g} s after the last close, and not counted as cancels).",
                "",
            ]
        lines += [table(CANCEL_HEADER, rows), ""]
    if overload and (rows := overload_rows(summary, overload, servers, prose)):
        scenario = SCENARIOS[overload]
        lines += [f"### {overload}", ""]
        if prose:
            lines += [
                f"wrk with {scenario.connections} connections (`{scenario.lua}` counts the"
                " responses by status) against the 100 ms app (`bench/apps/slow_100ms.py`)."
                f" With {OVERLOAD_LIMIT} requests let in at once, a server answers at most"
                f" {OVERLOAD_LIMIT * 10:,} requests/s with 200, so the load is twice what the"
                " limit allows; the excess should be shed fast (503) rather than queued."
                " 200/s: responses with status 200 per second; shed: share of the responses"
                " that were not 200; the latencies are wrk's, over all responses (shed ones"
                " included). wrk keeps every connection busy, so a connection that gets a fast"
                " 503 asks again at once: the shed share mostly counts how fast the 503s are,"
                " and 200/s is the figure to compare. Granian has no limit on requests in"
                " flight, so it serves all"
                f" {scenario.connections} connections; uvicorn's --limit-concurrency counts"
                " connections as well as requests.",
                "",
            ]
        lines += [table(OVERLOAD_HEADER, rows), ""]
    return ["## Cancellation and overload", "", *lines] if lines else []


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table; numbers right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = bool(re.fullmatch(r"[\d.,x%-]+", cell))
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    left = ("scenario", "server", "notes", "metric", "flags")
    aligns = ["---" if h in left else "---:" for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _first_line(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "unavailable"
    text = (completed.stdout or completed.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def environment_info() -> dict[str, object]:
    """Machine, software versions and repository state, for the report."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    packages = {}
    for name in (
        "ferricorn", "granian", "uvicorn", "uvloop", "httptools", "fastapi", "starlette",
        "pydantic", "matplotlib",
    ):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "not installed"
    git = _first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    # Which build of the engine the servers import (PYTHONPATH may point at the source tree).
    engine = "not found"
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("ferricorn._ferricorn")
        if spec is not None and spec.origin:
            built = datetime.datetime.fromtimestamp(
                os.path.getmtime(spec.origin), datetime.timezone.utc)
            engine = f"{spec.origin} (built {built:%Y-%m-%d %H:%M} UTC)"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "uname": _first_line(["uname", "-a"]),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": packages,
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "git": git if "fatal" not in git else "no commit yet",
        "ferricorn_engine": engine,
    }


def write_markdown(path: Path, data: dict, chart: Path | None) -> None:
    """Write the Markdown report: command, machine, versions, tables, chart."""
    settings = data["settings"]
    env = data["environment"]
    runs = [Run(**r) for r in data["runs"]]
    summary = summarise(runs)
    scenarios, servers = settings["scenarios"], settings["servers"]
    baseline = settings["baseline"]
    others = comparison_columns(baseline, servers)
    pin = (
        f"server on CPUs {settings['server_cpus']}, wrk on CPUs {settings['wrk_cpus']}"
        if settings["server_cpus"] else "none (scheduler's choice)"
    )
    loadgen_used = [n for n in scenarios if SCENARIOS[n].kind in ("sse", "idle", "ws")]
    wrk_used = [n for n in scenarios if SCENARIOS[n].kind in ("wrk", "overload")]
    timed = wrk_used + [n for n in scenarios if SCENARIOS[n].kind == "ws"]
    generator = f"{env['wrk']}, {settings['threads']} thread(s)" if wrk_used else ""
    if loadgen_used:
        generator += ("; " if generator else "") + (
            "`target/release/examples/loadgen` (bench/loadgen.rs) for "
            + ", ".join(loadgen_used)
        )
    wrk_rows = results_rows(summary, scenarios, servers)
    wrk_ratio_rows = ratio_rows(summary, scenarios, baseline, others)
    lines = [
        "# ferricorn benchmark results",
        "",
        "Generated by `bench/run.py` (see"
        f" [bench/README.md]({os.path.relpath(REPO / 'bench' / 'README.md', path.parent)})"
        " for what each scenario"
        " measures and how to run it). Medians across rounds; each server runs one worker on"
        " the same machine, with the same app and the same"
        + (" wrk load" if not loadgen_used else " load (wrk, or loadgen where stated)")
        + ", servers alternating.",
        "",
        "## Command",
        "",
        "```sh",
        settings["command"],
        "```",
        "",
        "## Machine and software",
        "",
        f"- Date: {env['date']}",
        f"- `uname -a`: `{env['uname']}`",
        f"- `nproc`: {env['nproc']} (usable: {env['cpus_usable']}); CPU: {env['cpu_model']};"
        f" memory: {env['memory_gib']} GiB",
        f"- Load average (1, 5, 15 min) when the run started: {env.get('load_average', '?')}",
        f"- Python: {env['python']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        *([f"- ferricorn engine: `{env['ferricorn_engine']}`"]
          if "ferricorn_engine" in env else []),
        f"- Load generator: {generator}",
        f"- Repository: {env['git']}",
        f"- Rounds: {settings['rounds']}; "
        + (f"measured {settings['duration']} s per run after a {settings['warmup']} s"
           " warm-up; " if timed else "")
        + f"CPU pinning: {pin}",
        "",
    ]
    if wrk_rows:
        lines += [
            "## Results",
            "",
            markdown_table(RESULT_HEADER, wrk_rows),
            "",
            "CPU us/req is the server's user+system CPU time (whole process tree, from /proc)"
            " during the measured run divided by the requests completed: lower is better, and"
            " it is steadier than req/s on a loaded 2-core machine where wrk competes for the"
            " CPU.",
            "",
        ]
        ws_names = [n for n in scenarios if SCENARIOS[n].kind == "ws"
                    and any(k[0] == n for k in summary)]
        for name in ws_names:
            scenario = SCENARIOS[name]
            lines += [
                f"{name} is measured with `loadgen ws` rather than wrk: {scenario.connections}"
                f" WebSocket clients on `{scenario.load_path}` (`bench/apps/ws_echo.py`), each"
                f" sending a {WS_MESSAGE_BYTES}-byte text message and waiting for its echo"
                " before the next. Its req/s is echo round trips per second (over loadgen's"
                " wall time, handshakes included), p50/p99 the round-trip times, CPU us/req the"
                " server's CPU time per message, RSS MiB the peak during the run.",
                "",
            ]
    if others and wrk_ratio_rows:
        lines += [
            f"## Ratios ({baseline} / other)",
            "",
            "req/s ratios above 1 and CPU/req ratios below 1 favour " + baseline + ".",
            "",
            markdown_table(ratio_header(baseline, others), wrk_ratio_rows),
            "",
        ]
    lines += app_cost_section(data, markdown_table, prose=True)
    lines += loadgen_sections(data, markdown_table, prose=True)
    lines += robustness_sections(data, markdown_table, prose=True)
    failures = [r for r in runs if not r.ok]
    if failures:
        lines += ["## Failed runs", ""]
        lines += [f"- round {r.round}, {r.scenario}, {r.server}: {r.error}" for r in failures]
        lines.append("")
    # What the tables cannot say (profiles, ceilings, manual runs) is written by hand in
    # bench/ANALYSIS.md, so that a new run does not erase it; it names the run it refers to.
    if ANALYSIS.exists() and path.resolve() == (REPO / "bench" / "RESULTS.md").resolve():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    if chart is not None:
        rel = os.path.relpath(chart, path.parent)
        lines += ["## Chart", "", f"![requests per second]({rel})", ""]
    lines += ["## Scenarios", ""]
    lines += [
        f"- **{name}**: {SCENARIOS[name].summary}"
        + (f"; {SCENARIOS[name].connections} connections"
           if SCENARIOS[name].kind in ("wrk", "ws") else "")
        for name in scenarios
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


SERVER_COLOURS = {
    "ferricorn": "#d9480f", "granian": "#1c7ed6", "uvicorn": "#37b24d", "hyper": "#868e96"
}


def write_chart(path: Path, data: dict) -> bool:
    """One panel per scenario with a bar per server (median req/s) and the baseline ratios."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)
        return False
    settings = data["settings"]
    summary = summarise([Run(**r) for r in data["runs"]])
    baseline = settings["baseline"]
    # (title, {server: value}, ideal, {server: bar label suffix}): req/s per wrk scenario,
    # then events/s of sse-tokens and KiB per connection of idle-10k.
    panels: list[tuple[str, dict[str, float], float | None, dict[str, str]]] = []
    for name in settings["scenarios"]:
        values = {s: summary[(name, s)].rps for s in settings["servers"] if (name, s) in summary}
        if values:
            ideal = SCENARIOS[name].ideal_rps
            title = f"{name} (- - ideal {ideal:,.0f})" if ideal else name
            if SCENARIOS[name].kind == "ws":
                title = f"{name}: messages/s"
            panels.append((title, values, ideal, {}))
    wrk_panels = len(panels)
    loadgen = summarise_loadgen([Run(**r) for r in data["runs"]])
    for name in loadgen_scenarios("sse", settings["scenarios"]):
        values = {s: loadgen[(name, s)]["events_per_s"] for s in settings["servers"]
                  if (name, s) in loadgen}
        ideal = SCENARIOS[name].ideal_rps
        if values:
            panels.append((f"{name}: events/s (- - ideal {ideal / 1000:g}k)", values, ideal, {}))
    if name := loadgen_scenario("idle", settings["scenarios"]):
        found = {s: loadgen[(name, s)] for s in settings["servers"] if (name, s) in loadgen}
        values = {s: g["kib_per_connection"] for s, g in found.items()}
        stalls = {s: f"\n({g['accepted']:,.0f} accepted)" for s, g in found.items()
                  if g["stalled_rounds"]}
        if values:
            panels.append((f"{name}: KiB/conn (lower is better)", values, None, stalls))
    if not panels:
        return False
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.4 * rows), squeeze=False)
    thousands = FuncFormatter(lambda v, _pos: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")
    for ax, (title, by_server, ideal, suffixes) in zip(axes.flat, panels, strict=False):
        present = list(by_server)
        values = [by_server[s] for s in present]
        bars = ax.bar(present, values, color=[SERVER_COLOURS.get(s, "#495057") for s in present])
        for bar, value, server in zip(bars, values, present, strict=True):
            label = f"{value / 1000:.1f}k" if value >= 1000 else (
                f"{value:.0f}" if value >= 100 else f"{value:.3g}")
            ax.annotate(
                label + suffixes.get(server, ""),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8,
            )
        if ideal:
            ax.axhline(ideal, color="#495057", linestyle="--", linewidth=0.8)
        top = max(values + ([ideal] if ideal else []))
        ax.set_ylim(0, top * 1.2 if top > 0 else 1)
        ax.yaxis.set_major_formatter(thousands)
        ax.tick_params(axis="both", labelsize=8)
        ax.set_title(title, fontsize=10, fontweight="bold")
        if baseline in present:
            base = by_server[baseline]
            labels = [f"{baseline}/{s}: {ratio(base, by_server[s])}"
                      for s in present if s != baseline]
            ax.text(0.5, -0.14, "\n".join(labels), transform=ax.transAxes, ha="center",
                    va="top", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    median = f"median of {settings['rounds']} round(s), one worker each"
    ws_panels = any(SCENARIOS[n].kind == "ws" for n in settings["scenarios"] if n in SCENARIOS)
    if len(panels) == wrk_panels and not ws_panels:
        suptitle = f"Requests/s, {median} (higher is better)"
    elif wrk_panels:
        suptitle = f"Requests/s unless the panel says otherwise, {median}"
    else:
        suptitle = median[0].upper() + median[1:]
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def print_tables(data: dict) -> None:
    """The summary tables on stdout."""
    settings = data["settings"]
    summary = summarise([Run(**r) for r in data["runs"]])
    scenarios, servers, baseline = settings["scenarios"], settings["servers"], settings["baseline"]
    rows = results_rows(summary, scenarios, servers)
    if rows:
        print()
        print(text_table(RESULT_HEADER, rows))
    others = comparison_columns(baseline, servers)
    rows = ratio_rows(summary, scenarios, baseline, others)
    if others and rows:
        print()
        print(text_table(ratio_header(baseline, others), rows))
    print()
    for line in app_cost_section(data, text_table, prose=False):
        print(line)
    for line in loadgen_sections(data, text_table, prose=False):
        print(line)
    for line in robustness_sections(data, text_table, prose=False):
        print(line)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _csv(choices: list[str] | tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(choices)} (got {text!r})"
            )
        return list(dict.fromkeys(items))

    return parse


def _cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", type=_csv(list(SCENARIOS)), default=list(SCENARIOS),
                        help=f"comma-separated, default all: {','.join(SCENARIOS)}")
    parser.add_argument("--servers", type=_csv(ALL_SERVERS), default=list(ALL_SERVERS),
                        help=f"comma-separated, default {','.join(ALL_SERVERS)}"
                        " (hyper, the ceiling, runs hello, slow-100ms and the sse scenarios)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds per measured wrk or ws-echo run (default 5; the"
                        " loadgen scenarios sse-tokens, sse-10k and idle-10k have a fixed size)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of wrk (or ws-echo) warm-up before each measured run"
                        " (default 1; 0: none; the sse scenarios warm up with 100 short"
                        " streams, idle-10k not)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--no-app-cost", dest="app_cost", action="store_false",
                        help="skip measuring each app's own cost in-process (bench/appcost.py)")
    parser.add_argument("--cancel-requests", type=int, default=CANCEL_REQUESTS,
                        help=f"requests the cancel scenario opens and abandons per run (default"
                        f" {CANCEL_REQUESTS}, {CANCEL_CONCURRENCY} at a time)")
    parser.add_argument("--baseline", default="ferricorn",
                        help="server whose ratios to the others are reported (default ferricorn)")
    parser.add_argument("--ferricorn-args", default="",
                        help="extra flags for ferricorn, one shell-quoted string")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server to CPU 0 and wrk to the other CPUs")
    parser.add_argument("--server-cpus", type=_cpus, help="CPUs for the server, e.g. 0 or 0-1")
    parser.add_argument("--wrk-cpus", type=_cpus, help="CPUs for wrk, e.g. 1")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds to pause between runs (default 0.5)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md",
                        help="Markdown report (default bench/RESULTS.md)")
    parser.add_argument("--chart", type=Path, default=REPO / "docs" / "bench.png",
                        help="chart image (default docs/bench.png); '' for none")
    parser.add_argument("--json", type=Path, default=OUT_DIR / "results.json",
                        help="raw per-run data (default bench/out/results.json)")
    parser.add_argument("--from-json", type=Path,
                        help="skip measuring: re-render the reports from a saved --json file")
    args = parser.parse_args(argv)
    args.ferricorn_args = shlex.split(args.ferricorn_args)
    if args.rounds < 1 or args.duration <= 0 or args.threads < 1 or args.cancel_requests < 1:
        parser.error("--rounds, --duration, --threads and --cancel-requests must be positive")
    if args.pin:
        usable = sorted(os.sched_getaffinity(0))
        if len(usable) < 2:
            parser.error("--pin needs at least 2 CPUs")
        args.server_cpus = args.server_cpus or {usable[0]}
        args.wrk_cpus = args.wrk_cpus or set(usable) - args.server_cpus
    if args.chart is not None and str(args.chart) in ("", "."):
        args.chart = None
    return args


def _maybe_reexec_in_venv() -> None:
    """Re-run this script with .venv-bench's interpreter when it exists and isn't ours."""
    venv_python = VENV / "bin" / "python"
    if os.environ.get("FERRICORN_BENCH_NO_VENV") or not venv_python.exists():
        return
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    os.execv(venv_python, [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    """Measure (or reload), then print and write the reports."""
    if argv is None:
        _maybe_reexec_in_venv()
        argv = sys.argv[1:]
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        problems = missing_requirements(args.servers, args.scenarios)
        # Servers inherit the limit: one descriptor per connection, plus 1,024 to spare.
        loadgen_runs = [SCENARIOS[n] for n in args.scenarios
                        if SCENARIOS[n].kind in ("sse", "idle", "ws")]
        if loadgen_runs:
            biggest = max(loadgen_runs, key=lambda s: s.connections)
            if problem := raise_fd_limit(biggest.connections + 1024, biggest.name):
                problems.append(problem)
        if problems:
            print("cannot run the benchmark:\n  " + "\n  ".join(problems), file=sys.stderr)
            print("`make bench` sets everything up (see bench/README.md).", file=sys.stderr)
            return 2
        python = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(
            str(REPO)) else sys.executable
        settings = {
            "command": shlex.join([python, "bench/run.py", *argv]),
            "scenarios": args.scenarios,
            "servers": args.servers,
            "baseline": args.baseline,
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "threads": args.threads,
            "cancel_requests": args.cancel_requests,
            "ferricorn_args": args.ferricorn_args,
            "server_cpus": sorted(args.server_cpus or []),
            "wrk_cpus": sorted(args.wrk_cpus or []),
        }
        environment = environment_info()
        print(f"ferricorn bench: {len(args.scenarios)} scenario(s) x {len(args.servers)} "
              f"server(s) x {args.rounds} round(s), {args.duration:g} s each", file=sys.stderr)
        runs = run_campaign(args)
        app_costs = measure_app_costs(args.scenarios) if args.app_cost else {}
        data = {"settings": settings, "environment": environment,
                "runs": [asdict(r) for r in runs], "app_costs": app_costs}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print_tables(data)
    chart = args.chart if args.chart and write_chart(args.chart, data) else None
    write_markdown(args.out, data, chart)
    print(f"wrote {args.out}" + (f" and {chart}" if chart else ""), file=sys.stderr)
    failed = sum(1 for r in data["runs"] if not r["ok"])
    if failed:
        print(f"{failed} run(s) failed: see {OUT_DIR / 'logs'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
