"""RFC 9112 (HTTP/1.1) conformance over raw sockets: the MUST and MUST NOT requirements of
sections 2 to 9 that bind a server and that no other test file checks. docs/conformance.md
maps every such requirement to its test, or says why there is none.

Each test asserts what the RFC requires, no more: where the RFC allows two answers (reject,
or repair and go on) both are accepted and the repaired form is checked. After every bad
request the server must still answer a good one on a new connection.

Served apps: tests/apps/basic.py, scope_app.py (the scope as JSON), receive_app.py and
ws_app.py.
"""

from __future__ import annotations

import itertools
import json
import re
import socket

import pytest
from conftest import RawReader, RawResponse, raw_connection, recv_until_closed

BASIC = "apps.basic:app"
SCOPE = "apps.scope_app:app"

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n"
HELLO = b"Hello, world!"

_tags = itertools.count()


@pytest.fixture(scope="module")
def basic(module_server):
    return module_server.start(BASIC)


@pytest.fixture(scope="module")
def reporter(module_server):
    """A server whose app answers with the request scope (headers, path...) as JSON."""
    return module_server.start(SCOPE)


# --- helpers ---------------------------------------------------------------------------------


def tagged(code: int = 202) -> tuple[str, bytes]:
    """A unique marker and a pipelined request carrying it: if the marker ever shows up in the
    access log or the answer, the server processed a request it had to ignore."""
    tag = f"never-{next(_tags)}"
    return tag, f"GET /status/{code}?tag={tag} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def rest_until_close(reader: RawReader, timeout: float = 5.0) -> bytes:
    """Whatever the server sends after what `reader` consumed, up to its close; fails when the
    connection stays open."""
    reader.sock.settimeout(timeout)
    try:
        return reader.read_to_close()
    except TimeoutError:
        raise AssertionError(
            f"connection still open {timeout}s after the response; buffered {reader.buf!r}"
        ) from None
    except ConnectionResetError:
        data, reader.buf = reader.buf, b""
        return data


def send(sock: socket.socket, data: bytes) -> None:
    """sendall() that tolerates a server that answered and closed before taking everything."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def answered_then_closed(port: int, request: bytes, method: str = "GET") -> RawResponse:
    """Sends `request` on a fresh connection; expects one complete response, then nothing but
    the close. Returns that response."""
    with raw_connection(port) as sock:
        send(sock, request)
        reader = RawReader(sock)
        response = reader.read_response(method)
        after = rest_until_close(reader)
    assert after == b"", f"more after the response {response.raw_head!r}: {after[:300]!r}"
    return response


def assert_rejected(port: int, request: bytes, status_line: bytes = BAD_REQUEST) -> None:
    """The request gets exactly one response with `status_line`, then the connection closes."""
    response = answered_then_closed(port, request)
    assert response.raw_head.startswith(status_line), response.raw_head


def assert_serves(port: int) -> None:
    """A good request on a new connection still gets its answer."""
    with raw_connection(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]


def scope_of(response: RawResponse) -> dict:
    assert response.status == 200, response.raw_head
    return json.loads(response.body)


def headers_of(scope: dict) -> list[tuple[str, str]]:
    """The scope's headers as (name, value) text pairs (bytes read as latin-1)."""
    return [(pair["tuple"][0]["bytes"], pair["tuple"][1]["bytes"]) for pair in scope["headers"]]


def post(path: str, framing: str, body: bytes, version: str = "1.1") -> bytes:
    return f"POST {path} HTTP/{version}\r\nHost: t\r\n{framing}\r\n".encode() + body


# --- 2.2 message parsing ---------------------------------------------------------------------


def test_field_values_are_parsed_as_octets(reporter):
    """2.2: a message is a sequence of octets (a superset of US-ASCII): obs-text in a field
    value reaches the app byte for byte."""
    response = answered_then_closed(
        reporter.port,
        b"GET /o HTTP/1.1\r\nHost: t\r\nX-Octets: \x80caf\xc3\xa9\xff\r\nConnection: close\r\n\r\n",
    )
    assert ("x-octets", "\x80caf\xc3\xa9\xff") in headers_of(scope_of(response))


