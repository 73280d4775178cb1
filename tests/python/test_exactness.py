"""HTTP/1.1 exactness, written from the ASGI spec (specs/www.rst) and RFC 9112, over raw
sockets: every form of response message the spec allows is served, what it forbids gets a
500 and a log line naming the field, no app can make the server write past (or stop short
of) a declared Content-Length on a connection that stays open, and the Host rules of RFC
9112 3.2 hold. After every bad case the server must still answer a good request.

The server runs with `--no-date-header --no-server-header` so that whole responses can be
compared byte for byte.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
import websockets
from conftest import (
    PYTHON,
    REPO,
    RawReader,
    base_env,
    free_port,
    is_closed,
    raw_connection,
    recv_until_closed,
)

ERROR_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 21\r\n\r\n"
    b"Internal Server Error"
)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 12\r\n"
    b"connection: close\r\n\r\n"
    b"Bad Request\n"
)


@pytest.fixture(scope="module")
def forms(module_server):
    return module_server.start("apps.forms_app:app", "--no-date-header", "--no-server-header")


def exchange(port: int, request: bytes) -> bytes:
    """Sends one request on a fresh connection and returns every byte until the server
    closes it (the request asks for `Connection: close` unless it says otherwise)."""
    with raw_connection(port) as sock:
        sock.sendall(request)
        return recv_until_closed(sock)


def get(port: int, path: str) -> bytes:
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())


def ok(body: bytes, *headers: bytes) -> bytes:
    """The exact bytes of a 200 answer to a `Connection: close` request."""
    head = b"".join(h + b"\r\n" for h in headers)
    return (b"HTTP/1.1 200 OK\r\n" + head + b"connection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body) + body)


def assert_still_serving(port: int) -> None:
    assert get(port, "/headers/lists") == ok(
        b"form /headers/lists", b"content-type: text/plain", b"x-form: lists"
    )


# --- every form the spec allows --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/headers/lists", [b"content-type: text/plain", b"x-form: lists"]),
        ("/headers/tuples", [b"content-type: text/plain", b"x-form: tuples"]),
        ("/headers/generator", [b"content-type: text/plain", b"x-form: generator"]),
        ("/headers/mixed", [b"content-type: text/plain", b"x-a: 1", b"x-b: 2"]),
        ("/headers/bytearray", [b"content-type: text/plain", b"x-form: bytearray"]),
        ("/headers/str", [b"content-type: text/plain", b"x-form: str"]),
    ],
)
def test_response_headers_in_every_iterable_form(forms, path, headers):
    assert get(forms.port, path) == ok(f"form {path}".encode(), *headers)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/body/bytearray", b"from a bytearray"), ("/body/memoryview", b"from a memoryview")],
)
def test_bytes_like_bodies_are_sent_as_uvicorn_sends_them(forms, path, body):
    assert get(forms.port, path) == ok(body, b"content-type: text/plain")


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/headers/triple", "headers"),
        ("/headers/non-ascii", "header value"),
        ("/body/str", "body"),
        ("/body/int", "body"),
    ],
)
def test_forms_the_spec_forbids_get_500_and_a_log_line_naming_the_field(forms, path, names):
    assert get(forms.port, path) == ERROR_500
    logs = forms.wait_for_log(f"'http.response.start' {names}" if "header" in names
                              else f"'http.response.body' {names}")
    assert "Exception in ASGI application" in logs
    assert_still_serving(forms.port)


def test_websocket_messages_in_every_form(forms):
    async def talk():
        url = f"ws://127.0.0.1:{forms.port}/ws/forms"
        async with websockets.connect(url) as ws:
            headers = ws.response.headers
            assert (headers["x-form"], headers["x-b"]) == ("lists", "2")
            received = [await ws.recv() for _ in range(3)]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return received, closed.value.rcvd.code, closed.value.rcvd.reason

    received, code, reason = asyncio.run(talk())
    assert received == [b"from a bytearray", b"from a memoryview", "text"]
    assert (code, reason) == (4000, "")


def test_websocket_denial_with_list_headers_and_bytearray_body(forms):
    request = (b"GET /ws/deny HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    with raw_connection(forms.port) as sock:
        sock.sendall(request)
        resp = RawReader(sock).read_response()
    assert (resp.status, resp.body) == (403, b"denied")
    assert (resp.header("content-type"), resp.header("x-form")) == ("text/plain", "lists")


def test_lifespan_startup_failed_without_message(server):
    done = server.run("apps.forms_app:silent_failure_app")
    assert done.returncode == 3, done.output
    assert "Application startup failed. Exiting." in done.output


# --- status codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [600, 999, 1000, 99, 0, -1, 70000, 100, 103])
def test_status_out_of_range_gets_500(forms, code):
    assert get(forms.port, f"/status/{code}") == ERROR_500
    forms.wait_for_log(f"status {code} is not")
    assert_still_serving(forms.port)


@pytest.mark.parametrize("code", [200, 299, 404, 599])
def test_status_in_range_goes_out_as_sent(forms, code):
    data = get(forms.port, f"/status/{code}")
    assert data.startswith(b"HTTP/1.1 %d " % code), data


# --- framing no app can break (RFC 9112 6.3) -------------------------------------------------


def pipelined(port: int, path: str) -> tuple[RawReader, bytes]:
    """Sends the request for `path` and a second, good request on one connection; returns the
    reader and everything received until the server closed."""
    sock = raw_connection(port)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /headers/lists HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    )
    return RawReader(sock), recv_until_closed(sock)


def last_error(port: int) -> bytes:
    data = get(port, "/last-error")
    return data.partition(b"\r\n\r\n")[2]


def test_response_longer_than_content_length_full(forms):
    _, data = pipelined(forms.port, "/length/over-full")
    # Exactly the declared five bytes, the connection closed after them: the extra bytes and
    # the pipelined request's answer never reach the client.
    assert data == (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n12345")
    logs = forms.wait_for_log("Response content longer than Content-Length")
    assert "GET /length/over-full" in logs
    assert last_error(forms.port).startswith(b"RuntimeError: Response content longer")
    assert_still_serving(forms.port)


@pytest.mark.parametrize(
    ("path", "expected", "problem"),
    [
        # The declared five bytes complete the response; the connection ends after them.
        ("/length/over-stream", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n12345", "longer"),
        # The client sees an incomplete message (RFC 9112 8) and nothing after it.
        ("/length/short-full", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",
         "shorter"),
        ("/length/short-stream", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",
         "shorter"),
    ],
    ids=["longer-stream", "shorter-full", "shorter-stream"],
)
def test_response_not_matching_content_length(forms, path, expected, problem):
    """No bytes past the declared length, and never a connection that stays open after a
    response that ended short of it: the pipelined request behind it is not answered."""
    _, data = pipelined(forms.port, path)
    assert data == expected
    # This request's own line: the access line (also "GET <path> ") can come first.
    forms.wait_for_log(f"Response content {problem} than Content-Length: GET {path} declared",
                       timeout=5)
    assert_still_serving(forms.port)


@pytest.mark.parametrize(
    ("path", "problem"),
    [("/length/both", "both content-length and transfer-encoding"),
     ("/length/bad", "content-length must be a number of bytes")],
)
def test_response_heads_with_broken_framing_get_500(forms, path, problem):
    """RFC 9112 6.2: a response must not carry both framing headers; a Content-Length is
    digits only (RFC 9110 8.6)."""
    assert get(forms.port, path) == ERROR_500
    forms.wait_for_log(problem)
    assert_still_serving(forms.port)


def test_response_of_exact_length_in_pieces_keeps_the_connection(forms):
    sock = raw_connection(forms.port)
    reader = RawReader(sock)
    sock.sendall(b"GET /length/exact-stream HTTP/1.1\r\nHost: t\r\n\r\n")
    resp = reader.read_response()
    assert (resp.raw_head, resp.body) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", b"1234567890")
    # The app's final empty message is accepted: no OSError, as if the client had left.
    sock.sendall(b"GET /last-error HTTP/1.1\r\nHost: t\r\n\r\n")
    assert reader.read_response().body == b"none"
    sock.close()


# --- Host (RFC 9112 3.2) ---------------------------------------------------------------------


BAD_HOSTS = {
    "missing": b"GET /headers/lists HTTP/1.1\r\n\r\n",
    "twice-same": b"GET /headers/lists HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "twice-different": b"GET /headers/lists HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "http10-twice": b"GET /headers/lists HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "userinfo": b"GET /headers/lists HTTP/1.1\r\nHost: user@a\r\n\r\n",
    "bad-port": b"GET /headers/lists HTTP/1.1\r\nHost: a:b\r\n\r\n",
    "space": b"GET /headers/lists HTTP/1.1\r\nHost: a b\r\n\r\n",
    "absolute-form-without-host": b"GET http://a/headers/lists HTTP/1.1\r\n\r\n",
}
GOOD_HOSTS = {
    "http10-without-host": b"GET /headers/lists HTTP/1.0\r\n\r\n",
    "empty-host": b"GET /headers/lists HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
    "ipv6-host": b"GET /headers/lists HTTP/1.1\r\nHost: [::1]:8000\r\nConnection: close\r\n\r\n",
    "absolute-form": b"GET http://example.com/headers/lists HTTP/1.1\r\nHost: other\r\n"
                     b"Connection: close\r\n\r\n",
}


@pytest.mark.parametrize("case", [*BAD_HOSTS, *GOOD_HOSTS])
def test_host_rules(forms, case):
    """RFC 9112 3.2: 400 (and the app never runs) for an HTTP/1.1 request without Host, any
    request with two, or an invalid one; the valid forms are served."""
    head = BAD_HOSTS.get(case) or GOOD_HOSTS[case]
    data = exchange(forms.port, head)
    # hyper answers an HTTP/1.0 request in HTTP/1.0 (RFC 9112 2.5 allows either).
    version = b"HTTP/1.0" if b"HTTP/1.0" in head else b"HTTP/1.1"
    if case in BAD_HOSTS:
        assert data == BAD_REQUEST.replace(b"HTTP/1.1", version)
        assert_still_serving(forms.port)
    else:
        assert data.startswith(version + b" 200 OK\r\n"), data
        assert data.partition(b"\r\n\r\n")[2] == b"form /headers/lists"


def test_host_rules_apply_to_websocket_upgrades_too(forms):
    request = (b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert exchange(forms.port, request) == BAD_REQUEST


# --- the ASGI introduction's apps, exactly as published ---------------------------------------


def test_introduction_hello_app(server):
    srv = server.start("examples.hello:app", "--no-date-header", "--no-server-header")
    assert get(srv.port, "/") == ok(b"Hello, world!", b"content-type: text/plain")


def test_introduction_streaming_app_streams(server):
    srv = server.start("examples.stream:app", "--no-date-header", "--no-server-header")
    sock = raw_connection(srv.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    reader = RawReader(sock)
    resp = reader.read_head()
    assert resp.raw_head == (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
    arrivals = []
    for expected in (b"Hello", b", ", b"world!"):
        size = int(reader.read_until(b"\r\n"), 16)
        assert reader.read_exact(size + 2) == expected + b"\r\n"
        arrivals.append(time.monotonic())
    assert reader.read_until(b"\r\n\r\n") == b"0\r\n\r\n"
    # One second apart in the app: a buffered stream would deliver them together.
    assert arrivals[2] - arrivals[0] > 1.5
    assert not is_closed(sock, timeout=0.2)  # keep-alive after a complete stream
    sock.close()


def test_python_example_py_with_run(tmp_path):
    """`python example.py`, the way the introduction runs an app from its own file."""
    port = free_port()
    source = (REPO / "examples" / "example.py").read_text()
    assert 'ferricorn.run("example:app"' in source
    (tmp_path / "example.py").write_text(source.replace("port=8000", f"port={port}"))
    shutil.copy(REPO / "examples" / "hello.py", tmp_path / "hello.py")
    log = open(tmp_path / "out.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([PYTHON, "example.py"], cwd=tmp_path, env=base_env(),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while b"running on" not in (tmp_path / "out.log").read_bytes():
            assert proc.poll() is None, (tmp_path / "out.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "out.log").read_text()
            time.sleep(0.05)
        data = get(port, "/")
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b"\r\n\r\nHello, world!")
        assert b"content-type: text/plain\r\n" in data
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        log.close()
    output = (tmp_path / "out.log").read_text()
    assert "Application startup complete" not in output or "INFO" in output
    assert "INFO:" in output and "Finished server process" in output


def test_examples_are_the_published_ones():
    """The examples keep the introduction's list-of-lists headers (the form that matters);
    example.py serves hello.py's app."""
    assert "from hello import app" in (REPO / "examples" / "example.py").read_text()
    for name in ("hello.py", "stream.py"):
        assert "[b'content-type', b'text/plain']" in (REPO / "examples" / name).read_text()
