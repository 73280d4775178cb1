"""Shared fixtures for the end-to-end tests: a real ferricorn process per test.

`server.start("apps.basic:app", "--flag", ...)` launches `python -m ferricorn` as a
subprocess (cwd = repository root, test apps importable as `apps.<name>` from tests/),
waits until it listens, and returns a `RunningServer` with `.port`, `.url`, `.proc`,
`.logs()` (stdout and stderr, interleaved) and `.stop(sig)` -> exit code. Every process a
test started is killed at teardown if it is still alive.

`server.run(...)` runs the command to completion (for processes expected to exit by
themselves) and returns a `Finished` with `.returncode` and `.output`.

Raw-socket helpers (`raw_connection`, `read_response`, `recv_until_closed`) live here too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pki import pki  # noqa: F401  (the certificates fixture, for every test file)

REPO = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO / "tests"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() \
    else sys.executable

#: How long a server may take to start listening (generous: the machine may be busy).
START_TIMEOUT = 20.0
#: How long a stopped server may take to exit.
STOP_TIMEOUT = 15.0

_RUNNING_RE = re.compile(r"Ferricorn running on (\S+)")
_ENGINE_MISSING = ("ferricorn._ferricorn", "_ferricorn.cpython", "_ferricorn.abi3")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _engine_unavailable(output: str) -> bool:
    """The extension module failed to import (a broken or missing build)."""
    return ("ImportError" in output or "ModuleNotFoundError" in output) and any(
        marker in output for marker in _ENGINE_MISSING
    )


def _fail_if_engine_unavailable(output: str) -> None:
    """A server that could not import the extension fails the test at once with the import
    error, whatever the test expected from the process (no retry: a broken build is not a
    transient condition to wait out)."""
    if _engine_unavailable(output):
        raise AssertionError(
            f"the ferricorn extension (ferricorn._ferricorn) failed to import; output:\n{output}"
        )


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRICORN_")}
    env.pop("FORWARDED_ALLOW_IPS", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS_DIR), str(REPO / "python"), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


class ServerStartError(AssertionError):
    pass


class RunningServer:
    def __init__(self, proc: subprocess.Popen, log_path: Path, port: int | None,
                 uds: str | None) -> None:
        self.proc = proc
        self.log_path = log_path
        self.port = port
        self.uds = uds
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            return "http://localhost"
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, needle: str | re.Pattern, timeout: float = 10.0) -> str:
        """Wait until the captured output contains `needle` (str or regex); returns the logs."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.logs()
            found = needle.search(text) if isinstance(needle, re.Pattern) else needle in text
            if found:
                return text
            if time.monotonic() >= deadline:
                raise AssertionError(f"{needle!r} not logged within {timeout}s; logs:\n{text}")
            time.sleep(0.02)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"server did not exit within {timeout}s; logs:\n{self.logs()}"
            ) from None
        return self.returncode

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait for the exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def send_signal(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Finished:
    returncode: int
    output: str


class ServerFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[RunningServer] = []
        self._count = 0

    def _log_file(self) -> Path:
        self._count += 1
        return self.tmp_path / f"server-{self._count}.log"

    def _command(self, app: str | None, flags: tuple[str, ...]) -> list[str]:
        cmd = [PYTHON, "-m", "ferricorn"]
        if app is not None:
            cmd.append(app)
        return cmd + [str(f) for f in flags]

    def start(self, app: str, *flags: str, env: dict[str, str] | None = None,
              ready: bool | str = True, pass_fds: tuple[int, ...] = (),
              timeout: float = START_TIMEOUT) -> RunningServer:
        """Start a server. Unless the flags or env choose where to listen, a free TCP port
        is picked. With ready=True (default), returns once the "running on" line is logged;
        with ready="connect" (for quiet log levels), once a TCP connection succeeds; with
        ready=False, at once."""
        flags = tuple(str(f) for f in flags)
        env = dict(env or {})
        binds = {"--port", "--uds", "--fd"}
        port: int | None = None
        uds: str | None = None
        if "--uds" in flags:
            uds = flags[flags.index("--uds") + 1]
        if not (binds & set(flags)) and "FERRICORN_PORT" not in env \
                and "FERRICORN_UDS" not in env and "FERRICORN_FD" not in env:
            port = free_port()
            flags = flags + ("--port", str(port))
        log_path = self._log_file()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                self._command(app, flags), cwd=REPO, env=base_env(env),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                pass_fds=pass_fds,
            )
        srv = RunningServer(proc, log_path, port, uds)
        self.started.append(srv)
        if not ready:
            return srv
        try:
            if ready == "connect":
                self._wait_connect(srv, timeout)
            else:
                self._wait_ready(srv, timeout)
        except ServerStartError:
            if proc.poll() is not None:
                _fail_if_engine_unavailable(srv.logs())
            raise
        return srv

    def _wait_ready(self, srv: RunningServer, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            text = srv.logs()
            match = _RUNNING_RE.search(text)
            if match:
                where = match.group(1)
                port_match = re.match(r"http://[^/]*:(\d+)$", where)
                if port_match:
                    srv.port = int(port_match.group(1))
                return
            if srv.proc.poll() is not None:
                raise ServerStartError(
                    f"server exited with {srv.proc.returncode} before listening; logs:\n{text}"
                )
            if time.monotonic() >= deadline:
                raise ServerStartError(f"server not listening after {timeout}s; logs:\n{text}")
            time.sleep(0.02)

    def _wait_connect(self, srv: RunningServer, timeout: float) -> None:
        assert srv.port, "ready='connect' needs a TCP port chosen in advance"
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
                return
            except OSError:
                pass
            if srv.proc.poll() is not None:
                raise ServerStartError(
                    f"server exited with {srv.proc.returncode} before listening; "
                    f"logs:\n{srv.logs()}"
                )
            if time.monotonic() >= deadline:
                raise ServerStartError(f"server not listening after {timeout}s; "
                                       f"logs:\n{srv.logs()}")
            time.sleep(0.02)

    def run(self, app: str | None, *flags: str, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> Finished:
        """Run the server command until it exits by itself; returns code and output."""
        srv = self.start(app, *flags, env=env, ready=False) if app is not None else None
        if srv is None:
            log_path = self._log_file()
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    self._command(None, tuple(flags)), cwd=REPO, env=base_env(env),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            srv = RunningServer(proc, log_path, None, None)
            self.started.append(srv)
        code = srv.wait(timeout)
        output = srv.logs()
        if code != 0:
            _fail_if_engine_unavailable(output)
        return Finished(code, output)

    def cleanup(self) -> None:
        """Kills every server still running, and the workers of any supervisor: a
        supervisor killed with SIGKILL (here, or by a test) leaves its workers running,
        reparented and still serving the inherited socket."""
        for srv in self.started:
            if srv.proc.poll() is None:
                children(srv.proc.pid)  # remembered in _SEEN_WORKERS
                srv.proc.kill()
                try:
                    srv.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        for pid in list(_SEEN_WORKERS):
            _SEEN_WORKERS.discard(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read()
            except OSError:
                continue
            if b"ferricorn" in cmdline and b"--fd" in cmdline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


#: Every worker process `children` has seen, for `ServerFactory.cleanup` to kill if it
#: outlived its supervisor.
_SEEN_WORKERS: set[int] = set()


def children(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid`: a supervisor's workers."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    _SEEN_WORKERS.update(found)
    return found


@pytest.fixture
def server(tmp_path):
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """A factory whose servers live for the whole test module (for read-only tests)."""
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    try:
        yield factory
    finally:
        factory.cleanup()


def http_client(**kwargs) -> httpx.Client:
    """An httpx client that ignores proxy settings from the environment."""
    kwargs.setdefault("timeout", 10.0)
    return httpx.Client(trust_env=False, **kwargs)


def app_events(srv) -> list[list[str]]:
    """What a test app recorded after its clients left ([tag, what] pairs at GET /events, as
    tests/apps/ws_app.py keeps them)."""
    with http_client() as c:
        return c.get(f"{srv.url}/events").json()


def wait_app_event(srv, tag: str, timeout: float = 5.0) -> str:
    """The `what` of the app's first event tagged `tag`, waiting up to `timeout` for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, what in app_events(srv):
            if t == tag:
                return what
        time.sleep(0.05)
    raise AssertionError(f"no {tag!r} event; events: {app_events(srv)}")


# --- raw sockets -----------------------------------------------------------------------------


def raw_connection(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


class RawReader:
    """Reads HTTP/1.x responses from a socket, keeping leftover bytes between responses."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.closed = False

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before {marker!r}; got {self.buf!r}")
        head, _, self.buf = self.buf.partition(marker)
        return head + marker

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def read_head(self) -> RawResponse:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return RawResponse(int(code), reason, version, headers, b"", head)

    def read_chunked(self) -> bytes:
        body = b""
        while True:
            size_line = self.read_until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                self.read_until(b"\r\n")  # end of the chunked body (no trailers expected)
                return body
            body += self.read_exact(size)
            assert self.read_exact(2) == b"\r\n"

    def read_response(self, method: str = "GET") -> RawResponse:
        """One complete response, framed per its headers (a 1xx interim response is
        returned as it is, without a body)."""
        resp = self.read_head()
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and "chunked" in te.lower():
            resp.body = self.read_chunked()
        elif cl is not None:
            resp.body = self.read_exact(int(cl))
        else:
            resp.body = self.read_to_close()
        return resp


def read_response(sock: socket.socket, method: str = "GET") -> RawResponse:
    return RawReader(sock).read_response(method)


def recv_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it closes (raises socket.timeout if it does not)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes the connection within `timeout` (data before EOF ignored)."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