@pytest.mark.parametrize(
    "head",
    [
        b"GET /cr HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\nConnection: close\r\n\r\n",
        b"GET /cr HTTP/1.1\r\nHost: t\r\nX-A\r: bc\r\nConnection: close\r\n\r\n",
        b"GET /cr\r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /cr HTTP/1.1\rHost: t\r\nConnection: close\r\n\r\n",
    ],
    ids=["in-value", "in-name", "in-request-line", "as-line-end"],
)
def test_bare_cr_is_rejected_or_replaced_by_sp(reporter, head):
    """2.2: a recipient MUST consider an element with a bare CR invalid or replace the CR by
    SP before processing it. Invalid means 400 (2.2, 3.2 SHOULD) and the close."""
    response = answered_then_closed(reporter.port, head)
    if response.status != 400:
        # The only other conforming answer: the CR became SP before the app saw anything.
        text = json.dumps(scope_of(response))
        assert "\\r" not in text, text
        assert ("x-a", "b c") in headers_of(scope_of(response)), text
    else:
        assert response.raw_head.startswith(BAD_REQUEST)
    assert_serves(reporter.port)


def test_whitespace_before_the_first_field_line(reporter):
    """2.2: whitespace between the start-line and the first field line: reject the message,
    or ignore each whitespace-preceded line (never read it as a field)."""
    response = answered_then_closed(
        reporter.port,
        b"GET /ws HTTP/1.1\r\n X-Injected: 1\r\n\tHost: evil\r\nHost: t\r\n"
        b"Connection: close\r\n\r\n",
    )
    if response.status != 400:
        headers = headers_of(scope_of(response))
        assert [v for n, v in headers if n == "host"] == ["t"], headers
        assert not [n for n, _ in headers if "injected" in n], headers
    else:
        assert response.raw_head.startswith(BAD_REQUEST)
    assert_serves(reporter.port)


# Response heads, checked against the grammar of 2.1, 4 and 5 (the sender MUST NOTs).
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9]{2} [\t \x21-\x7e\x80-\xff]*")
_FIELD_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*"
    rb"(?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?[ \t]*"
)


