"""End-to-end tests of the process model: the supervisor and its worker processes.

--workers (and $WEB_CONCURRENCY), prefixed worker logs, a killed worker replaced under load,
startup failures that stop the server, SIGHUP rolling restarts without failed requests,
SIGTTIN/SIGTTOU, --limit-max-requests, --timeout-worker-healthcheck, --reload, SIGTERM
draining, --pid-file and --uds with several workers.

Served app: tests/apps/workers_app.py (/pid answers the worker's process id, /sleep?s=N
sleeps, /block?s=N blocks the event loop). Worker processes are found as the supervisor's
children in /proc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import children, http_client

APP = "apps.workers_app:app"

#: How long a worker may take to start serving (the machine may be busy).
WORKER_START = 15.0

# --- processes -------------------------------------------------------------------------------


def worker_ready(logs: str, pid: int) -> bool:
    """The worker with this pid logged that it is serving."""
    started = re.search(rf"Started worker (\d+) \[{pid}\]", logs)
    if not started:
        return False
    wid = started.group(1)
    if re.search(rf"^\[worker {wid}\] .*Ferricorn running on", logs, re.M):
        return True
    # One worker, output not prefixed: its lines follow its "Started worker" line (the
    # supervisor's own "running on" line comes before every "Started worker" line).
    return "[worker " not in logs and "Ferricorn running on" in logs[started.end():]


def wait_for(predicate, timeout: float, what: str, logs=None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"; logs:\n{logs()}" if logs else ""
            raise AssertionError(f"{what}: not within {timeout}s{extra}")
        time.sleep(0.02)


def assert_supervised(srv) -> int:
    """Waits for an HTTP answer and checks it came from a worker process, not from the
    process that was started (fails fast when no supervisor runs); returns the worker pid."""

    def answer():
        assert srv.alive(), f"server exited with {srv.proc.poll()}; logs:\n{srv.logs()}"
        try:
            with http_client(timeout=3) as client:
                resp = client.get(srv.url + "/pid")
        except httpx.HTTPError:
            return None
        return int(resp.text) if resp.status_code == 200 else None

    pid = wait_for(answer, WORKER_START, "an HTTP answer", srv.logs)
    assert pid != srv.proc.pid, (
        f"no supervisor: the started process [{pid}] serves by itself; logs:\n{srv.logs()}")
    return pid


def wait_workers(srv, count: int, timeout: float = WORKER_START,
                 not_in: set[int] = frozenset()) -> set[int]:
    """Waits until the supervisor has exactly `count` children, none of them in `not_in`,
    all serving; returns their pids."""

    def ready():
        assert srv.alive(), f"server exited with {srv.proc.poll()}; logs:\n{srv.logs()}"
        pids = children(srv.proc.pid)
        if len(pids) != count or pids & not_in:
            return None
        logs = srv.logs()
        return pids if all(worker_ready(logs, p) for p in pids) else None

    return wait_for(ready, timeout, f"{count} serving workers", srv.logs)


# --- client load -----------------------------------------------------------------------------


@dataclass
class Outcome:
    start: float
    end: float
    status: int | None = None
    body: str = ""
    error: str | None = None


@dataclass
class Load:
    """Client threads sending GET `path` in a loop until stopped, recording every outcome.
    keepalive=False sends `Connection: close` (a new connection per request)."""

    url: str
    path: str = "/pid"
    threads: int = 1
    keepalive: bool = True
    uds: str | None = None
    pause: float = 0.01
    max_requests: int | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]

    def _client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=self.uds) if self.uds else None
        headers = {} if self.keepalive else {"connection": "close"}
        return http_client(transport=transport, headers=headers, timeout=5.0)

    def _run(self) -> None:
        with self._client() as client:
            while not self._stop.is_set():
                with self._lock:
                    if self.max_requests is not None and len(self.outcomes) >= self.max_requests:
                        return
                start = time.monotonic()
                try:
                    resp = client.get(self.url + self.path)
                    outcome = Outcome(start, time.monotonic(), resp.status_code, resp.text)
                except httpx.HTTPError as exc:
                    outcome = Outcome(start, time.monotonic(), error=repr(exc))
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause:
                    time.sleep(self.pause)

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        return self.join()

    def join(self, timeout: float = 30.0) -> list[Outcome]:
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), "client thread did not finish"
        return list(self.outcomes)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.error is not None or o.status != 200]


def pids_of(outcomes: list[Outcome]) -> set[int]:
    return {int(o.body) for o in outcomes if o.status == 200 and o.body.isdigit()}


# --- several workers -------------------------------------------------------------------------


def test_workers_share_the_socket_and_prefix_their_logs(server):
    srv = server.start(APP, "--workers", "2")
    workers = wait_workers(srv, 2)
    load = Load(srv.url, keepalive=False, pause=0, max_requests=200).start()
    outcomes = load.join()
    assert failures(outcomes) == []
    assert len(outcomes) == 200
    assert pids_of(outcomes) == workers
    assert srv.proc.pid not in workers
    logs = srv.logs()
    # The supervisor's own lines are not prefixed; the workers' are.
    supervisor = rf"^INFO: +Started supervisor process \[{srv.proc.pid}\] with 2 worker\(s\)$"
    assert re.search(supervisor, logs, re.M), logs
    for pid in workers:
        match = re.search(rf"^INFO: +Started worker (\d+) \[{pid}\]$", logs, re.M)
        assert match, logs
        wid = match.group(1)
        assert re.search(rf"^\[worker {wid}\] INFO: +Started server process \[{pid}\]$",
                         logs, re.M), logs
        # Access lines come through the worker's log writer and the supervisor's relay,
        # after the responses: waited for.
        srv.wait_for_log(re.compile(rf'^\[worker {wid}\] INFO: +.*"GET /pid HTTP/1.1" 200',
                                    re.M), timeout=5)
    assert srv.stop(signal.SIGTERM) == 0


def test_web_concurrency_sets_the_default_worker_count(server):
    srv = server.start(APP, env={"WEB_CONCURRENCY": "3"})
    wait_workers(srv, 3)
    assert "with 3 worker(s)" in srv.logs()
    assert srv.stop(signal.SIGTERM) == 0


def test_workers_flag_overrides_web_concurrency(server):
    srv = server.start(APP, "--workers", "2", env={"WEB_CONCURRENCY": "3"})
    wait_workers(srv, 2)
    time.sleep(0.5)  # no third worker shows up later
    assert len(children(srv.proc.pid)) == 2
    assert srv.stop(signal.SIGTERM) == 0


def test_killed_worker_is_replaced_under_load(server):
    srv = server.start(APP, "--workers", "2")
    workers = wait_workers(srv, 2)
    with Load(srv.url, keepalive=False) as fresh, Load(srv.url, keepalive=True) as kept:
        time.sleep(0.5)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        new = wait_for(lambda: children(srv.proc.pid) - workers, 3.0, "a new worker process",
                       srv.logs)
        started_after = time.monotonic() - killed_at
        replacement = wait_workers(srv, 2, not_in={victim})
        time.sleep(2.0)
    outcomes = fresh.outcomes + kept.outcomes
    logs = srv.logs()
    assert re.search(rf"^WARNING: +Worker \d+ \[{victim}\] died \(signal 9 \(SIGKILL\)\); "
                     r"replacing it$", logs, re.M), logs
    assert started_after < 1.0, f"replacement started {started_after:.2f}s after the kill"
    assert new <= replacement
    failed = failures(outcomes)
    late = [o for o in failed if o.start > killed_at + 1.0]
    assert late == [], f"requests failed more than 1 s after the kill: {late}"
    assert len(failed) <= 5, failed
    after = [o for o in outcomes if o.start > killed_at + 1.0]
    assert len(after) >= 20, f"only {len(after)} requests after the kill"
    assert pids_of(after) <= replacement
    assert victim not in pids_of(after)
    assert srv.stop(signal.SIGTERM) == 0


# --- startup failures stop the server --------------------------------------------------------


def test_import_error_in_workers_stops_the_server(server):
    start = time.monotonic()
    done = server.run("apps.broken_import:app", "--workers", "2", "--port", "0", timeout=20)
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.output
    assert "a_module_that_is_not_installed" in done.output
    assert "failed to start" in done.output
    assert len(re.findall(r"Started worker \d+ ", done.output)) <= 2, "workers were respawned"
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"


def test_lifespan_startup_failure_in_workers_stops_the_server(server):
    start = time.monotonic()
    done = server.run("apps.lifespan_app:failing_app", "--workers", "2", "--lifespan", "on",
                      "--port", "0", timeout=20)
    elapsed = time.monotonic() - start
    assert done.returncode == 3, done.output
    assert "Application startup failed" in done.output
    assert len(re.findall(r"Started worker \d+ ", done.output)) <= 2, "workers were respawned"
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"


# --- SIGHUP, SIGTTIN, SIGTTOU ----------------------------------------------------------------


#: The app each SIGHUP test serves per interface, its flags and the interface its workers log.
SIGHUP_APPS = {
    "asgi": (APP, (), "asgi3 (detected by --interface auto)"),
    "wsgi": ("apps.wsgi_features_app:app", ("--interface", "wsgi"), "wsgi"),
}


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_sighup_rolling_restart_fails_no_request(server, interface):
    app, flags, named = SIGHUP_APPS[interface]
    srv = server.start(app, *flags, "--workers", "2")
    old = wait_workers(srv, 2)
    # Keep-alive clients (each holds a connection to one worker) and new connections.
    with Load(srv.url, threads=4, keepalive=True) as kept, \
            Load(srv.url, keepalive=False) as fresh:
        time.sleep(1.0)
        signalled = time.monotonic()
        srv.send_signal(signal.SIGHUP)
        new = wait_workers(srv, 2, not_in=old)
        restarted_at = time.monotonic()
        time.sleep(1.0)
    outcomes = kept.outcomes + fresh.outcomes
    assert failures(outcomes) == [], failures(outcomes)[:5]
    assert len(outcomes) > 100
    assert [o.body for o in outcomes if not o.body.isdigit()] == []
    assert not new & old
    assert srv.proc.pid not in old | new
    assert pids_of(outcomes) <= old | new
    before = [o for o in outcomes if o.end < signalled]
    assert before and pids_of(before) <= old
    after = [o for o in outcomes if o.start > restarted_at]
    assert len(after) > 20
    assert pids_of(after) <= new
    logs = srv.logs()
    assert "SIGHUP: replacing the workers one by one" in logs
    for pid in old:
        assert re.search(rf"Worker \d+ \[{pid}\] stopped \(exit code 0\)", logs), logs
    # The replacements run the app with the same interface.
    for pid in new:
        started = re.search(rf"^INFO: +Started worker (\d+) \[{pid}\]$", logs, re.M)
        assert started, f"no 'Started worker' line for [{pid}]; logs:\n{logs}"
        assert re.search(rf"^\[worker {started.group(1)}\] INFO: +Application interface: "
                         rf"{re.escape(named)}$", logs, re.M), logs
    assert srv.stop(signal.SIGTERM) == 0


def test_sighup_under_wrk_has_no_socket_errors(server):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    srv = server.start(APP, "--workers", "2", "--no-access-log")
    old = wait_workers(srv, 2)
    wrk = subprocess.Popen(["wrk", "-t1", "-c10", "-d4s", f"{srv.url}/pid"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        srv.send_signal(signal.SIGHUP)
        new = wait_workers(srv, 2, not_in=old, timeout=10)
        output, _ = wrk.communicate(timeout=20)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    assert wrk.returncode == 0, output
    assert re.search(r"(\d+) requests in", output), output
    assert int(re.search(r"(\d+) requests in", output).group(1)) > 100, output
    assert "Socket errors" not in output, output
    assert "Non-2xx" not in output, output
    assert not new & old
    assert srv.stop(signal.SIGTERM) == 0


def test_sigttin_adds_and_sigttou_removes_a_worker(server):
    srv = server.start(APP, "--workers", "2")
    two = wait_workers(srv, 2)
    srv.send_signal(signal.SIGTTIN)
    three = wait_workers(srv, 3)
    assert two < three
    srv.wait_for_log("SIGTTIN: now 3 workers")
    srv.send_signal(signal.SIGTTOU)
    back = wait_workers(srv, 2)
    assert back < three
    srv.wait_for_log("SIGTTOU: now 2 workers")
    removed = (three - back).pop()
    srv.wait_for_log(re.compile(rf"Worker \d+ \[{removed}\] stopped \(exit code 0\)"))
    srv.send_signal(signal.SIGTTOU)
    one = wait_workers(srv, 1)
    srv.wait_for_log("SIGTTOU: now 1 workers")
    # One worker is the minimum.
    srv.send_signal(signal.SIGTTOU)
    srv.wait_for_log("SIGTTOU ignored: one worker is the minimum")
    time.sleep(0.5)
    assert children(srv.proc.pid) == one
    with http_client() as client:
        for _ in range(5):
            resp = client.get(srv.url + "/pid")
            assert resp.status_code == 200
            assert int(resp.text) in one
    assert srv.stop(signal.SIGTERM) == 0


# --- worker recycling ------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_limit_max_requests_replaces_workers_without_failures(server, workers):
    srv = server.start(APP, "--workers", str(workers), "--limit-max-requests", "50")
    assert_supervised(srv)
    wait_workers(srv, workers)
    load = Load(srv.url, keepalive=True, pause=0.002, max_requests=300).start()
    outcomes = load.join(timeout=60)
    assert failures(outcomes) == [], failures(outcomes)[:5]
    assert len(outcomes) == 300
    assert len(pids_of(outcomes)) > 1, "one worker served all 300 requests"
    assert srv.proc.pid not in pids_of(outcomes), "no supervisor: the server itself served"
    logs = srv.logs()
    assert "Served 50 requests (--limit-max-requests): shutting down." in logs
    assert re.search(r"Worker \d+ \[\d+\] finished its work; replacing it", logs), logs
    assert srv.alive()
    assert srv.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_healthcheck_replaces_a_worker_with_a_blocked_loop(server, workers):
    srv = server.start(APP, "--workers", str(workers), "--timeout-worker-healthcheck", "2")
    assert_supervised(srv)
    before = wait_workers(srv, workers)
    blocked: dict[str, object] = {}

    def block() -> None:
        try:
            with http_client(timeout=20) as client:
                blocked["response"] = client.get(srv.url + "/block?s=30",
                                                 headers={"connection": "close"})
        except httpx.HTTPError as exc:
            blocked["error"] = exc

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    logs = srv.wait_for_log(re.compile(r"BLOCK-STARTED (\d+)"))
    victim = int(re.search(r"BLOCK-STARTED (\d+)", logs).group(1))
    assert victim in before
    blocked_at = time.monotonic()
    logs = srv.wait_for_log(re.compile(rf"Worker \d+ \[{victim}\] has not answered"),
                            timeout=6)
    noticed = time.monotonic() - blocked_at
    assert noticed < 5, f"noticed after {noticed:.1f}s"
    wait_workers(srv, workers, not_in={victim}, timeout=10)
    thread.join(10)
    assert "response" not in blocked, "the blocked request was answered"
    with http_client(timeout=5) as client:
        resp = client.get(srv.url + "/pid")
    assert resp.status_code == 200
    assert int(resp.text) != victim
    assert srv.alive()
    assert srv.stop(signal.SIGTERM) == 0


# --- reload ----------------------------------------------------------------------------------

#: Modules served by --reload, by interface: the source (with `{text}` as its body), a
#: syntax error, the flags, and the interface the startup line names.
RELOAD_APPS = {
    "asgi": ('''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": b"{text}"}})
''', "async def app(scope, receive, send):\n    return (\n", (),
             "asgi3 (detected by --interface auto)"),
    "wsgi": ("""
