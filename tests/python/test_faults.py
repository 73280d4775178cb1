"""Faults, end to end: a worker killed or stopped under load, the open-file limit reached,
an access log on a full disk, and an exception in lifespan shutdown.

- SIGKILL of one of two workers under keep-alive and new-connection load: the supervisor
  replaces it; only the connections the killed worker held fail (each at most once), the
  other worker's connections and every new connection opened after the kill get 200.
- SIGSTOP of one of two workers: the supervisor's heartbeat check (--timeout-worker-
  healthcheck) kills and replaces it within the timeout while the other worker goes on
  answering, with no failure on its connections or on new connections.
- `ulimit -n 256` and 1,000 clients at once: accept() fails with EMFILE, the engine backs
  off (the process stays far from a busy loop while saturated) and says so at most once a
  second with a count, then serves every client once descriptors are free, and a new request
  afterwards gets 200.
- The access log on a full disk (/dev/full), through a --log-config FileHandler and through
  the engine's own writer on stdout: every request still gets 200.
- An exception (or lifespan.shutdown.failed) in lifespan shutdown: logged with its
  traceback; the exit code must then be non-zero.

Served app: tests/apps/faults_app.py. Worker processes are found as the supervisor's
children in /proc (conftest.children); the server fixture kills what outlives a test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest
from conftest import (
    PYTHON,
    REPO,
    RawReader,
    RunningServer,
    base_env,
    children,
    free_port,
    http_client,
)
from test_workers import wait_for, wait_workers

APP = "apps.faults_app:app"

# --- load with a record of which worker each connection talks to ------------------------------


@dataclass
class Outcome:
    conn: int  # connection serial number (a reconnect gets a new one)
    start: float
    end: float
    pid: int | None  # the worker that answered
    attached: int | None  # the worker this connection had answered from before (None: new)
    error: str | None = None


@dataclass
class Clients:
    """`keepalive` threads, each holding a connection and sending GET /pid on it in a loop
    (reconnecting after a failure), and `fresh` threads sending GET /pid with
    `Connection: close` on a new connection each time. While `balancing` is set, a keep-alive
    thread whose connection landed on a worker that already holds its share reconnects, so
    that both workers hold connections when the fault comes."""

    port: int
    keepalive: int = 8
    fresh: int = 1
    pause: float = 0.005
    timeout: float = 15.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.balancing = threading.Event()
        self.balancing.set()
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self.attached: dict[int, int | None] = {}  # thread index -> worker pid now
        self._threads = [threading.Thread(target=self._keepalive, args=(i,), daemon=True)
                         for i in range(self.keepalive)]
        self._threads += [threading.Thread(target=self._fresh, daemon=True)
                          for _ in range(self.fresh)]

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _request(self, sock: socket.socket, reader: RawReader, close: bool) -> int:
        extra = b"Connection: close\r\n" if close else b""
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: faults\r\n" + extra + b"\r\n")
        response = reader.read_response()
        if response.status != 200:
            raise ConnectionError(f"status {response.status}")
        return int(response.body)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        sock.settimeout(self.timeout)
        return sock

    def _keepalive(self, index: int) -> None:
        sock = reader = None
        conn = 0
        attached = None
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                if sock is None:
                    conn, attached = next(self._serial), None
                    sock = self._connect()
                    reader = RawReader(sock)
                pid = self._request(sock, reader, close=False)
            except (OSError, ConnectionError, ValueError) as exc:
                self._record(Outcome(conn, start, time.monotonic(), None, attached, repr(exc)))
                if sock is not None:
                    sock.close()
                sock = reader = None
                with self._lock:
                    self.attached[index] = None
                time.sleep(self.pause)
                continue
            self._record(Outcome(conn, start, time.monotonic(), pid, attached))
            attached = pid
            with self._lock:
                self.attached[index] = pid
                crowded = self.balancing.is_set() and \
                    sum(1 for p in self.attached.values() if p == pid) > self.keepalive // 2
            if crowded:
                sock.close()
                sock = reader = None
                with self._lock:
                    self.attached[index] = None
            time.sleep(self.pause)
        if sock is not None:
            sock.close()

    def _fresh(self) -> None:
        while not self._stop.is_set():
            conn = next(self._serial)
            start = time.monotonic()
            try:
                with self._connect() as sock:
                    pid = self._request(sock, RawReader(sock), close=True)
                self._record(Outcome(conn, start, time.monotonic(), pid, None))
            except (OSError, ConnectionError, ValueError) as exc:
                self._record(Outcome(conn, start, time.monotonic(), None, None, repr(exc)))
            time.sleep(self.pause)

    def start(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def balanced(self, workers: set[int], timeout: float = 10.0) -> dict[int, int]:
        """Waits until every keep-alive thread holds a connection and each worker holds
        some; then stops balancing and returns the connections per worker."""

        def spread():
            with self._lock:
                now = list(self.attached.values())
            if len(now) < self.keepalive or None in now:
                return None
            counts = {w: now.count(w) for w in workers}
            return counts if all(counts.values()) else None

        counts = wait_for(spread, timeout, "keep-alive connections on every worker")
        self.balancing.clear()
        return counts

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
            assert not t.is_alive(), "client thread did not finish"
        return list(self.outcomes)


def _workers_flags(workers: int) -> tuple[str, ...]:
    """One process (no supervisor) for 1, a supervisor and its workers otherwise."""
    return ("--workers", str(workers)) if workers > 1 else ()


def connections_on(outcomes: list[Outcome], pid: int, before: float) -> set[int]:
    """Connections that had been answered by `pid` before `before`."""
    return {o.conn for o in outcomes if o.pid == pid and o.end < before}


# --- a worker killed or stopped under load ----------------------------------------------------


def test_sigkill_of_a_worker_fails_only_its_own_connections(server):
    srv = server.start(APP, "--workers", "2", "--no-access-log")
    workers = wait_workers(srv, 2)
    clients = Clients(srv.port).start()
    try:
        held = clients.balanced(workers)
        time.sleep(0.3)
        victim = min(workers)
        survivor = max(workers)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replacement = wait_workers(srv, 2, not_in={victim}) - {survivor}
        ready_at = time.monotonic()
        time.sleep(1.5)
    finally:
        outcomes = clients.stop()
    logs = srv.logs()
    assert re.search(rf"^WARNING: +Worker \d+ \[{victim}\] died \(signal 9 \(SIGKILL\)\); "
                     r"replacing it$", logs, re.M), logs
    assert ready_at - killed_at < 10, f"replaced after {ready_at - killed_at:.1f} s"

    victims_conns = connections_on(outcomes, victim, killed_at)
    failed = [o for o in outcomes if o.error is not None]
    # Each failure is on a connection the killed worker held (keep-alive, or a new connection
    # it had accepted when it died), and each such connection fails once.
    stray = [o for o in failed
             if o.conn not in victims_conns and not (o.attached is None and o.start < killed_at)]
    assert stray == [], f"failures elsewhere than on the killed worker's connections: {stray}"
    per_conn = {}
    for o in failed:
        per_conn[o.conn] = per_conn.get(o.conn, 0) + 1
    assert all(n == 1 for n in per_conn.values()), per_conn
    assert len(failed) <= held[victim] + clients.fresh, (held, failed)
    # The other worker's connections never failed and went on being answered.
    survivor_conns = connections_on(outcomes, survivor, killed_at)
    assert survivor_conns, "no connection on the surviving worker"
    assert not [o for o in failed if o.conn in survivor_conns]
    during = [o for o in outcomes if killed_at < o.start < ready_at]
    assert [o for o in during if o.pid == survivor], "the other worker stopped answering"
    # Everything that started after the kill on a new connection got its 200.
    after = [o for o in outcomes if o.start > killed_at and o.attached is None]
    assert after and all(o.error is None for o in after), [o for o in after if o.error][:5]
    assert victim not in {o.pid for o in outcomes if o.start > killed_at}
    late = [o for o in outcomes if o.start > ready_at]
    assert {o.pid for o in late} == replacement | {survivor}, (replacement, survivor)
    assert srv.stop(signal.SIGTERM) == 0


def test_stopped_worker_is_replaced_by_the_healthcheck(server):
    timeout = 2.0
    srv = server.start(APP, "--workers", "2", "--no-access-log",
                       "--timeout-worker-healthcheck", str(timeout))
    workers = wait_workers(srv, 2)
    clients = Clients(srv.port).start()
    try:
        held = clients.balanced(workers)
        time.sleep(0.3)
        victim = min(workers)
        survivor = max(workers)
        stopped_at = time.monotonic()
        os.kill(victim, signal.SIGSTOP)
        logs = srv.wait_for_log(re.compile(rf"Worker \d+ \[{victim}\] has not answered for "),
                                timeout=timeout + 5)
        noticed = time.monotonic() - stopped_at
        replacement = wait_workers(srv, 2, not_in={victim}) - {survivor}
        ready_at = time.monotonic()
        time.sleep(1.0)
    finally:
        outcomes = clients.stop()
    # The heartbeat comes every second: silence is seen within the timeout plus one beat.
    assert timeout - 0.5 <= noticed <= timeout + 1.5, f"noticed after {noticed:.2f} s"
    assert "killing and replacing it" in logs
    assert victim not in children(srv.proc.pid)
    assert not os.path.exists(f"/proc/{victim}"), "the stopped worker was not reaped"

    victims_conns = connections_on(outcomes, victim, stopped_at)
    failed = [o for o in outcomes if o.error is not None]
    stray = [o for o in failed
             if o.conn not in victims_conns and not (o.attached is None and o.start < stopped_at)]
    assert stray == [], f"failures elsewhere than on the stopped worker's connections: {stray}"
    assert len(failed) <= held[victim] + clients.fresh, (held, failed)
    # The stopped worker's connections hung until it was killed, then failed (not timed out).
    for o in failed:
        if o.start > stopped_at:
            assert o.end - stopped_at >= timeout - 0.5, o
            assert "timed out" not in (o.error or ""), o
    # Meanwhile the other worker answered its connections and every new one.
    stopped_window = [o for o in outcomes if stopped_at < o.start and o.end < stopped_at + noticed]
    answered = [o for o in stopped_window if o.pid == survivor]
    assert len(answered) >= 50, f"only {len(answered)} answers while the worker was stopped"
    new_conns = [o for o in outcomes if o.start > stopped_at and o.attached is None]
    assert new_conns and all(o.error is None for o in new_conns), \
        [o for o in new_conns if o.error][:5]
    late = [o for o in outcomes if o.start > ready_at]
    assert {o.pid for o in late} == replacement | {survivor}
    assert srv.stop(signal.SIGTERM) == 0


# --- the open-file limit ----------------------------------------------------------------------


def start_with_limits(server, app: str, *flags: str, nofile: int | None = None,
                      stdout_path: str | None = None) -> RunningServer:
    """Like `server.start`, with RLIMIT_NOFILE set in the server process and optionally its
    stdout sent elsewhere than the log (stderr stays in the log)."""
    port = free_port()
    log_path = server._log_file()
    cmd = [PYTHON, "-m", "ferricorn", app, *flags, "--port", str(port)]

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with open(log_path, "wb") as log:
        stdout = open(stdout_path, "wb") if stdout_path else log  # noqa: SIM115
        try:
            proc = subprocess.Popen(cmd, cwd=REPO, env=base_env(), stdout=stdout,
                                    stderr=subprocess.STDOUT if stdout is log else log,
                                    stdin=subprocess.DEVNULL, preexec_fn=limit)
        finally:
            if stdout is not log:
                stdout.close()
    srv = RunningServer(proc, log_path, port, None)
    server.started.append(srv)
    srv.wait_for_log("Ferricorn running on", timeout=20)
    return srv


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _client(port: int, path: str, results: list, timeout: float = 25.0) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        results.append(f"connect: {exc!r}")
        return
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: faults\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
        results.append(int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else f"got {data!r}")
    except (OSError, asyncio.TimeoutError) as exc:
        results.append(f"response: {exc!r}")
    finally:
        writer.close()


def test_open_file_limit_backs_off_and_recovers(server):
    limit = 256
    srv = start_with_limits(server, APP, "--no-access-log", "--log-level", "info",
                            nofile=limit)
    pid = srv.proc.pid
    with open(f"/proc/{pid}/limits", encoding="ascii") as fh:
        assert re.search(rf"Max open files\s+{limit}\s+{limit}", fh.read())
    idle_fds = open_fds(pid)
    holders, waiters, hold = 300, 700, 3.0
    window: dict[str, float] = {}

    async def main() -> list:
        results: list = []
        tasks = [asyncio.create_task(_client(srv.port, f"/sleep?s={hold}", results))
                 for _ in range(holders)]
        await asyncio.sleep(0.5)  # the holders are connected, and in the app
        tasks += [asyncio.create_task(_client(srv.port, "/", results)) for _ in range(waiters)]
        await asyncio.sleep(0.5)
        # Saturated: every descriptor is taken, 700+ connections wait in the backlog.
        window["fds"] = open_fds(pid)
        window["cpu0"], window["t0"] = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(1.5)
        window["cpu1"], window["t1"] = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*tasks)
        return results

    started = time.monotonic()
    results = asyncio.run(asyncio.wait_for(main(), 40))
    took = time.monotonic() - started
    logs = srv.logs()
    cpu_share = (window["cpu1"] - window["cpu0"]) / (window["t1"] - window["t0"])
    assert window["fds"] >= limit - 2, f"not saturated: {window['fds']} fds open"
    errors = re.findall(r"^ERROR: +accept\(\) failed.*Too many open files.*$", logs, re.M)
    assert errors, f"no log line about the open-file limit; logs:\n{logs[-3000:]}"
    assert "raise the open-file limit" in errors[0]
    # Reported at most once a second, with a count of the failed attempts, not per retry.
    assert len(errors) <= took + 1, f"{len(errors)} reports in {took:.1f} s"
    counts = [int(n) for n in re.findall(r"accept\(\) failed (\d+) time\(s\)", "\n".join(errors))]
    assert len(counts) == len(errors) and max(counts) >= 2, errors
    # Backing off, not spinning: far from a core while accept() keeps failing.
    assert cpu_share < 0.25, f"{cpu_share:.0%} of a core while saturated"
    # Every client was served once descriptors were free.
    assert len(results) == holders + waiters
    assert results == [200] * len(results), {str(r): results.count(r) for r in set(results)}
    # A new request afterwards is served, and the descriptors are back where they were.
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert (response.status_code, response.text) == (200, "ok")
    wait_for(lambda: open_fds(pid) == idle_fds, 5, f"{idle_fds} fds open again")
    assert srv.alive()
    assert took < 30
    assert srv.stop(signal.SIGTERM) == 0


# --- the access log on a full disk ------------------------------------------------------------


def _log_config_on_dev_full(tmp_path) -> str:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"()": "ferricorn.logging.DefaultFormatter",
                        "fmt": "%(levelprefix)s %(message)s"},
            "access": {"()": "ferricorn.logging.AccessFormatter",
                       "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" '
                              "%(status_code)s"},
        },
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default",
                        "stream": "ext://sys.stderr"},
            "access": {"class": "logging.FileHandler", "formatter": "access",
                       "filename": "/dev/full"},
        },
        "loggers": {
            "ferricorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "ferricorn.error": {"level": "INFO"},
            "ferricorn.access": {"handlers": ["access"], "level": "INFO",
                                 "propagate": False},
        },
    }
    path = tmp_path / "log-config.json"
    path.write_text(json.dumps(config))
    return str(path)


def _serve_requests(srv, count: int = 200) -> list[int]:
    statuses = []
    with http_client() as keepalive:
        for i in range(count):
            if i % 2:
                statuses.append(keepalive.get(srv.url + "/").status_code)
            else:
                with http_client() as fresh:
                    statuses.append(fresh.get(srv.url + "/",
                                              headers={"connection": "close"}).status_code)
    return statuses


@pytest.mark.parametrize("workers", [1, 2])
def test_access_log_file_handler_on_a_full_disk(server, tmp_path, workers):
    config = _log_config_on_dev_full(tmp_path)
    srv = server.start(APP, "--log-config", config, *_workers_flags(workers))
    if workers > 1:
        wait_workers(srv, workers)
    assert _serve_requests(srv) == [200] * 200
    # The handler really failed: logging's own report of the error (ENOSPC) is in the output.
    logs = srv.wait_for_log("No space left on device")
    assert "--- Logging error ---" in logs
    time.sleep(0.5)
    assert srv.alive()
    assert _serve_requests(srv, 20) == [200] * 20
    assert srv.stop(signal.SIGTERM) == 0


def test_access_log_on_stdout_on_a_full_disk(server):
    """The default access handler on a stdout that is /dev/full: the engine writes the lines
    itself, loses them, says so once, and serves on."""
    srv = start_with_limits(server, APP, stdout_path="/dev/full")
    assert _serve_requests(srv) == [200] * 200
    logs = srv.wait_for_log("The access log could not be written")
    assert re.search(r"The access log could not be written \(No space left on device.*\): "
                     r"\d+ line\(s\) lost; requests are served as before", logs), logs
    assert logs.count("The access log could not be written") == 1, "reported more than once"
    assert _serve_requests(srv, 20) == [200] * 20
    assert srv.alive()
    assert srv.stop(signal.SIGTERM) == 0


# --- lifespan shutdown ------------------------------------------------------------------------


SHUTDOWN_FAILURES = {
    "shutdown_raising_app": ("RuntimeError: exploded during shutdown", True),
    "shutdown_failed_app": ("could not flush the queue", False),
}


@pytest.mark.parametrize("app", sorted(SHUTDOWN_FAILURES))
@pytest.mark.parametrize("workers", [1, 2])
def test_lifespan_shutdown_failure_is_logged(server, app, workers):
    srv = server.start(f"apps.faults_app:{app}", "--lifespan", "on", *_workers_flags(workers))
    if workers > 1:
        wait_workers(srv, workers)
    with http_client() as client:
        assert client.get(srv.url + "/").status_code == 200
    srv.stop(signal.SIGTERM)
    logs = srv.logs()
    message, traceback = SHUTDOWN_FAILURES[app]
    assert logs.count(message) == workers, logs
    assert logs.count("Application shutdown failed. Exiting.") == workers, logs
    if traceback:
        assert logs.count("Exception in 'lifespan' protocol") == workers, logs
        assert logs.count("Traceback (most recent call last)") == workers, logs
    assert "Application shutdown complete." not in logs


@pytest.mark.parametrize("app", sorted(SHUTDOWN_FAILURES))
@pytest.mark.parametrize("workers", [1, 2])
def test_lifespan_shutdown_failure_exits_non_zero(server, app, workers):
    srv = server.start(f"apps.faults_app:{app}", "--lifespan", "on", *_workers_flags(workers))
    if workers > 1:
        wait_workers(srv, workers)
    code = srv.stop(signal.SIGTERM)
    assert code == 4, srv.logs()  # exits.SHUTDOWN_FAILED