@pytest.mark.parametrize(
    ("request_bytes", "method"),
    [
        (b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET"),
        (b"GET /stream?delay=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET"),
        (b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HEAD"),
        (b"GET /status/204 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET"),
        (b"GET /status/304 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET"),
        (b"GET /status/599 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET"),
        (b"GET /status/299 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "GET"),
        (b"GET /stream?delay=0 HTTP/1.0\r\n\r\n", "GET"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Bad : 1\r\n\r\n", "GET"),
    ],
    ids=["length", "chunked", "head", "204", "304", "599-no-reason", "299-no-reason",
         "http10-close-delimited", "parse-error-400"],
)
def test_response_heads_follow_the_grammar(basic, request_bytes, method):
    """2.2: no whitespace between the status-line and the first field, no bare CR; 4: the SP
    after the status code is sent even when there is no reason phrase; 5.2: no obs-fold;
    6.2: never Content-Length together with Transfer-Encoding; 6.1: chunked at most once, and
    no Transfer-Encoding in a 204."""
    response = answered_then_closed(basic.port, request_bytes, method)
    head = response.raw_head
    assert head.endswith(b"\r\n\r\n")
    status_line, *fields = head[:-4].split(b"\r\n")
    assert _STATUS_LINE.fullmatch(status_line), status_line
    for line in fields:
        assert _FIELD_LINE.fullmatch(line), f"bad field line {line!r} in {head!r}"
    names = [line.partition(b":")[0].lower() for line in fields]
    assert not (b"content-length" in names and b"transfer-encoding" in names), head
    te = response.header("transfer-encoding") or ""
    assert te.lower().count("chunked") <= 1, head
    if response.status == 204:  # 6.1, and RFC 9110 8.6 for Content-Length
        assert b"transfer-encoding" not in names and b"content-length" not in names, head


# --- 3 request line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [b"GET  / HTTP/1.1", b"GET\t/ HTTP/1.1", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1"],
    ids=["double-sp", "htab", "trailing-sp", "leading-sp"],
)
def test_request_line_with_bad_whitespace(basic, request_line):
    """3: the request-line's elements are separated by single SPs. A recipient SHOULD answer
    an invalid request-line with 400 (or 301) and close; it MAY instead parse on whitespace
    boundaries, and then must serve the same request (GET /)."""
    response = answered_then_closed(
        basic.port, request_line + b"\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    if response.status != 400:
        assert (response.status, response.body) == (200, HELLO), response.raw_head
    assert_serves(basic.port)


def test_whitespace_inside_the_request_target(basic):
    """3.2: no whitespace is allowed in the request-target; an invalid request-line gets 400
    or a 301 with the target properly encoded (SHOULD), never an autocorrected answer."""
    response = answered_then_closed(
        basic.port, b"GET /a b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert response.status in (400, 301), response.raw_head
    assert_serves(basic.port)


@pytest.mark.parametrize(
    "flags", [(), ("--h11-max-incomplete-event-size", "262144")], ids=["default", "large-head"]
)
def test_request_target_longer_than_parsed_gets_414(server, flags):
    """3: a server that receives a request-target longer than any URI it wishes to parse MUST
    answer 414 (URI Too Long): a 70,000-octet target is past ferricorn's 64 KiB head limit
    (default) and past hyper's 65,534-octet URI limit (large head limit)."""
    srv = server.start(BASIC, *flags)
    target = b"/" + b"a" * 70_000
    assert_rejected(srv.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n",
                    b"HTTP/1.1 414 URI Too Long\r\n")
    assert_serves(srv.port)


def test_absolute_form_target_replaces_host(reporter):
    """3.2.2: a server MUST accept the absolute-form; an origin server MUST ignore the Host
    field then and use the target's authority. The app learns the authority only from the
    headers, so it must see Host: example.org:8080, not the one the client sent."""
    response = answered_then_closed(
        reporter.port,
        b"GET http://example.org:8080/a/b?c=d HTTP/1.1\r\nHost: other.test\r\n"
        b"Connection: close\r\n\r\n",
    )
    scope = scope_of(response)
    assert (scope["path"], scope["query_string"]["bytes"]) == ("/a/b", "c=d")
    hosts = [v for n, v in headers_of(scope) if n == "host"]
    assert hosts == ["example.org:8080"], f"the app sees Host {hosts}"


# --- 5 field syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [b"X-Test : 1", b"X-Test\t: 1", b"Content-Length : 5", b"Transfer-Encoding : chunked",
     b"Host : t"],
    ids=["sp", "htab", "content-length", "transfer-encoding", "host"],
)
def test_whitespace_between_field_name_and_colon_gets_400(basic, field):
    """5.1: a server MUST reject with 400 any request with whitespace between a field name and
    the colon (and 400 on a parse failure closes: the framing is unknown)."""
    tag, smuggled = tagged()
    request = b"POST /echo HTTP/1.1\r\nHost: t\r\n" + field + b"\r\n\r\n"
    request += b"5\r\nhello\r\n0\r\n\r\n" if b"chunked" in field else b"hello"
    assert_rejected(basic.port, request + smuggled)
    assert_serves(basic.port)
    assert tag not in basic.logs()


def test_obs_fold_is_rejected_or_replaced_by_sp(reporter):
    """5.2: a server that receives obs-fold in a request MUST either reject it with 400 or
    replace each obs-fold by one or more SP before interpreting the value."""
    response = answered_then_closed(
        reporter.port,
        b"GET /fold HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n \tb\r\nConnection: close\r\n\r\n",
    )
    if response.status != 400:
        headers = headers_of(scope_of(response))
        folded = [v for n, v in headers if n == "x-folded"]
        assert len(folded) == 1 and re.fullmatch(r"a +b", folded[0]), headers
    else:
        assert response.raw_head.startswith(BAD_REQUEST)
    assert_serves(reporter.port)


# --- 6 message body --------------------------------------------------------------------------


def test_chunk_extensions_are_ignored(basic):
    """6.1, 7.1: a recipient MUST be able to parse chunked; 7.1.1: it MUST ignore unrecognized
    chunk extensions (token, token=token, token=quoted-string, BWS around ';' and '=')."""
    body = (b"5;foo=bar;baz\r\nhello\r\n"
            b"6 ; q=\"x;y \\\" z\" ; n = v\r\n world\r\n"
            b"0;last=yes\r\n\r\n")
    with raw_connection(basic.port) as sock:
        sock.sendall(post("/echo", "Transfer-Encoding: chunked\r\n", body)
                     + b"GET /anything HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = RawReader(sock)
        echoed = reader.read_response()
        after = reader.read_response()
    assert (echoed.status, echoed.body) == (200, b"hello world"), echoed.raw_head
    assert (after.status, after.body) == (200, b"ok")  # the chunked body ended where it should


def test_trailer_fields_are_not_merged_into_the_header_section(reporter):
    """7.1.2: a recipient MUST NOT merge a trailer field into the header section unless the
    field's definition allows it (neither X-Trailer nor Host does); the trailer section is
    consumed, so the next request is read from the right place."""
    body = b"5\r\nhello\r\n0\r\nX-Trailer: yes\r\nHost: evil\r\n\r\n"
    with raw_connection(reporter.port) as sock:
        sock.sendall(post("/trailers", "Transfer-Encoding: chunked\r\n", body)
                     + b"GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reader = RawReader(sock)
        first = scope_of(reader.read_response())
        second = scope_of(reader.read_response())
    headers = headers_of(first)
    assert not [n for n, _ in headers if n == "x-trailer"], headers
    assert [v for n, v in headers if n == "host"] == ["t"], headers
    assert second["path"] == "/next"


@pytest.mark.parametrize(
    "size", [b"10000000000000000", b"fffffffffffffffff1", b"1" + b"0" * 40],
    ids=["2**64", "18-digits", "41-digits"],
)
def test_chunk_size_overflow_is_an_error_not_a_wrap(basic, size):
    """7.1: recipients MUST anticipate large hex numerals and prevent integer overflow: a size
    that wraps to 0 would end the body early and turn its data into a request."""
    tag, smuggled = tagged()
    body = size + b"\r\n" + smuggled + b"\r\n0\r\n\r\n"
    assert_rejected(basic.port, post("/echo", "Transfer-Encoding: chunked\r\n", body))
    assert_serves(basic.port)
    assert tag not in basic.logs()


@pytest.mark.parametrize(
    "framing",
    [
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
    ],
    ids=["gzip", "chunked-then-gzip", "identity", "two-lines", "empty-last"],
)
def test_transfer_coding_not_ending_in_chunked_gets_400_and_close(basic, framing):
    """6.3 (4): Transfer-Encoding in a request whose final coding is not chunked: the length
    cannot be known, the server MUST answer 400 and then close the connection."""
    tag, smuggled = tagged()
    request = post("/echo", framing, b"5\r\nhello\r\n0\r\n\r\n" + smuggled)
    assert_rejected(basic.port, request)
    assert_serves(basic.port)
    assert tag not in basic.logs()


@pytest.mark.parametrize(
    "framing",
    ["Transfer-Encoding: chunked\r\n",
     "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
     "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"],
    ids=["te", "te-then-cl", "cl-then-te"],
)
def test_http10_request_with_transfer_encoding_closes(basic, framing):
    """6.1: a server that receives an HTTP/1.0 message with Transfer-Encoding MUST treat its
    framing as faulty (even with a Content-Length) and close the connection after it: a
    keep-alive request pipelined behind it is never answered."""
    tag, _ = tagged()
    request = post("/echo", "Connection: keep-alive\r\n" + framing,
                   b"5\r\nhello\r\n0\r\n\r\n", version="1.0")
    smuggled = f"GET /status/202?tag={tag} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    response = answered_then_closed(basic.port, request + smuggled.encode())
    assert tag.encode() not in response.raw_head + response.body
    assert_serves(basic.port)
    assert tag not in basic.logs()


@pytest.mark.parametrize(
    "framing",
    ["Content-Length: abc\r\n", "Content-Length: -1\r\n", "Content-Length: +5\r\n",
     "Content-Length: 0x5\r\n", "Content-Length: 5 5\r\n", "Content-Length: 5, 6\r\n",
     "Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: \r\n",
     "Content-Length: 18446744073709551621\r\n", "Content-Length: " + "9" * 40 + "\r\n"],
    ids=["letters", "negative", "plus-sign", "hex", "two-numbers", "list-differs",
         "lines-differ", "empty", "2**64+5", "40-digits"],
)
def test_invalid_content_length_gets_400_and_close(basic, framing):
    """6.3 (5): an invalid Content-Length (not one number, or a list of differing values) is
    an unrecoverable error: the server MUST answer 400 and then close. A huge value must not
    wrap around (the 2**64+5 case would become 5)."""
    tag, smuggled = tagged()
    assert_rejected(basic.port, post("/echo", framing, b"hello" + smuggled))
    assert_serves(basic.port)
    assert tag not in basic.logs()


@pytest.mark.parametrize(
    "framing",
    ["Content-Length: 5, 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n"],
    ids=["list", "two-lines"],
)
def test_identical_content_length_values(basic, framing):
    """6.3 (5): a Content-Length list whose values are all the same valid number is either
    processed with that number or rejected (400 and the close, RFC 9110 8.6)."""
    with raw_connection(basic.port) as sock:
        send(sock, post("/echo", framing, b"hello")
             + b"GET /anything HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reader = RawReader(sock)
        first = reader.read_response()
        if first.status == 400:
            assert first.raw_head.startswith(BAD_REQUEST)
            assert rest_until_close(reader) == b""
        else:
            assert (first.status, first.body) == (200, b"hello"), first.raw_head
            second = reader.read_response()
            assert (second.status, second.body) == (200, b"ok")
    assert_serves(basic.port)


@pytest.mark.parametrize(
    ("framing", "sent"),
    [("Content-Length: 10\r\n", b"abc"),
     ("Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n")],
    ids=["content-length", "chunked"],
)
def test_body_cut_short_is_incomplete_and_closes(basic, framing, sent):
    """6.3 (5), 8: when the client closes before the declared octets (or before the last
    chunk) arrive, the message is incomplete: the server MUST close the connection and must
    not hand the app those bytes as a complete body (it MAY answer with an error first)."""
    with raw_connection(basic.port) as sock:
        sock.sendall(post("/digest", framing, sent))
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(sock)  # fails with a timeout if the server keeps it open
    if data.startswith(b"HTTP/1.1 200"):
        digest = json.loads(data.partition(b"\r\n\r\n")[2])
        assert digest["messages"][-1]["type"] == "http.disconnect", digest
    assert_serves(basic.port)


def test_request_without_framing_has_no_body(basic):
    """6.3 (6): a request with neither Content-Length nor Transfer-Encoding has a body of
    length zero: what follows its head is the next request."""
    with raw_connection(basic.port) as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /status/203 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reader = RawReader(sock)
        first = reader.read_response()
        second = reader.read_response()
    assert json.loads(first.body)["length"] == 0
    assert second.status == 203


def test_interim_responses_carry_no_framing_fields(server):
    """6.1: a server MUST NOT send Transfer-Encoding in a 1xx response (nor Content-Length,
    RFC 9110 8.6): 100 Continue is exactly a status-line and an empty line."""
    srv = server.start("apps.receive_app:app")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = RawReader(sock)
        assert reader.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        final = reader.read_response()
    assert (final.status, final.body) == (200, b"hello")


def test_switching_protocols_carries_no_framing_fields(server):
    """6.1: no Transfer-Encoding in a 1xx response: the 101 that accepts a WebSocket has
    neither Transfer-Encoding nor Content-Length."""
    srv = server.start("apps.ws_app:app")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = RawReader(sock).read_head()
    assert head.raw_head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head.raw_head
    assert head.header("transfer-encoding") is None, head.raw_head
    assert head.header("content-length") is None, head.raw_head


def test_no_transfer_encoding_in_2xx_to_connect(basic):
    """6.1: a server MUST NOT send Transfer-Encoding in a 2xx response to CONNECT (nor
    Content-Length, RFC 9110 8.6): the connection becomes a tunnel after the head."""
    with raw_connection(basic.port) as sock:
        sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        reader = RawReader(sock)
        head = reader.read_head()
    assert head.raw_head.startswith(b"HTTP/1.1 200 OK\r\n"), head.raw_head
    assert head.header("transfer-encoding") is None, head.raw_head
    assert head.header("content-length") is None, head.raw_head
    assert_serves(basic.port)


# --- 9 connection management -----------------------------------------------------------------


def test_pipelined_responses_keep_request_order_behind_a_slow_one(basic):
    """9.3.2: a server MAY work on pipelined requests in parallel but MUST send the responses
    in the order the requests came: a slow streamed answer holds back the quick ones."""
    with raw_connection(basic.port) as sock:
        sock.sendall(b"GET /stream?delay=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /anything HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reader = RawReader(sock)
        got = [reader.read_response(method) for method in ("GET", "GET", "GET", "HEAD", "GET")]
        assert rest_until_close(reader) == b""
    assert [(r.status, r.body) for r in got] == [
        (200, HELLO), (200, b"ok"), (204, b""), (200, b""), (200, HELLO)]


@pytest.mark.parametrize(
    "framing",
    ["fixed-small", "fixed-1mib", "chunked"],
)
def test_unread_request_body_is_never_read_as_a_request(basic, framing):
    """9.3: a server MUST read the entire request body or close the connection after its
    response. The app at / never reads the body; the body holds a request that must not be
    answered, and the request after the body is either answered or cut by the close."""
    tag, smuggled = tagged()
    if framing == "chunked":
        request = post("/", "Transfer-Encoding: chunked\r\n",
                       b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n")
    else:
        body = b"x" * (1024 * 1024 if framing == "fixed-1mib" else 0) + smuggled
        request = post("/", f"Content-Length: {len(body)}\r\n", body)
    with raw_connection(basic.port) as sock:
        send(sock, request + b"GET /anything HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reader = RawReader(sock)
        first = reader.read_response()
        rest = rest_until_close(reader)
    assert (first.status, first.body) == (200, HELLO)
    assert rest == b"" or (rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok")
                           and rest.count(b"HTTP/1.1") == 1), rest[:300]
    assert_serves(basic.port)
    assert tag not in basic.logs()


@pytest.mark.parametrize(
    "option", ["close", "keep-alive, Close", "CLOSE"], ids=["close", "in-a-list", "uppercase"]
)
def test_client_close_option_ends_the_connection(basic, option):
    """9.6: a server that receives the "close" option MUST close after the response to that
    request and MUST NOT process further requests on the connection (options are
    case-insensitive and may come in a list)."""
    tag, smuggled = tagged()
    with raw_connection(basic.port) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: t\r\nConnection: {option}\r\n\r\n".encode()
                     + smuggled)
        reader = RawReader(sock)
        response = reader.read_response()
        assert rest_until_close(reader) == b""
    assert response.body == HELLO
    assert_serves(basic.port)
    assert tag not in basic.logs()


@pytest.mark.parametrize(
    "flags",
    [("--timeout-keep-alive", "0"), ("--header", "Connection: close")],
    ids=["no-persistence", "close-header"],
)
def test_server_close_option_ends_the_connection(server, flags):
    """9.3: a server without persistent connections MUST send "close" in every non-1xx
    response; 9.6: a server that sends "close" MUST close after that response and MUST NOT
    process further requests received on the connection."""
    srv = server.start(BASIC, *flags)
    tag, smuggled = tagged()
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled)
        reader = RawReader(sock)
        response = reader.read_response()
        assert rest_until_close(reader) == b""
    assert response.body == HELLO
    assert "close" in (response.header("connection") or "").lower(), response.raw_head
    assert_serves(srv.port)
    assert tag not in srv.logs()


def test_http10_connection_persists_only_when_said(basic):
    """9.3: an HTTP/1.0 connection persists only when the request carries the "keep-alive"
    option and the server chooses to honour it, which an HTTP/1.0 client learns from a
    keep-alive in the response (Appendix C.2.2); otherwise the server closes after the
    response. The second request has no keep-alive: the connection ends after it."""
    with raw_connection(basic.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                     b"GET /anything HTTP/1.0\r\n\r\n")
        reader = RawReader(sock)
        first = reader.read_response()
        assert first.body == HELLO
        if "keep-alive" in (first.header("connection") or "").lower():
            second = reader.read_response()
            assert (second.status, second.body) == (200, b"ok")
            assert "keep-alive" not in (second.header("connection") or "").lower()
        assert rest_until_close(reader) == b""
