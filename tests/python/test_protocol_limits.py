"""End-to-end protocol limits with raw sockets: oversized and malformed request heads,
ambiguous framing, bad chunks, keep-alive and header-read timeouts, and
--limit-concurrency.

Served apps: tests/apps/basic.py and tests/apps/lifespan_app.py (/sleep).
"""

from __future__ import annotations

import socket
import time

from conftest import RawReader, http_client, is_closed, raw_connection, recv_until_closed

BASIC = "apps.basic:app"


def assert_serves(srv) -> None:
    """A fresh connection still gets a normal answer."""
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"


def test_oversized_head_gets_431(server):
    srv = server.start(BASIC, "--h11-max-incomplete-event-size", "1024")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert_serves(srv)


def test_head_within_limit_is_served(server):
    srv = server.start(BASIC, "--h11-max-incomplete-event-size", "4096")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        response = RawReader(sock).read_response()
    assert response.status == 200


def test_default_limit_rejects_huge_head(server):
    srv = server.start(BASIC)
    with raw_connection(srv.port) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 100_000
                         + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading (and close) before all of it is sent
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert_serves(srv)


def test_malformed_request_line_gets_400(server):
    srv = server.start(BASIC)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert_serves(srv)


def test_content_length_with_transfer_encoding_rejected(server):
    srv = server.start(BASIC)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                     b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n")
        data = recv_until_closed(sock)  # the connection must be closed after the answer
    assert data.startswith(b"HTTP/1.1 400"), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert b"smuggled" not in data
    assert_serves(srv)


def test_smuggling_attempt_after_a_chunked_request_rejected(server):
    """The check follows message boundaries: the offending head may come after other requests
    on the same connection, and arrive a few bytes at a time."""
    srv = server.start(BASIC)
    with raw_connection(srv.port) as sock:
        stream = (b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 3\r\n\r\n0\r\n\r\n")
        for i in range(0, len(stream), 7):
            sock.sendall(stream[i:i + 7])
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    assert data.count(b"HTTP/1.1 ") == 2, data
    assert b"HTTP/1.1 400" in data, data
    assert_serves(srv)


def test_invalid_chunk_size_rejected(server):
    srv = server.start(BASIC)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\nhello\r\n0\r\n\r\n")
        data = recv_until_closed(sock)  # the connection must be closed after the answer
    # RFC 9112 7.1: a chunk size that is not hex makes the message invalid -> 400, then close
    # (the request's framing is lost, so the connection cannot be reused).
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), \
        f"expected a 400 before the close; got {data[:300]!r}"
    head = data.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert b"connection: close" in head, data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, data  # no answer from the app as well
    assert_serves(srv)


def test_idle_keep_alive_connection_closed_after_timeout(server):
    srv = server.start(BASIC, "--timeout-keep-alive", "1")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        reader = RawReader(sock)
        assert reader.read_response().status == 200
        answered = time.monotonic()
        # 3.5 s: generous for a 1 s timeout, yet short of the 5 s default it replaces.
        assert is_closed(sock, timeout=3.5), "idle connection still open after 3.5 s"
        elapsed = time.monotonic() - answered
    assert elapsed >= 0.5, f"closed after {elapsed:.2f}s, before the keep-alive timeout"


def test_keep_alive_timeout_does_not_cut_a_reused_connection(server):
    srv = server.start(BASIC, "--timeout-keep-alive", "1")
    with raw_connection(srv.port) as sock:
        reader = RawReader(sock)
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            assert reader.read_response().body == b"Hello, world!"
            time.sleep(0.5)  # pacing below the timeout; not an assertion