def app(environ, start_response):
    body = b"{text}"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
""", "def app(environ, start_response):\n    return (\n", ("--interface", "wsgi"), "wsgi"),
}


def _get_text(srv) -> str | None:
    try:
        with http_client(timeout=3) as client:
            resp = client.get(srv.url + "/")
    except httpx.HTTPError:
        return None
    return resp.text if resp.status_code == 200 else f"status {resp.status_code}"


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_reload_serves_edits_and_survives_a_syntax_error(server, tmp_path, interface):
    source, broken, flags, named = RELOAD_APPS[interface]
    started_line = re.compile(rf"Application interface: {re.escape(named)}$", re.M)
    appdir = tmp_path / "project"
    appdir.mkdir()
    module = appdir / "reload_target.py"
    module.write_text(source.format(text="version one"))
    srv = server.start("reload_target:app", *flags, "--reload", "--app-dir", appdir,
                       "--reload-dir", appdir, "--reload-delay", "0.1",
                       env={"PYTHONDONTWRITEBYTECODE": "1"})
    first = wait_workers(srv, 1)
    assert _get_text(srv) == "version one"
    assert "Will watch for changes in these directories" in srv.logs()
    assert started_line.search(srv.logs()), srv.logs()

    module.write_text(source.format(text="version two!"))
    wait_for(lambda: _get_text(srv) == "version two!", 8, "the edited app served", srv.logs)
    second = wait_workers(srv, 1, not_in=first)

    module.write_text(broken)
    srv.wait_for_log("SyntaxError", timeout=8)
    srv.wait_for_log("failed to start", timeout=5)
    time.sleep(0.3)
    assert srv.alive()
    assert children(srv.proc.pid) == second, "the old worker should keep serving"
    assert _get_text(srv) == "version two!"

    module.write_text(source.format(text="version three, fixed"))
    wait_for(lambda: _get_text(srv) == "version three, fixed", 8, "the fixed app served",
             srv.logs)
    wait_workers(srv, 1, not_in=first | second)
    logs = srv.logs()
    # Every worker the reloader started served the same interface.
    assert len(started_line.findall(logs)) >= 3, logs
    other = "wsgi" if interface == "asgi" else "asgi"
    assert f"Application interface: {other}" not in logs
    assert srv.stop(signal.SIGTERM) == 0


def test_reload_with_several_workers_is_refused(server):
    done = server.run(APP, "--reload", "--workers", "2", "--port", "0", timeout=15)
    assert done.returncode == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1, done.output
    assert lines[0].startswith("Error:")
    assert "--reload" in lines[0] and "--workers" in lines[0]


# --- shutdown, pid file, UNIX socket ---------------------------------------------------------


def test_sigterm_drains_in_flight_requests_of_every_worker(server):
    srv = server.start(APP, "--workers", "2", "--timeout-graceful-shutdown", "5")
    workers = wait_workers(srv, 2)
    results: list[object] = []

    def slow() -> None:
        try:
            with http_client(timeout=15) as client:
                resp = client.get(srv.url + "/sleep?s=1", headers={"connection": "close"})
                results.append((resp.status_code, resp.text))
        except httpx.HTTPError as exc:
            results.append(exc)

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(6)]
    with Load(srv.url, keepalive=False, pause=0.01) as load:
        for t in threads:
            t.start()
        wait_for(lambda: srv.logs().count("SLEEP-STARTED") == 6, 5, "6 slow requests started",
                 srv.logs)
        sleeping = set(map(int, re.findall(r"SLEEP-STARTED (\d+)", srv.logs())))
        # The load must have been answered before the signal for "no failure before it" to
        # say anything: the six slow requests can start before its first answer.
        wait_for(lambda: len(load.outcomes) >= 5, 5, "the load answered before SIGTERM",
                 srv.logs)
        signalled = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        code = srv.wait(timeout=10)
        took = time.monotonic() - signalled
    for t in threads:
        t.join(5)
    assert code == 0, srv.logs()
    assert took < 5 + 2, f"exit took {took:.1f}s"
    assert results == [(200, "slept")] * 6
    assert sleeping <= workers
    before = [o for o in load.outcomes if o.end < signalled]
    assert before and failures(before) == []
    logs = srv.logs()
    assert "Shutting down: waiting for the workers to drain" in logs
    assert "Stopping supervisor" in logs
    assert children(srv.proc.pid) == set()


@pytest.mark.parametrize("where", ["tcp", "uds"])
def test_sigterm_refuses_new_connections_at_once_while_workers_drain(server, tmp_path, where):
    """A proxy in front fails over at once instead of waiting out the drain: the shared
    socket stops listening when the supervisor gets SIGTERM."""
    import socket

    if where == "uds":
        path = str(tmp_path / "drain.sock")
        srv = server.start(APP, "--uds", path, "--workers", "2",
                           "--timeout-graceful-shutdown", "5")
        url, transport = "http://localhost", httpx.HTTPTransport(uds=path)

        def connect() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(2)
            sock.connect(path)
            return sock
    else:
        srv = server.start(APP, "--workers", "2", "--timeout-graceful-shutdown", "5")
        url, transport = srv.url, httpx.HTTPTransport()

        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", srv.port), timeout=2)
    wait_workers(srv, 2)
    result: list[object] = []

    def slow() -> None:
        with http_client(transport=transport, timeout=15) as client:
            result.append(client.get(url + "/sleep?s=2").text)

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    wait_for(lambda: "SLEEP-STARTED" in srv.logs(), 5, "the slow request started", srv.logs)
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log("Shutting down: waiting for the workers to drain")
    started = time.monotonic()
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        connect().close()
    assert time.monotonic() - started < 1.0
    thread.join(10)
    assert result == ["slept"]
    assert srv.wait(10) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_pid_file_holds_the_server_pid_while_it_runs(server, tmp_path, workers):
    pid_file = tmp_path / "ferricorn.pid"
    srv = server.start(APP, "--workers", str(workers), "--pid-file", pid_file)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 5,
             "the pid file written", srv.logs)
    assert pid_file.read_text().strip() == str(srv.proc.pid)
    with http_client() as client:
        assert client.get(srv.url + "/pid").status_code == 200
    assert pid_file.read_text().strip() == str(srv.proc.pid)
    assert srv.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()


def test_unix_socket_with_two_workers(server, tmp_path):
    path = str(tmp_path / "ferricorn.sock")
    srv = server.start(APP, "--uds", path, "--workers", "2")
    workers = wait_workers(srv, 2)
    assert Path(path).exists()
    with http_client(transport=httpx.HTTPTransport(uds=path)) as client:
        first = client.get("http://localhost/pid")
    assert first.status_code == 200 and int(first.text) in workers
    load = Load("http://localhost", uds=path, keepalive=False, pause=0,
                max_requests=200).start()
    outcomes = load.join()
    assert failures(outcomes) == []
    assert len(outcomes) == 200
    assert pids_of(outcomes) == workers
    assert srv.stop(signal.SIGTERM) == 0


def test_inherited_fd_with_two_workers(server):
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        fd = sock.fileno()
        srv = server.start(APP, "--fd", str(fd), "--workers", "2", pass_fds=(fd,))
    finally:
        sock.close()  # the server holds its own copy
    workers = wait_workers(srv, 2)
    outcomes = Load(srv.url, keepalive=False, pause=0, max_requests=100).start().join()
    assert failures(outcomes) == []
    assert pids_of(outcomes) == workers
    assert srv.stop(signal.SIGTERM) == 0
