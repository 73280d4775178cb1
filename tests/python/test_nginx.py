"""ferricorn behind a real nginx (Debian's package), over TCP and over a Unix socket.

nginx runs as the current user in a temporary folder, from tests/apps/nginx.conf.template:
the part between its "site" markers is the configuration docs/deployment.md shows (a test
below holds the two equal), the rest only points pid, logs and temp files into the folder.
nginx listens on 127.0.0.1 (plain HTTP and TLS with the test CA's certificate); clients of
nginx connect from 127.0.0.2, so the real client's address differs from nginx's own
(127.0.0.1, the hop ferricorn trusts).

Covered: X-Forwarded-For / X-Forwarded-Proto honoured from a trusted hop (127.0.0.1 over
TCP, "unix:" over a Unix socket) and ignored from an untrusted one; upstream keep-alive
connections reused; WebSocket through the proxy; a 64 MiB upload streamed through (count
and sha256); SSE not buffered with `X-Accel-Buffering: no`; a SIGHUP rolling restart and a
SIGTERM drain under load.

nginx is needed: a session fixture installs Debian's package with apt-get when it is missing
and the tests run as root, and fails (does not skip) when it cannot (CI installs it; `make
test-deps` does too).

Served app: tests/apps/proxy_app.py.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import REPO, children, free_port
from websockets.sync.client import connect as ws_connect

APP = "apps.proxy_app:app"
TEMPLATE = REPO / "tests" / "apps" / "nginx.conf.template"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

#: Where the clients of nginx connect from (nginx itself reaches ferricorn from 127.0.0.1).
CLIENT_IP = "127.0.0.2"
#: The flags docs/deployment.md gives ferricorn behind nginx (keep-alive longer than nginx's
#: upstream keepalive_timeout of 60 s).
BEHIND_NGINX = ("--timeout-keep-alive", "75")
#: How long a worker may take to start serving (the machine may be busy).
WORKER_START = 15.0

TRANSPORTS = ["tcp", "uds"]


# --- nginx -----------------------------------------------------------------------------------


def _find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx executable; installed from Debian's packages when missing and root."""
    found = _find_nginx()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("nginx is not installed and cannot be installed here (needs root and "
                    "apt-get): run `apt-get install -y nginx` or `make test-deps` first")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"])
    for step in steps:
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"installing nginx failed: {' '.join(step)} exited with "
                        f"{done.returncode}:\n{done.stdout}\n{done.stderr}")
    found = _find_nginx()
    if not found:
        pytest.fail("nginx was installed with apt-get but no nginx executable was found")
    return found


def site_config(text: str) -> str:
    """The part of the template between its site markers."""
    start = text.index("    # --- site ---\n") + len("    # --- site ---\n")
    end = text.index("    # --- end site ---\n")
    return text[start:end]


