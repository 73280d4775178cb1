"""The limits a public server needs: --limit-request-body (413), --limit-request-line (414),
--limit-request-fields and --limit-request-field-size (431), each refused with its status and
the connection closed, each counted in a warning at most once a second; the server goes on.

Byte-level cases use raw sockets; the body limit is also checked for chunked bodies (known
only as they arrive), over HTTP/2, and for a WSGI app.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from conftest import http_client, raw_connection, recv_until_closed

BASIC = "apps.basic:app"
WSGI_APP = "apps.wsgi_app:app"


def exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Sends `request`, reads until the server closes; returns the head and the body."""
    with raw_connection(port) as sock:
        sock.sendall(request)
        data = recv_until_closed(sock, timeout=10.0)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def status_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


def header_lines(head: bytes) -> list[bytes]:
    return head.lower().split(b"\r\n")[1:]


def assert_serves(srv) -> None:
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert (response.status_code, response.text) == (200, "Hello, world!")


def chunked(data: bytes, size: int = 400) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


# --- --limit-request-body ------------------------------------------------------------------


def test_a_declared_body_over_the_limit_gets_413_before_the_app(server):
    srv = server.start(BASIC, "--limit-request-body", "1000")
    head, body = exchange(srv.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001"
                                    b"\r\n\r\n" + b"x" * 1001)
    assert status_line(head) == b"HTTP/1.1 413 Payload Too Large", head
    assert b"connection: close" in header_lines(head)
    # The engine's own answers carry the headers the app's do.
    assert b"server: ferricorn" in header_lines(head)
    assert body == b"Content Too Large\n"
    # Refused by the engine, which logs its own answer: the one line for the request is
    # the 413 (the app, had it run, would have answered 200).
    logs = srv.wait_for_log('"POST /echo HTTP/1.1" 413 Request Entity Too Large')
    assert logs.count('"POST /echo') == 1
    assert_serves(srv)


def test_a_body_at_the_limit_is_served(server):
    srv = server.start(BASIC, "--limit-request-body", "1000")
    with http_client() as c:
        r = c.post(srv.url + "/echo", content=b"y" * 1000)
    assert (r.status_code, r.content) == (200, b"y" * 1000)


def test_a_chunked_body_over_the_limit_gets_413_when_it_gets_there(server):
    """No length is declared: the body is counted as it arrives, and the app, which was
    reading it, hears http.disconnect instead of the bytes past the limit."""
    srv = server.start(BASIC, "--limit-request-body", "100000")
    head, body = exchange(
        srv.port,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"z" * 150_000, 4000))
    assert status_line(head) == b"HTTP/1.1 413 Payload Too Large", head
    assert b"connection: close" in header_lines(head)
    assert body == b"Content Too Large\n"
    assert_serves(srv)


def test_a_chunked_body_under_the_limit_is_served(server):
    srv = server.start(BASIC, "--limit-request-body", "100000")
    head, body = exchange(
        srv.port,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunked(b"z" * 90_000, 4000))
    assert status_line(head) == b"HTTP/1.1 200 OK", head
    assert body == b"z" * 90_000


def test_zero_turns_the_body_limit_off(server):
    srv = server.start(BASIC, "--limit-request-body", "0")
    with http_client(timeout=30) as c:
        r = c.post(srv.url + "/digest", content=b"q" * (3 << 20))
    assert r.json()["length"] == 3 << 20


def test_the_body_limit_over_http2(server):
    srv = server.start(BASIC, "--limit-request-body", "1000")
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as c:
        r = c.post(srv.url + "/echo", content=b"x" * 5000)
        assert r.http_version == "HTTP/2"
        assert r.status_code == 413
        assert c.post(srv.url + "/echo", content=b"x" * 10).status_code == 200