def ask_for_32_mib_with_a_small_window(port: int) -> socket.socket:
    """A connection with a 64 KiB receive buffer that has asked for 32 MiB in one body, so
    the server's writes stall until it reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big?mib=32 HTTP/1.1\r\nHost: test\r\n\r\n")
    return sock


def test_keep_alive_timeout_does_not_cut_a_large_answer_read_slowly(server):
    # hyper lets go of a one-message body before the socket has taken it all: the bytes
    # still going out are not idle time, so a slow reader gets the whole answer.
    srv = server.start(BASIC, "--timeout-keep-alive", "1")
    size = 32 * 1024 * 1024
    with ask_for_32_mib_with_a_small_window(srv.port) as sock:
        time.sleep(2.5)  # the server's writes stall on the full socket meanwhile
        response = RawReader(sock).read_response()
    assert response.status == 200
    assert len(response.body) == size, f"got {len(response.body)} of {size} bytes"


def test_client_that_takes_no_bytes_is_dropped_after_header_read_timeout(server):
    srv = server.start(BASIC, "--timeout-keep-alive", "1", "--timeout-header-read", "1")
    with ask_for_32_mib_with_a_small_window(srv.port) as sock:
        time.sleep(4.0)  # reads nothing: the server gives up after about 1 s of no progress
        try:
            received = len(recv_until_closed(sock, timeout=10.0))
        except ConnectionResetError:
            received = -1
    assert received < 32 * 1024 * 1024, "a client that read nothing got the whole answer"
    assert_serves(srv)


def test_zero_keep_alive_answers_once_and_closes(server):
    srv = server.start(BASIC, "--timeout-keep-alive", "0")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        response = RawReader(sock).read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert is_closed(sock, timeout=2.0)
    assert_serves(srv)


def test_incomplete_head_dropped_after_header_read_timeout(server):
    # A long keep-alive timeout, so only the header-read timeout can explain the drop.
    srv = server.start(BASIC, "--timeout-header-read", "1", "--timeout-keep-alive", "30")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Never: ends")
        start = time.monotonic()
        try:
            data = recv_until_closed(sock, timeout=4.0)
        except TimeoutError:
            raise AssertionError(
                "connection with an incomplete head still open 4 s after it stalled "
                "(--timeout-header-read 1)"
            ) from None
        elapsed = time.monotonic() - start
    # Part of a head arrived, then nothing: RFC 9110 15.5.9, 408 Request Timeout, with
    # "Connection: close" (the request's delimitation is lost), then the close.
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), \
        f"expected a 408 before the close after {elapsed:.2f}s; got {data[:200]!r}"
    head = data.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert b"connection: close" in head, data[:200]
    assert elapsed >= 0.5, f"dropped after {elapsed:.2f}s, before the header timeout"
    assert_serves(srv)


def test_stalled_body_gets_408_after_the_body_timeout(server):
    """A body that stops arriving (3 of 10 declared bytes) gets 408 and the close: the rest
    may still come and must not be read as a next request."""
    srv = server.start(BASIC, "--timeout-request-body", "1", "--timeout-keep-alive", "30")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
        start = time.monotonic()
        data = recv_until_closed(sock, timeout=5.0)
        elapsed = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:200]
    head = data.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert b"connection: close" in head, data[:200]
    assert elapsed >= 0.5, f"answered after {elapsed:.2f}s, before the timeout"
    assert_serves(srv)


def test_body_that_stops_midway_gets_408_after_the_body_timeout(server):
    """A large body (read as the app asks, past the 64 KiB read in one go) that stops
    arriving: 408 once --timeout-request-body passes with the app waiting, then the close;
    the app hears http.disconnect."""
    srv = server.start(BASIC, "--timeout-request-body", "1", "--timeout-keep-alive", "30")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 200000\r\n\r\n"
                     + b"x" * 1000)
        start = time.monotonic()
        data = recv_until_closed(sock, timeout=5.0)
        elapsed = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:200]
    assert b"connection: close" in data.partition(b"\r\n\r\n")[0].lower()
    assert elapsed >= 0.5, f"answered after {elapsed:.2f}s, before the timeout"
    assert_serves(srv)


def test_silent_connection_dropped_after_header_read_timeout(server):
    """A client that connects and never sends a byte is dropped too: closed without a word,
    since no request was begun that a 408 could answer (RFC 9112 9.5: a timeout is a graceful
    close; an unsolicited response could be taken as the answer to a request the client is
    sending just then)."""
    srv = server.start(BASIC, "--timeout-header-read", "1", "--timeout-keep-alive", "30")
    with raw_connection(srv.port) as sock:
        start = time.monotonic()
        try:
            data = recv_until_closed(sock, timeout=4.0)
        except TimeoutError:
            raise AssertionError(
                "silent connection still open after 4 s (--timeout-header-read 1)"
            ) from None
        elapsed = time.monotonic() - start
    assert data == b"", f"a connection that sent nothing got {data[:200]!r}"
    assert elapsed >= 0.5, f"dropped after {elapsed:.2f}s, before the header timeout"
    assert_serves(srv)


def test_limit_concurrency(server):
    srv = server.start("apps.lifespan_app:app", "--limit-concurrency", "1")
    idle = raw_connection(srv.port)
    try:
        # An idle keep-alive connection alone does not count against the limit.
        idle.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert RawReader(idle).read_response().status == 200
        with http_client() as client:
            assert client.get(srv.url + "/").status_code == 200

        slow = raw_connection(srv.port)
        try:
            slow.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: test\r\n\r\n")
            srv.wait_for_log("SLEEP-STARTED")
            with raw_connection(srv.port) as second:
                second.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                rejected = RawReader(second).read_response()
            assert rejected.status == 503
            assert rejected.header("retry-after") is not None
            slow_response = RawReader(slow).read_response()
            assert slow_response.status == 200
            assert slow_response.body == b"slept"
        finally:
            slow.close()
        # With the slow request done, new requests are served again.
        with http_client() as client:
            assert client.get(srv.url + "/").status_code == 200
    finally:
        idle.close()
