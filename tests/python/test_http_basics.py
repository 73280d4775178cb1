"""End-to-end HTTP/1.1 basics: response framing (Content-Length, chunked, close-delimited),
HEAD, 204/304, streaming without buffering, keep-alive and pipelining.

Served apps: tests/apps/basic.py, examples/hello.py and examples/stream.py.
"""

from __future__ import annotations

import time

import pytest
from conftest import RawReader, http_client, raw_connection

APP = "apps.basic:app"


@pytest.fixture(scope="module")
def basic(module_server):
    """One server for the read-only tests of this module."""
    return module_server.start(APP)


def request(path: str, method: str = "GET", extra: str = "", version: str = "1.1") -> bytes:
    return (f"{method} {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n").encode()


def test_whole_body_gets_content_length(basic):
    with http_client() as client:
        response = client.get(basic.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-length"] == "13"
    assert "transfer-encoding" not in response.headers
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["server"] == "ferricorn"
    assert "date" in response.headers


def test_large_response_body_intact(basic):
    with http_client() as client:
        response = client.get(basic.url + "/big")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(1024 * 1024)
    assert response.content == bytes(range(256)) * 4096


def test_streamed_body_is_chunked_on_http11(basic):
    with raw_connection(basic.port) as sock:
        sock.sendall(request("/stream?delay=0"))
        reader = RawReader(sock)
        response = reader.read_response()
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-length") is None
    assert response.body == b"Hello, world!"


def test_hello_example(server):
    srv = server.start("examples.hello:app")
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert srv.stop() == 0


def test_streaming_is_not_buffered(server):
    """The streaming example (examples/stream.py) sends three parts one second apart: the
    first must reach the client long before the last."""
    srv = server.start("examples.stream:app")
    with http_client() as client:
        with client.stream("GET", srv.url + "/") as response:
            assert response.status_code == 200
            received = b""
            first_at = None
            first_seen = b""
            for chunk in response.iter_raw():
                if first_at is None and chunk:
                    first_at = time.monotonic()
                    first_seen = chunk
                received += chunk
            last_at = time.monotonic()
    assert received == b"Hello, world!"
    assert first_seen.startswith(b"Hello") and b"world" not in first_seen
    # The app sleeps 2 s between its first and last part; a buffering server would deliver
    # everything at once at the end.
    assert last_at - first_at > 1.0, f"first part arrived only {last_at - first_at:.2f}s early"


def test_http10_client_gets_close_delimited_stream(basic):
    with raw_connection(basic.port) as sock:
        sock.sendall(b"GET /stream?delay=0 HTTP/1.0\r\nHost: test\r\n\r\n")
        reader = RawReader(sock)
        head = reader.read_head()
        body = reader.read_to_close()  # the server must close to end the body
    assert head.status == 200
    assert head.header("transfer-encoding") is None, head.raw_head
    assert body == b"Hello, world!"


def test_http10_whole_body_has_content_length(basic):
    with raw_connection(basic.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        reader = RawReader(sock)
        response = reader.read_response()
    assert response.status == 200
    assert response.header("content-length") == "13"
    assert response.body == b"Hello, world!"


def test_head_has_headers_but_no_body(basic):
    with http_client() as client:
        head = client.head(basic.url + "/")
        get = client.get(basic.url + "/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == "13"
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_sends_no_body_bytes_on_the_wire(basic):
    """HEAD then GET pipelined: the byte right after the HEAD response's head must start the
    GET response (no body bytes in between)."""
    with raw_connection(basic.port) as sock:
        sock.sendall(request("/", "HEAD") + request("/"))
        reader = RawReader(sock)
        head = reader.read_response("HEAD")
        assert head.status == 200
        assert head.header("content-length") == "13"
        assert reader.read_exact(len(b"HTTP/1.1 200")) == b"HTTP/1.1 200", reader.buf
        reader.buf = b"HTTP/1.1 200" + reader.buf
        get = reader.read_response()
    assert get.body == b"Hello, world!"


def test_head_of_streamed_response_has_no_body(basic):
    with raw_connection(basic.port) as sock:
        sock.sendall(request("/stream?delay=0", "HEAD") + request("/"))
        reader = RawReader(sock)
        head = reader.read_response("HEAD")
        assert head.status == 200
        nxt = reader.read_response()
    assert nxt.status == 200 and nxt.body == b"Hello, world!"


def test_head_of_an_endless_stream_tells_the_app_it_is_over(server):
    # Once a HEAD response's head is out the response is complete, and `receive()` says
    # http.disconnect (as after any sent response); an endless stream stops instead of
    # holding its task and its slot forever.
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(request("/endless", "HEAD"))
        head = RawReader(sock).read_response("HEAD")
        assert head.status == 200
        srv.wait_for_log("ENDLESS-STOPPED", timeout=5)
        # The connection is still good for the next request.
        sock.sendall(request("/"))
        assert RawReader(sock).read_response().body == b"Hello, world!"


def test_get_of_an_endless_stream_runs_until_the_client_leaves(server):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(request("/endless"))
        reader = RawReader(sock)
        assert reader.read_until(b"tick\n")
        time.sleep(0.3)
        assert "ENDLESS-STOPPED" not in srv.logs()
    srv.wait_for_log("ENDLESS-STOPPED", timeout=5)


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(basic, status):
    """204 and 304 carry no body and no chunked framing; the next pipelined response follows
    right after the head."""
    with raw_connection(basic.port) as sock:
        sock.sendall(request(f"/status/{status}") + request("/"))
        reader = RawReader(sock)
        first = reader.read_head()
        assert first.status == status
        assert first.header("transfer-encoding") is None, first.raw_head
        assert reader.read_exact(len(b"HTTP/1.1 200")) == b"HTTP/1.1 200", reader.buf
        reader.buf = b"HTTP/1.1 200" + reader.buf
        second = reader.read_response()
    assert second.body == b"Hello, world!"


def test_keep_alive_reuses_connection(basic):
    with raw_connection(basic.port) as sock:
        reader = RawReader(sock)
        for path, expected in [("/", b"Hello, world!"), ("/anything", b"ok"),
                               ("/stream?delay=0", b"Hello, world!"), ("/", b"Hello, world!")]:
            sock.sendall(request(path))
            response = reader.read_response()
            assert response.status == 200
            assert response.body == expected
            assert (response.header("connection") or "").lower() != "close"


def test_httpx_reuses_one_connection(basic):
    """Several requests through one client: all succeed and the pool keeps one connection."""
    with http_client() as client:
        for _ in range(5):
            assert client.get(basic.url + "/").text == "Hello, world!"
        pool = client._transport._pool  # httpx internals: just a sanity check on reuse
        assert len(pool.connections) == 1


def test_pipelined_requests_answered_in_order(basic):
    with raw_connection(basic.port) as sock:
        sock.sendall(request("/anything") + request("/") + request("/status/204")
                     + b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nping")
        reader = RawReader(sock)
        first = reader.read_response()
        second = reader.read_response()
        third = reader.read_response()
        fourth = reader.read_response()
    assert (first.status, first.body) == (200, b"ok")
    assert (second.status, second.body) == (200, b"Hello, world!")
    assert third.status == 204
    assert (fourth.status, fourth.body) == (200, b"ping")


def test_connection_close_request_closes(basic):
    with raw_connection(basic.port) as sock:
        sock.sendall(request("/", extra="Connection: close\r\n"))
        reader = RawReader(sock)
        response = reader.read_response()
        assert response.body == b"Hello, world!"
        assert reader.read_to_close() == b""
    assert reader.closed


def test_http10_keep_alive_not_assumed(basic):
    """An HTTP/1.0 request without Connection: keep-alive gets its response and a close."""
    with raw_connection(basic.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reader = RawReader(sock)
        response = reader.read_response()
        assert response.body == b"Hello, world!"
        assert reader.read_to_close() == b""
