"""`http.response.early_hint` (django/asgiref docs/extensions.rst, RFC 8297): a 103 Early
Hints with the app's `Link` fields, before the final response. Offered to HTTP/1.1 and
HTTP/2 clients, plain and TLS; not to HTTP/1.0 ones, which take no 1xx (RFC 9110 15.2)."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
from conftest import http_client, raw_connection, recv_until_closed
from pki import tls_flags

pytestmark = pytest.mark.timeout(60)

APP = "apps.hints_app:app"
STYLE = b"</style.css>; rel=preload; as=style"
SCRIPT = b"</app.js>; rel=preload; as=script"
HINT_103 = (b"HTTP/1.1 103 Early Hints\r\nlink: " + STYLE + b"\r\nlink: " + SCRIPT
            + b"\r\n\r\n")


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}; got {data!r}"
        data += chunk
    return data


def hinted_exchange(sock, form: str) -> tuple[bytes, bytes]:
    """The 103 the app sends before it reads the body (so before it can answer), then the
    rest once the body is sent."""
    sock.sendall(f"POST /hint?form={form} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                 "Connection: close\r\n\r\n".encode())
    interim = recv_until(sock, b"\r\n\r\n")
    sock.sendall(b"5\r\nhello\r\n0\r\n\r\n")
    return interim, recv_until_closed(sock)


@pytest.mark.parametrize("form", ["list", "tuple", "generator", "bytearray", "memoryview",
                                  "str"])
def test_the_103_goes_out_while_the_app_works(server, form):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        interim, rest = hinted_exchange(sock, form)
    assert interim == HINT_103
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nlink: " + STYLE + b"\r\n" in head
    assert body == b"got hello"


def test_over_tls(server, pki):
    srv = server.start(APP, *tls_flags(pki))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.set_alpn_protocols(["http/1.1"])
    with context.wrap_socket(raw_connection(srv.port), server_hostname="127.0.0.1") as sock:
        interim, rest = hinted_exchange(sock, "list")
    assert interim == HINT_103
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"got hello")


def test_keep_alive_and_pipelined_requests_each_get_theirs_in_order(server):
    srv = server.start(APP)
    request = b"GET /twice HTTP/1.1\r\nHost: t\r\n\r\n"
    with raw_connection(srv.port) as sock:
        sock.sendall(request)
        first = recv_until(sock, b"twice")
        # Two more at once: pipelined behind each other.
        sock.sendall(request + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        rest = recv_until_closed(sock)
    one = (b"HTTP/1.1 103 Early Hints\r\nlink: " + STYLE + b"\r\n\r\n"
           + b"HTTP/1.1 103 Early Hints\r\nlink: " + SCRIPT + b"\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert first.startswith(one)
    assert rest.count(b"HTTP/1.1 103 Early Hints\r\n") == 4
    second, third = rest.split(b"twice")[:2]
    assert second.startswith(one) and third.startswith(one)


def test_a_hint_after_the_start_message_still_precedes_the_head(server):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /after-start HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reply = recv_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: " + STYLE
                            + b"\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nlate head")


def test_a_hint_after_the_head_went_out_is_dropped(server):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /after-body HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reply = recv_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b" 103 " not in reply
    assert reply.endswith(b"6\r\nfirst \r\n4\r\nlast\r\n0\r\n\r\n")


#: What one request may send (engine/service.rs MAX_EARLY_HINTS).
MAX_HINTS = 16


def test_hints_past_the_cap_are_dropped_and_the_answer_still_comes(server):
    """An app that sends hints without end must not make the server queue 103s without
    end: the first 16 go out in order, the rest are dropped with a debug line."""
    srv = server.start(APP, "--log-level", "debug")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /many?n=40 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reply = recv_until_closed(sock)
    hints = b"".join(b"HTTP/1.1 103 Early Hints\r\nlink: </%d.js>; rel=preload\r\n\r\n" % i
                     for i in range(MAX_HINTS))
    assert reply.startswith(hints + b"HTTP/1.1 200 OK\r\n")
    assert reply.count(b" 103 ") == MAX_HINTS and reply.endswith(b"\r\n\r\nmany")
    srv.wait_for_log(f"early hints past {MAX_HINTS} for one request dropped", timeout=5)


def test_http10_clients_get_no_103_and_no_offer(server):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /twice HTTP/1.0\r\nHost: t\r\n\r\n")
        reply = recv_until_closed(sock)
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n") and reply.endswith(b"\r\n\r\ntwice")
    assert b" 103 " not in reply
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /extensions HTTP/1.0\r\nHost: t\r\n\r\n")
        assert b"http.response.early_hint" not in recv_until_closed(sock)
    with http_client() as c:
        assert "http.response.early_hint" in c.get(f"{srv.url}/extensions").json()


def test_clients_that_ignore_1xx_get_the_final_response(server):
    srv = server.start(APP)
    with http_client() as c:
        r = c.get(f"{srv.url}/twice")
        assert (r.status_code, r.text) == (200, "twice")
        r = c.post(f"{srv.url}/hint?form=tuple", content=b"abc")
        assert (r.status_code, r.text) == (200, "got abc")


def test_curl_sees_the_103(server):
    srv = server.start(APP)
    out = subprocess.run(["curl", "-sS", "-i", f"{srv.url}/twice"], capture_output=True,
                         timeout=30, check=True).stdout
    assert out.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: " + STYLE + b"\r\n\r\n")
    assert b"HTTP/1.1 200 OK\r\n" in out and out.endswith(b"twice")


@pytest.mark.parametrize(("case", "error"), [
    ("missing", "ASGI 'http.response.early_hint' has no 'links'; give an iterable of Link "
                "field values as bytes, e.g. [b'</style.css>; rel=preload; as=style']."),
    ("single", "ASGI 'http.response.early_hint' links must be an iterable of Link field "
               "values (bytes), got bytes: b'</style.css>; rel=preload; as=style'."),
    ("crlf", "Invalid Link value \"</a.css>\\r\\nx-injected: 1\" in ASGI "
             "'http.response.early_hint': control characters such as CR, LF or NUL are not "
             "allowed."),
    ("int", "ASGI 'http.response.early_hint' header link value must be bytes, got int: 1."),
])
def test_malformed_hints_are_an_app_error_and_send_nothing(server, case, error):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET /bad?case={case} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                     .encode())
        reply = recv_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"recorded")
    with http_client() as c:
        assert c.get(f"{srv.url}/errors").json() == [error]


def h2_exchange(port: int, paths: list[str], tls_context=None) -> list:
    """The events of GETs of `paths` on one HTTP/2 connection, until every stream ended."""
    import h2.events
    from h2client import h2_connection, h2_get, h2_pump

    sock, conn = h2_connection(port)
    with sock:
        for path in paths:
            h2_get(conn, path)
        sock.sendall(conn.data_to_send())
        return h2_pump(sock, conn, lambda ev: sum(
            isinstance(e, h2.events.StreamEnded) for e in ev) == len(paths))


def test_http2_sends_each_hint_as_an_informational_head_before_the_response(server):
    import h2.events

    srv = server.start(APP)
    events = h2_exchange(srv.port, ["/twice", "/extensions", "/after-body"])
    twice, ext, after_body = 1, 3, 5
    on = {s: [e for e in events if getattr(e, "stream_id", None) == s]
          for s in (twice, ext, after_body)}
    kinds = [type(e).__name__ for e in on[twice]]
    assert kinds[:3] == ["InformationalResponseReceived", "InformationalResponseReceived",
                         "ResponseReceived"]
    assert on[twice][0].headers == [(b":status", b"103"), (b"link", STYLE)]
    assert on[twice][1].headers == [(b":status", b"103"), (b"link", SCRIPT)]
    assert b"".join(e.data for e in on[twice] if isinstance(e, h2.events.DataReceived)) \
        == b"twice"
    assert b"http.response.early_hint" in b"".join(
        e.data for e in on[ext] if isinstance(e, h2.events.DataReceived))
    assert not [e for e in on[after_body]
                if isinstance(e, h2.events.InformationalResponseReceived)]


def test_http2_hints_past_the_cap_are_dropped(server):
    import h2.events

    srv = server.start(APP)
    events = h2_exchange(srv.port, ["/many?n=40"])
    hints = [e.headers for e in events if isinstance(e, h2.events.InformationalResponseReceived)]
    assert hints == [[(b":status", b"103"), (b"link", b"</%d.js>; rel=preload" % i)]
                     for i in range(MAX_HINTS)]
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"many"


def test_http2_over_tls_the_103_arrives_while_the_app_works(server, pki):
    """Browsers act on 103 over HTTP/2 only: with ALPN h2, the hint comes before the app
    has the request body, so before it can answer."""
    import h2.config
    import h2.connection
    import h2.events

    srv = server.start(APP, *tls_flags(pki))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(raw_connection(srv.port), server_hostname="127.0.0.1") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":path", "/hint?form=generator"),
                              (":scheme", "https"), (":authority", "t")])
        sock.sendall(conn.data_to_send())

        def until(kind):
            seen = []
            while not any(isinstance(e, kind) for e in seen):
                data = sock.recv(65536)
                assert data, f"closed; got {seen}"
                seen += conn.receive_data(data)
                sock.sendall(conn.data_to_send())
            return seen

        hint = [e for e in until(h2.events.InformationalResponseReceived)
                if isinstance(e, h2.events.InformationalResponseReceived)][0]
        assert hint.headers == [(b":status", b"103"), (b"link", STYLE), (b"link", SCRIPT)]
        conn.send_data(1, b"tls", end_stream=True)
        sock.sendall(conn.data_to_send())
        rest = until(h2.events.StreamEnded)
    assert b"".join(e.data for e in rest if isinstance(e, h2.events.DataReceived)) \
        == b"got tls"


def test_httpx_over_http2_gets_the_final_response(server, pki):
    import httpx

    srv = server.start(APP, *tls_flags(pki))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=10.0) as c:
        r = c.get(f"https://127.0.0.1:{srv.port}/twice")
        assert (r.http_version, r.status_code, r.text) == ("HTTP/2", 200, "twice")
