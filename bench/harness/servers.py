"""The servers under test: how to start each on a scenario, when it is ready, how to stop it.

Owns which server runs which scenario (``serves``), the command lines of ferricorn, Granian,
uvicorn, Hypercorn, gunicorn and the hyper ceiling (``server_command``, in ASGI or WSGI mode
as the scenario's ``interface`` says), the paths of the Rust example
binaries, what a run needs before it starts (``missing_requirements``, ``raise_fd_limit``),
free ports, the readiness check with one real request over the scenario's protocol
(``wait_until_serving``: HTTP/1.1, over TLS or not, or HTTP/2 with the ``h2`` package),
shutdown (``stop_server``) and the set-up every child process gets (``child_setup``: SIGINT
restored, CPU pinning). Must not put load on a server nor sample it: the drivers and procstat
do.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import REPO
from .scenarios import LOADGEN_KINDS, SCENARIOS, Scenario
from .tls import TlsFiles, client_context, describe_tls, server_tls_flags

HOST = "127.0.0.1"
ALL_SERVERS = ("ferricorn", "granian", "uvicorn", "hypercorn", "gunicorn", "hyper")
# The servers of the WSGI scenarios. uvicorn is left out: its WSGI shim (--interface wsgi) is
# deprecated in favour of a2wsgi and would measure an adapter onto its event loop rather than
# a WSGI server. Hypercorn is there for the TLS and HTTP/2 scenarios only, and the hyper
# ceiling has no WSGI counterpart (run hello beside them for its ceiling).
WSGI_SERVERS = ("ferricorn", "granian", "gunicorn")


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
    """The load generator of the sse, llm, ws and idle scenarios (bench/loadgen.rs)."""
    return example_binary("loadgen")


def serves(server: str, scenario: Scenario) -> bool:
    """Whether ``server`` runs ``scenario``: the WSGI scenarios run on WSGI_SERVERS only and
    gunicorn runs nothing else; uvicorn speaks no HTTP/2, Hypercorn is there for the TLS and
    HTTP/2 scenarios only, and the hyper ceiling only where the scenario names its flags."""
    if server not in ALL_SERVERS:
        raise ValueError(f"unknown server {server!r}")
    if scenario.interface == "wsgi":
        return server in WSGI_SERVERS
    if server == "gunicorn":
        return False
    if server == "hyper":
        return scenario.ceiling is not None
    if server == "uvicorn":
        return not scenario.http2
    if server == "hypercorn":
        return scenario.tls or scenario.http2
    return True  # ferricorn, granian


def server_command(
    server: str, scenario: Scenario, port: int, ferricorn_args: list[str],
    tls: TlsFiles | None = None,
) -> list[str] | None:
    """The command line serving ``scenario`` on ``port``, or None if the server can't run it.

    A TLS scenario needs ``tls``, the run's certificate (``tls.certificates``).
    """
    if not serves(server, scenario):
        return None
    py = sys.executable
    extra = list(scenario.server_args.get(server, ()))
    if scenario.tls:
        if tls is None:
            raise ValueError(f"{scenario.name} is served over TLS: it needs a certificate")
        extra = [*server_tls_flags(server, tls), *extra]
    wsgi = scenario.interface == "wsgi"
    threads = str(scenario.wsgi_threads)
    if server == "ferricorn":
        # HTTP/2 needs no flag: ferricorn serves h2c by prior knowledge on plain ports and
        # offers h2 by ALPN on TLS ones, beside HTTP/1.1.
        interface = ["--interface", "wsgi", "--wsgi-threads", threads] if wsgi else []
        return [
            py, "-m", "ferricorn", scenario.app, "--port", str(port),
            "--no-access-log", "--log-level", "warning", *interface, *extra, *ferricorn_args,
        ]
    if server == "granian" and wsgi:
        # The app runs on Granian's blocking threads; no event loop runs it, so no --loop.
        return [
            py, "-m", "granian", "--interface", "wsgi", "--port", str(port), "--workers", "1",
            "--blocking-threads", threads, "--http", "2" if scenario.http2 else "1",
            "--no-access-log", "--log-level", "warning", *extra, scenario.app,
        ]
    if server == "granian":
        # --http 1 for the HTTP/1.1 load (wrk, over TLS or not); --http 2 for h2load: h2c by
        # prior knowledge on a plain port, h2 by ALPN on a TLS one.
        return [
            py, "-m", "granian", "--interface", "asgi", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--http", "2" if scenario.http2 else "1", "--no-access-log",
            "--log-level", "warning", *extra, scenario.app,
        ]
    if server == "uvicorn":
        return [
            py, "-m", "uvicorn", scenario.app, "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning", *extra,
        ]
    if server == "hypercorn":
        # Hypercorn serves HTTP/1.1 and HTTP/2 (h2c by prior knowledge, h2 by ALPN) on the same
        # port, and writes no access log unless told to.
        return [
            py, "-m", "hypercorn", "--bind", f"{HOST}:{port}", "--workers", "1",
            "--worker-class", "uvloop", "--log-level", "warning", *extra, scenario.app,
        ]
    if server == "gunicorn":
        # WSGI only: one worker process (-k gthread) running the app on a pool of threads.
        # Its access log is off unless asked for; --no-control-socket (gunicorn >= 25.1) keeps
        # it from opening a control socket in $XDG_RUNTIME_DIR or ~/.gunicorn.
        return [
            py, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", threads, "--log-level", "warning",
            "--no-control-socket", *extra, scenario.app,
        ]
    assert scenario.ceiling is not None  # serves() said so
    return [str(hyper_binary()), "--port", str(port), *scenario.ceiling, *extra]


def missing_requirements(servers: list[str], scenarios: list[str]) -> list[str]:
    """What is missing to run ``scenarios`` on ``servers`` (empty when all is there)."""
    problems = []
    selected = [SCENARIOS[name] for name in scenarios]
    kinds = {scenario.kind for scenario in selected}
    if kinds & {"wrk", "overload"} and shutil.which("wrk") is None:
        problems.append("wrk is not on PATH (apt-get install wrk)")
    if "h2load" in kinds and shutil.which("h2load") is None:
        problems.append("h2load is not on PATH (apt-get install nghttp2-client)")
    if any(scenario.tls for scenario in selected) and shutil.which("openssl") is None:
        problems.append("openssl is not on PATH: it makes the TLS scenarios' certificate"
                        " (apt-get install openssl)")
    if any(s.http2 for s in selected) and importlib.util.find_spec("h2") is None:
        problems.append(f"h2 is not installed in {sys.prefix} (the HTTP/2 readiness check)")
    if kinds & LOADGEN_KINDS and not loadgen_binary().exists():
        problems.append(
            f"{loadgen_binary()} is missing (cargo build --release --example loadgen)"
        )
    # Only the servers that run one of the scenarios (Hypercorn: the TLS and HTTP/2 ones).
    running = [server for server in servers if any(serves(server, s) for s in selected)]
    modules = {"ferricorn": "ferricorn", "granian": "granian", "uvicorn": "uvicorn",
               "hypercorn": "hypercorn", "gunicorn": "gunicorn"}
    for server in running:
        if server in modules and importlib.util.find_spec(modules[server]) is None:
            problems.append(f"{server} is not installed in {sys.prefix}")
        if server == "hyper" and not hyper_binary().exists():
            problems.append(
                f"{hyper_binary()} is missing "
                "(cargo build --release --example hyper_hello)"
            )
    # uvloop runs the ASGI apps (Granian's --loop uvloop); no event loop runs a WSGI app.
    running_asgi = {server for server in running
                    if any(serves(server, s) and s.interface == "asgi" for s in selected)}
    needed = [("uvloop", {"granian", "uvicorn", "hypercorn"}), ("httptools", {"uvicorn"})]
    for module, users in needed:
        if users & running_asgi and importlib.util.find_spec(module) is None:
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


def http_request(
    scenario: Scenario, port: int, tls: TlsFiles | None = None, timeout: float = 5.0
) -> tuple[int, bytes, str]:
    """Send the scenario's request once over HTTP/1.1, as wrk will (over TLS, checking the
    certificate, with no ALPN, like wrk, for a TLS scenario); return (status, body, protocol).
    """
    headers = {"Content-Type": scenario.content_type} if scenario.content_type else {}
    for header in scenario.headers:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    if scenario.tls:
        if tls is None:
            raise ValueError(f"{scenario.name} is served over TLS: it needs a certificate")
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            HOST, port, timeout=timeout, context=client_context(tls))
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(scenario.method, scenario.path,
                     body=scenario.body if scenario.method == "POST" else None, headers=headers)
        # Before the response: with "Connection: close" the connection lets go of its socket.
        protocol = describe_tls(conn.sock) if scenario.tls else ""
        response = conn.getresponse()
        body = response.read()
        version = "HTTP/1.1" if response.version == 11 else "HTTP/1.0"
        return response.status, body, f"{version}, {protocol}" if protocol else version
    finally:
        conn.close()


def h2_exchange(
    sock: socket.socket, scheme: str, authority: str, method: str, path: str,
    body: bytes = b"", content_type: str | None = None,
) -> tuple[int, bytes]:
    """One HTTP/2 request on a connected socket (h2c by prior knowledge, or TLS after ALPN
    chose h2), with the ``h2`` package: the client preface, the request on stream 1, then
    frames until that stream ends; returns (status, body). Raises ConnectionError on an
    HTTP/2 error, a reset stream or a connection closed early."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    headers = [(":method", method), (":scheme", scheme), (":authority", authority),
               (":path", path)]
    if content_type:
        headers.append(("content-type", content_type))
    if body:
        headers.append(("content-length", str(len(body))))
    conn.send_headers(1, headers, end_stream=not body)
    for start in range(0, len(body), conn.max_outbound_frame_size):  # within the 64 KiB window
        chunk = body[start:start + conn.max_outbound_frame_size]
        conn.send_data(1, chunk, end_stream=start + len(chunk) == len(body))
    sock.sendall(conn.data_to_send())
    status: int | None = None
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(
                "HTTP/2: the server closed the connection " + (
                    "mid-response" if status is not None else
                    "before any response (does it speak HTTP/2 on this port?)"))
        try:
            events = conn.receive_data(data)
        except h2.exceptions.H2Error as err:
            raise ConnectionError(f"HTTP/2: {err!r}") from None
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                chunks.append(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                raise ConnectionError(f"HTTP/2: stream reset, error code {event.error_code}")
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise ConnectionError(f"HTTP/2: GOAWAY, error code {event.error_code}")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                if status is None:
                    raise ConnectionError("HTTP/2: stream 1 ended without a response")
                conn.close_connection()
                sock.sendall(conn.data_to_send())
                return status, b"".join(chunks)
        if pending := conn.data_to_send():
            sock.sendall(pending)


def h2_request(
    scenario: Scenario, port: int, tls: TlsFiles | None = None, timeout: float = 5.0
) -> tuple[int, bytes, str]:
    """Send the scenario's request once over HTTP/2, as h2load will: h2c by prior knowledge,
    or TLS offering only h2 by ALPN for a TLS scenario; return (status, body, protocol)."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        sock: socket.socket = raw
        protocol = "h2c"
        if scenario.tls:
            if tls is None:
                raise ValueError(f"{scenario.name} is served over TLS: it needs a certificate")
            sock = client_context(tls, alpn=["h2"]).wrap_socket(raw, server_hostname=HOST)
            chosen = sock.selected_alpn_protocol()
            if chosen != "h2":
                raise ConnectionError(f"the server chose {chosen!r} by ALPN, not h2")
            protocol = f"h2, {describe_tls(sock)}"
        status, body = h2_exchange(
            sock, "https" if scenario.tls else "http", f"{HOST}:{port}", scenario.method,
            scenario.path, scenario.body, scenario.content_type)
        return status, body, protocol


def wait_until_serving(
    proc: subprocess.Popen, scenario: Scenario, port: int, timeout: float = 30.0,
    tls: TlsFiles | None = None,
) -> tuple[str | None, str | None]:
    """Wait until the server accepts connections, then check one real request (over HTTP/2
    for an HTTP/2 scenario, over TLS with ``tls`` for a TLS one).

    Returns (None, protocol) when the server answers correctly, protocol being what the
    request went over ("HTTP/1.1", "HTTP/1.1, TLSv1.3 TLS_AES_256_GCM_SHA384", "h2c", ...);
    otherwise (what went wrong, None).
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return f"server exited with code {proc.returncode} before serving", None
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > deadline:
                return f"server not accepting connections after {timeout:.0f}s", None
            time.sleep(0.05)
    request = h2_request if scenario.http2 else http_request
    try:
        status, body, protocol = request(scenario, port, tls)
    except (OSError, http.client.HTTPException) as err:
        return f"request failed: {err!r}", None
    problem = scenario.check(status, body)
    return (f"wrong answer: {problem}", None) if problem else (None, protocol)


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