def test_the_body_limit_for_a_wsgi_app(server):
    """wsgi.input raises OSError once the limit is passed; the client gets the 413."""
    srv = server.start(WSGI_APP, "--interface", "wsgi", "--limit-request-body", "50000")
    head, body = exchange(
        srv.port,
        b"POST /input?mode=read HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"w" * 80_000, 4000))
    assert status_line(head) == b"HTTP/1.1 413 Payload Too Large", head
    assert body == b"Content Too Large\n"
    head, _ = exchange(srv.port, b"POST /input?mode=read HTTP/1.1\r\nHost: t\r\n"
                                 b"Content-Length: 60000\r\n\r\n" + b"w" * 60000)
    assert status_line(head) == b"HTTP/1.1 413 Payload Too Large", head


# --- --limit-request-line -------------------------------------------------------------------


def test_a_request_line_over_the_limit_gets_414(server):
    srv = server.start(BASIC, "--limit-request-line", "100")
    target = b"/" + b"a" * 120
    head, body = exchange(srv.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 414 URI Too Long", head
    assert b"connection: close" in header_lines(head)
    assert body == b"URI Too Long\n"
    assert_serves(srv)


def test_a_request_line_at_the_limit_is_served(server):
    srv = server.start(BASIC, "--limit-request-line", "100")
    # "GET " + target + " HTTP/1.1" is exactly 100 bytes.
    target = b"/" + b"a" * (100 - len(b"GET  HTTP/1.1") - 1)
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == 100
    head, _ = exchange(srv.port, line + b"\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 200 OK", head


# --- --limit-request-fields and --limit-request-field-size ---------------------------------


def fields(n: int) -> bytes:
    return b"".join(b"X-Field-%d: v\r\n" % i for i in range(n))


def test_more_fields_than_the_limit_get_431(server):
    srv = server.start(BASIC, "--limit-request-fields", "5")
    # Host and four more: five fields, served.
    head, _ = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(3)
                       + b"Connection: close\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 200 OK", head
    for extra in (5, 40, 200):  # one past the limit, and far past it (hyper's own check)
        head, body = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(extra)
                              + b"\r\n")
        assert status_line(head) == b"HTTP/1.1 431 Request Header Fields Too Large", head
    assert_serves(srv)


@pytest.mark.parametrize("limit", [None, 150])
def test_the_field_limit_holds_at_the_default_and_above_it(server, limit):
    """At the default (100, gunicorn's) and above it: exactly the limit is served, one more
    is 431 (hyper counts the fields up to its own 100; past that the engine tells it)."""
    srv = server.start(BASIC, *(["--limit-request-fields", str(limit)] if limit else []))
    limit = limit or 100
    # Host and Connection are two of the fields.
    head, _ = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(limit - 2)
                       + b"Connection: close\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 200 OK", head
    head, _ = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(limit - 1)
                       + b"Connection: close\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 431 Request Header Fields Too Large", head
    assert_serves(srv)


def test_more_fields_than_the_limit_over_http2(server):
    srv = server.start(BASIC, "--limit-request-fields", "5")
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as c:
        r = c.get(srv.url + "/", headers={f"x-field-{i}": "v" for i in range(10)})
        assert (r.http_version, r.status_code) == ("HTTP/2", 431)


def test_a_field_over_the_size_limit_gets_431(server):
    srv = server.start(BASIC, "--limit-request-field-size", "100")
    head, body = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 120
                          + b"\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 431 Request Header Fields Too Large", head
    assert b"connection: close" in header_lines(head)
    assert body == b"Request Header Fields Too Large\n"
    # Name and value together at the limit: served.
    value = b"b" * (100 - len(b"x-big"))
    head, _ = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + value
                       + b"\r\nConnection: close\r\n\r\n")
    assert status_line(head) == b"HTTP/1.1 200 OK", head


# --- the log lines ----------------------------------------------------------------------------


def test_refusals_are_logged_once_a_second_with_a_count(server):
    srv = server.start(BASIC, "--limit-request-body", "10")
    request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n" + b"x" * 11
    for _ in range(5):
        assert status_line(exchange(srv.port, request)[0]).startswith(b"HTTP/1.1 413")
    srv.wait_for_log("Refused 1 request(s) with 413 since the last report: request body "
                     "over --limit-request-body (10 bytes)")
    time.sleep(1.2)
    assert status_line(exchange(srv.port, request)[0]).startswith(b"HTTP/1.1 413")
    logs = srv.wait_for_log(re.compile(r"Refused 5 request\(s\) with 413"))
    assert len(re.findall(r"Refused \d+ request\(s\) with 413", logs)) == 2, logs
    assert re.search(r"WARNING:.*Refused 1 request\(s\) with 413", logs), logs


def test_a_stalled_body_is_logged_as_a_408_refusal(server):
    srv = server.start(BASIC, "--timeout-request-body", "1")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        data = recv_until_closed(sock, timeout=6.0)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:200]
    srv.wait_for_log("Refused 1 request(s) with 408 since the last report: request body "
                     "stopped arriving for --timeout-request-body (1 s)")


# --- --limit-min-send-rate --------------------------------------------------------------------


def test_a_client_slower_than_the_floor_is_dropped(server):
    """A client that asks for 16 MiB and takes nothing: once its socket is full it is behind,
    and after --timeout-slow-send (1 s here) at under the floor it is disconnected, with the
    warning; the response is cut, the server goes on."""
    import socket as socket_module

    srv = server.start(BASIC, "--limit-min-send-rate", "100000", "--timeout-slow-send", "1",
                       "--timeout-keep-alive", "30")
    sock = socket_module.socket()
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    with sock:
        sock.sendall(b"GET /big?mib=16 HTTP/1.1\r\nHost: t\r\n\r\n")
        srv.wait_for_log("Dropped 1 connection(s) since the last report: the client took "
                         "response bytes slower than --limit-min-send-rate (100000 bytes/s) "
                         "for --timeout-slow-send (1 s)", timeout=15)
        received = len(recv_until_closed(sock, timeout=10.0))
    assert received < 16 * 1024 * 1024, "the whole answer arrived: nobody was dropped"
    assert_serves(srv)


def test_a_client_that_keeps_up_is_not_dropped(server):
    srv = server.start(BASIC, "--limit-min-send-rate", "100000", "--timeout-slow-send", "1")
    with http_client(timeout=30) as c:
        r = c.get(srv.url + "/big", params={"mib": "16"})
    assert r.status_code == 200 and len(r.content) == 16 * 1024 * 1024
    assert "Dropped" not in srv.logs()