class Nginx:
    """One nginx master (and its one worker) in `folder`, proxying to `upstream`."""

    def __init__(self, binary: str, folder: Path, upstream: str, pki: dict[str, Path],
                 keepalive: bool = True) -> None:
        self.folder = folder
        self.http_port = free_port()
        self.https_port = free_port()
        self.ca = pki["ca"]
        folder.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text()
        if not keepalive:
            text, n = re.subn(r"\n *keepalive \d+;[^\n]*", "", text)
            assert n == 1, "the template's keepalive line was not found"
        user = ""
        if os.geteuid() == 0:  # else nginx's workers would run as nobody
            user = (f"user {pwd.getpwuid(os.getuid()).pw_name} "
                    f"{grp.getgrgid(os.getgid()).gr_name};")
        for name, value in {
            "@USER@": user, "@DIR@": str(folder), "@UPSTREAM@": upstream,
            "@HTTP@": f"127.0.0.1:{self.http_port}", "@HTTPS@": f"127.0.0.1:{self.https_port}",
            "@CERT@": str(pki["chain"]), "@KEY@": str(pki["key"]),
        }.items():
            text = text.replace(name, value)
        left = re.findall(r"@[A-Z]+@", "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("#")))
        assert not left, f"placeholders not filled in: {left}"
        self.conf = folder / "nginx.conf"
        self.conf.write_text(text)
        self.error_log = folder / "error.log"
        self.output = folder / "nginx.out"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-p", str(folder), "-c", str(self.conf), "-e", str(self.error_log)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def logs(self) -> str:
        parts = []
        for path in (self.output, self.error_log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx not listening after {timeout}s:\n{self.logs()}")
            time.sleep(0.02)

    def client(self, tls: bool = False, **kwargs) -> httpx.Client:
        """An httpx client of nginx, connecting from CLIENT_IP."""
        verify: ssl.SSLContext | bool = False
        if tls:
            verify = ssl.create_default_context(cafile=str(self.ca))
        transport = httpx.HTTPTransport(local_address=CLIENT_IP, verify=verify)
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(transport=transport, trust_env=False, **kwargs)

    def stop(self) -> None:
        """SIGQUIT (graceful), then SIGKILL for the master and whatever it left behind."""
        if self.proc.poll() is None:
            workers = children(self.proc.pid)
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                workers |= children(self.proc.pid)
                self.proc.kill()
                self.proc.wait(5)
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def nginx(nginx_binary, tmp_path, pki):
    """`nginx(upstream, keepalive=True)` starts an nginx proxying to `upstream`
    ("127.0.0.1:PORT" or "unix:/path"); every nginx started is stopped at teardown."""
    started: list[Nginx] = []

    def start(upstream: str, keepalive: bool = True) -> Nginx:
        proxy = Nginx(nginx_binary, tmp_path / f"nginx-{len(started) + 1}", upstream, pki,
                      keepalive=keepalive)
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


# --- ferricorn -------------------------------------------------------------------------------


@pytest.fixture
def backend(server, tmp_path):
    """`backend(transport, *flags)` starts ferricorn (tests/apps/proxy_app.py) on a TCP port
    or a Unix socket and returns (server, nginx upstream address). Worker processes a killed
    supervisor leaves behind are killed at teardown."""
    supervisors = []

    def start(transport: str, *flags: str):
        if transport == "uds":
            path = tmp_path / "ferricorn.sock"
            assert len(str(path)) < 100, f"socket path too long: {path}"
            srv = server.start(APP, "--uds", str(path), *BEHIND_NGINX, *flags)
            supervisors.append(srv)
            return srv, f"unix:{path}"
        srv = server.start(APP, *BEHIND_NGINX, *flags)
        supervisors.append(srv)
        return srv, f"127.0.0.1:{srv.port}"

    try:
        yield start
    finally:
        for srv in supervisors:
            if srv.alive():
                leftovers = children(srv.proc.pid)
                srv.proc.kill()
                srv.proc.wait(10)
                for pid in leftovers:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def direct_client(srv, **kwargs) -> httpx.Client:
    """A client of ferricorn itself (no nginx), from CLIENT_IP over TCP."""
    transport = httpx.HTTPTransport(local_address=CLIENT_IP)
    return httpx.Client(transport=transport, trust_env=False, timeout=10.0, **kwargs)


def wait_for(predicate, timeout: float, what: str, logs):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s; logs:\n{logs()}")
        time.sleep(0.02)


def metric(port: int, name: str) -> float:
    """The value of an unlabelled metric at --metrics-port `port`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


# --- the configuration the document shows ----------------------------------------------------


def test_deployment_doc_shows_the_tested_config():
    site = site_config(TEMPLATE.read_text())
    for name, value in {"@UPSTREAM@": "127.0.0.1:8000", "@HTTP@": "80", "@HTTPS@": "443",
                        "@CERT@": "/etc/ssl/example.com/fullchain.pem",
                        "@KEY@": "/etc/ssl/example.com/privkey.pem"}.items():
        site = site.replace(name, value)
    shown = "\n".join(line[4:] if line.startswith("    ") else line
                      for line in site.splitlines())
    doc = DEPLOYMENT_DOC.read_text()
    assert shown in doc, (f"docs/deployment.md must show the tested nginx configuration "
                          f"(tests/apps/nginx.conf.template, site part) verbatim:\n{shown}")


# --- proxy headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forwarded_headers_from_trusted_nginx_are_honoured(backend, nginx, transport):
    trust = "127.0.0.1" if transport == "tcp" else "unix:"
    srv, upstream = backend(transport, "--forwarded-allow-ips", trust)
    proxy = nginx(upstream)
    with proxy.client(tls=True) as tls, proxy.client() as plain:
        over_tls = tls.get(proxy.https_url + "/whoami").json()
        over_http = plain.get(proxy.url + "/whoami").json()
        # A client's own X-Forwarded-For is kept by nginx ($proxy_add_x_forwarded_for
        # appends the address it sees), and ferricorn takes the nearest untrusted entry:
        # the spoofed one is not believed.
        spoofed = tls.get(proxy.https_url + "/whoami",
                          headers={"x-forwarded-for": "203.0.113.7",
                                   "x-forwarded-proto": "http"}).json()
    assert over_tls["client"] == [CLIENT_IP, 0]
    assert over_tls["scheme"] == "https"
    assert over_tls["headers"]["x-forwarded-for"] == [CLIENT_IP]
    assert over_tls["headers"]["x-forwarded-proto"] == ["https"]
    assert over_tls["http_version"] == "1.1"
    assert over_http["client"] == [CLIENT_IP, 0]
    assert over_http["scheme"] == "http"
    assert spoofed["headers"]["x-forwarded-for"] == [f"203.0.113.7, {CLIENT_IP}"]
    assert spoofed["client"] == [CLIENT_IP, 0]
    assert spoofed["scheme"] == "https"  # nginx replaces the client's X-Forwarded-Proto


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forwarded_headers_from_untrusted_nginx_are_ignored(backend, nginx, transport):
    # TCP: the hop (127.0.0.1) is not in the list. Unix socket: the default list
    # (127.0.0.1) does not name "unix:", so a Unix-socket peer is not trusted.
    flags = ("--forwarded-allow-ips", "192.0.2.1") if transport == "tcp" else ()
    srv, upstream = backend(transport, *flags)
    proxy = nginx(upstream)
    with proxy.client(tls=True) as tls:
        seen = tls.get(proxy.https_url + "/whoami").json()
    assert seen["headers"]["x-forwarded-for"] == [CLIENT_IP]
    assert seen["headers"]["x-forwarded-proto"] == ["https"]
    assert seen["scheme"] == "http"
    if transport == "tcp":
        host, port = seen["client"]
        assert host == "127.0.0.1"  # nginx's own address, as the socket says
        assert 0 < port < 65536
    else:
        assert seen["client"] is None  # a Unix-socket peer has no address


def test_forwarded_headers_from_a_direct_untrusted_client_are_ignored(backend):
    srv, _ = backend("tcp", "--forwarded-allow-ips", "127.0.0.1")
    with direct_client(srv) as client:
        resp = client.get(srv.url + "/whoami",
                          headers={"x-forwarded-for": "203.0.113.7",
                                   "x-forwarded-proto": "https"})
        port = client.get(srv.url + "/whoami").json()["client"][1]
    seen = resp.json()
    assert seen["headers"]["x-forwarded-for"] == ["203.0.113.7"]
    assert seen["client"] == [CLIENT_IP, port]
    assert port > 0
    assert seen["scheme"] == "http"


def test_trusting_every_peer_believes_the_first_forwarded_entry(backend, nginx):
    # --forwarded-allow-ips '*': the first X-Forwarded-For entry is taken as the client, so
    # behind a proxy that appends to the client's own header (as the tested configuration
    # does) a client can choose its address. docs/deployment.md says to keep an address
    # list, or to make the edge proxy replace the header, with '*'.
    srv, upstream = backend("tcp", "--forwarded-allow-ips", "*")
    proxy = nginx(upstream)
    with proxy.client() as client:
        honest = client.get(proxy.url + "/whoami").json()
        spoofed = client.get(proxy.url + "/whoami",
                             headers={"x-forwarded-for": "203.0.113.7"}).json()
    assert honest["client"] == [CLIENT_IP, 0]
    assert spoofed["client"] == ["203.0.113.7", 0]


# --- upstream keep-alive ---------------------------------------------------------------------


def test_upstream_connections_are_reused_over_tcp(backend, nginx):
    # --no-proxy-headers: the scope's client is then the socket peer, nginx's end of the
    # upstream connection, whose port tells the connections apart.
    mport = free_port()
    srv, upstream = backend("tcp", "--no-proxy-headers", "--metrics-port", str(mport))
    proxy = nginx(upstream)
    with proxy.client() as client:
        seen = [client.get(proxy.url + "/whoami").json() for _ in range(50)]
        assert metric(mport, "ferricorn_connections_open") == 1
    assert {s["client"][0] for s in seen} == {"127.0.0.1"}
    assert len({s["client"][1] for s in seen}) == 1, "50 requests used several connections"
    assert all(s["headers"].get("connection") is None for s in seen)

    # Concurrent clients: nginx opens a connection per concurrent request and keeps them.
    ports: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        with proxy.client() as client:
            for _ in range(25):
                port = client.get(proxy.url + "/whoami").json()["client"][1]
                with lock:
                    ports.append(port)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ports) == 100
    assert len(set(ports)) <= 4, f"100 requests from 4 clients used {len(set(ports))} " \
                                 "upstream connections"

    # The same without `keepalive` in the upstream block: one connection per request. (This
    # shows the port is a faithful connection identity.)
    plain = nginx(upstream, keepalive=False)
    with plain.client() as client:
        ports_without = {client.get(plain.url + "/whoami").json()["client"][1]
                         for _ in range(50)}
    assert len(ports_without) == 50


def test_upstream_connections_are_reused_over_a_unix_socket(backend, nginx):
    # No peer port on a Unix socket: the open-connection gauge counts them instead.
    mport = free_port()
    srv, upstream = backend("uds", "--metrics-port", str(mport))
    proxy = nginx(upstream)
    with proxy.client() as client:
        for _ in range(30):
            assert client.get(proxy.url + "/whoami").status_code == 200
            assert metric(mport, "ferricorn_connections_open") == 1
    # The access log is written in batches by a thread of its own: wait for the last line.
    wait_for(lambda: srv.logs().count('"GET /whoami HTTP/1.1" 200') == 30, 5,
             "30 access log lines", srv.logs)


# --- WebSocket -------------------------------------------------------------------------------


def _ws(url: str, ca: Path | None = None):
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10,
                                    source_address=(CLIENT_IP, 0))
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    return ws_connect(url, sock=sock, ssl=context, open_timeout=10, close_timeout=5,
                      max_size=2**24)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_websocket_through_nginx(backend, nginx, transport):
    trust = "127.0.0.1" if transport == "tcp" else "unix:"
    srv, upstream = backend(transport, "--forwarded-allow-ips", trust)
    proxy = nginx(upstream)
    ws_url = proxy.url.replace("http://", "ws://")
    messages = ["hello", "", "ünïcødé", b"\x00\x01\x02binary", b"x" * 300_000, "last"]
    with _ws(ws_url + "/echo") as ws:
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=10) == message
    wss_url = proxy.https_url.replace("https://", "wss://")
    with _ws(wss_url + "/whoami", ca=proxy.ca) as ws:
        seen = json.loads(ws.recv(timeout=10))
    assert seen["scheme"] == "wss"
    assert seen["client"] == [CLIENT_IP, 0]
    assert seen["headers"]["upgrade"] == ["websocket"]
    assert seen["headers"]["connection"] == ["upgrade"]
    srv.wait_for_log(re.compile(r"echo-disconnect 1000"))


# --- large upload ----------------------------------------------------------------------------


UPLOAD_CHUNK = 1 << 20
UPLOAD_CHUNKS = 64


def _upload_data() -> list[bytes]:
    seed = hashlib.sha256(b"ferricorn upload").digest()
    block = (seed * (UPLOAD_CHUNK // len(seed)))
    # Each chunk differs (so a lost or repeated chunk changes the checksum).
    return [i.to_bytes(4, "big") + block[4:] for i in range(UPLOAD_CHUNKS)]


@pytest.mark.parametrize("transport,framing", [("tcp", "content-length"), ("uds", "chunked")])
def test_large_upload_is_streamed_through(backend, nginx, transport, framing):
    srv, upstream = backend(transport)
    proxy = nginx(upstream)
    chunks = _upload_data()
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    total = UPLOAD_CHUNK * UPLOAD_CHUNKS
    marks: dict[str, float] = {}

    def body():
        yield chunks[0]
        # With request buffering off, nginx passes the first MiB on while the rest is still
        # to come: the app sees its first byte before the client sends the second chunk.
        time.sleep(1.0)
        marks["resumed"] = time.monotonic()
        yield from chunks[1:]

    headers = {"content-type": "application/octet-stream"}
    if framing == "content-length":
        headers["content-length"] = str(total)
    with proxy.client(timeout=60) as client:
        resp = client.post(proxy.url + "/upload", content=body(), headers=headers)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["bytes"] == total
    assert report["sha256"] == expected
    assert report["first_byte_at"] < marks["resumed"], "the upload was buffered by nginx"
    assert report["last_byte_at"] >= marks["resumed"]


# --- SSE -------------------------------------------------------------------------------------


def _first_event_delay(client: httpx.Client, url: str) -> tuple[float, bytes]:
    start = time.monotonic()
    with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        received = b""
        first_at = None
        for data in resp.iter_raw():
            received += data
            if first_at is None and b"\n\n" in received:
                first_at = time.monotonic() - start
    return first_at, received


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sse_is_not_buffered(backend, nginx, transport):
    srv, upstream = backend(transport)
    proxy = nginx(upstream)
    with proxy.client() as client:
        first, body = _first_event_delay(client, proxy.url + "/sse?gap=2")
    assert body == b"data: one\n\ndata: two\n\n"
    assert first < 1.5, f"the first event took {first:.2f}s through nginx"


# --- restarts under load ---------------------------------------------------------------------


@dataclass
class Outcome:
    start: float
    end: float
    rid: str
    status: int | None = None
    body: str = ""
    error: str | None = None


@dataclass
class Load:
    """Client threads of nginx sending `method` `path`?id=<unique> (a POST with a 100-byte
    body) in a loop until stopped."""

    proxy: Nginx
    path: str
    threads: int = 4
    pause: float = 0.005
    method: str = "GET"
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(self.threads)]

    def _run(self, n: int) -> None:
        with self.proxy.client(timeout=15) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                rid = f"t{n}-{i}"
                start = time.monotonic()
                try:
                    resp = client.request(self.method, f"{self.proxy.url}{self.path}?id={rid}",
                                          content=b"x" * 100 if self.method == "POST" else None)
                    outcome = Outcome(start, time.monotonic(), rid, resp.status_code, resp.text)
                except httpx.HTTPError as exc:
                    outcome = Outcome(start, time.monotonic(), rid, error=repr(exc))
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
            assert not t.is_alive(), "client thread did not finish"


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]


def serving_workers(srv, count: int, not_in: set[int] = frozenset()) -> set[int]:
    """Waits until the supervisor has exactly `count` worker processes, none in `not_in`,
    each of which logged that it serves; returns their pids."""

    def ready():
        assert srv.alive(), f"server exited with {srv.proc.poll()}; logs:\n{srv.logs()}"
        pids = children(srv.proc.pid)
        if len(pids) != count or pids & not_in:
            return None
        logs = srv.logs()
        for pid in pids:
            started = re.search(rf"Started worker (\d+) \[{pid}\]", logs)
            if not started or not re.search(
                    rf"^\[worker {started.group(1)}\] .*Ferricorn running on", logs, re.M):
                return None
        return pids

    return wait_for(ready, WORKER_START, f"{count} serving workers", srv.logs)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sighup_rolling_restart_behind_nginx_fails_no_request(backend, nginx, transport):
    srv, upstream = backend(transport, "--workers", "2")
    old = serving_workers(srv, 2)
    proxy = nginx(upstream)
    # GETs and POSTs (which nginx does not retry on another connection by itself).
    with Load(proxy, "/pid", threads=2) as load, \
            Load(proxy, "/pid", threads=2, method="POST") as posts:
        time.sleep(1.0)
        signalled = time.monotonic()
        srv.send_signal(signal.SIGHUP)
        new = serving_workers(srv, 2, not_in=old)
        restarted = time.monotonic()
        time.sleep(1.0)
    outcomes = load.outcomes + posts.outcomes
    assert failed(outcomes) == [], failed(outcomes)[:5]
    during = [o for o in outcomes if o.start >= signalled and o.end <= restarted]
    assert len(during) >= 20, f"only {len(during)} requests ran during the restart"
    posted = [o for o in posts.outcomes if o.start >= signalled and o.end <= restarted]
    assert len(posted) >= 5, f"only {len(posted)} POSTs ran during the restart"
    before = [o for o in outcomes if o.end < signalled]
    after = [o for o in outcomes if o.start > restarted]
    assert len(before) >= 20 and len(after) >= 20, (len(before), len(after))
    assert {int(o.body) for o in before} <= old
    assert {int(o.body) for o in after} <= new
    assert not new & old
    logs = srv.logs()
    assert "SIGHUP: replacing the workers one by one" in logs
    for pid in old:
        assert re.search(rf"Worker \d+ \[{pid}\] stopped \(exit code 0\)", logs), logs
    assert srv.stop(signal.SIGTERM) == 0


_REQ_RE = re.compile(r"^(?:\[worker \d+\] )?REQ (\S+) (\d+\.\d+)$", re.M)


@pytest.mark.parametrize("transport,workers", [("tcp", 1), ("uds", 1), ("tcp", 2)])
def test_sigterm_drain_behind_nginx_completes_requests_in_flight(backend, nginx, transport,
                                                                  workers):
    flags = ("--workers", "2") if workers > 1 else ()
    srv, upstream = backend(transport, "--timeout-graceful-shutdown", "10", *flags)
    if workers > 1:
        serving_workers(srv, workers)
    proxy = nginx(upstream)
    slow_results: list[object] = []

    def slow() -> None:
        try:
            with proxy.client(timeout=20) as client:
                resp = client.get(proxy.url + "/sleep?s=2")
                slow_results.append((resp.status_code, resp.text, time.monotonic()))
        except httpx.HTTPError as exc:
            slow_results.append(exc)

    slow_threads = [threading.Thread(target=slow, daemon=True) for _ in range(6)]
    with Load(proxy, "/req", threads=3) as load:
        for t in slow_threads:
            t.start()
        wait_for(lambda: srv.logs().count("SLEEP-STARTED") == 6, 10, "6 slow requests started",
                 srv.logs)
        time.sleep(0.3)
        signalled = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        code = srv.wait(timeout=15)
        exited = time.monotonic()
        time.sleep(0.3)  # requests now get nginx's 502: the only server is gone
    for t in slow_threads:
        t.join(10)
    assert code == 0, srv.logs()
    # The six requests that were inside the app when SIGTERM arrived all complete.
    assert [r[:2] if isinstance(r, tuple) else r for r in slow_results] == [(200, "slept")] * 6
    assert all(r[2] > signalled for r in slow_results)
    assert exited - signalled < 2 + 3, f"the drain took {exited - signalled:.1f}s"
    # Every fast request the app started (before or after the signal) was answered 200 to
    # the client of nginx: none was lost in the drain.
    started = {rid: float(at) for rid, at in _REQ_RE.findall(srv.logs())}
    by_id = {o.rid: o for o in load.outcomes}
    assert set(started) <= set(by_id)
    lost = [by_id[rid] for rid in started if by_id[rid].status != 200]
    assert lost == [], lost[:5]
    # ... under real load: many requests ran in the second before the signal.
    recent = [rid for rid, at in started.items() if signalled - 1.0 <= at < signalled]
    assert len(recent) >= 20, f"only {len(recent)} requests in the last second before SIGTERM"
    # What the app never saw was answered by nginx (502, the server gone), never earlier
    # than the signal.
    unseen = [o for o in load.outcomes if o.rid not in started]
    assert all(o.status == 502 and o.end > signalled for o in unseen), \
        [o for o in unseen if o.status != 502 or o.end <= signalled][:5]
    assert [o for o in load.outcomes if o.end < signalled and o.status != 200] == []
