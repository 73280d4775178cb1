"""`http.response.trailers` (django/asgiref docs/extensions.rst): trailer fields after the
body. Offered, and sent, over HTTP/2 always and over HTTP/1.1 when the request says
`TE: trailers` (then in the chunked body, as the response's `Trailer` header lists them)."""

from __future__ import annotations

import h2.events
import pytest
from conftest import http_client, raw_connection, recv_until_closed
from h2client import h2_connection, h2_get, h2_pump

pytestmark = pytest.mark.timeout(60)

APP = "apps.trailers_app:app"


def h1(srv, path: str, te: bool) -> bytes:
    with raw_connection(srv.port) as sock:
        extra = "TE: trailers\r\n" if te else ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
                     .encode())
        return recv_until_closed(sock)


def test_http11_with_te_trailers_gets_them_after_the_last_chunk(server):
    srv = server.start(APP)
    reply = h1(srv, "/trailers", te=True)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\nx-checksum: abc123\r\nx-count: 2\r\n\r\n"


def test_http11_without_te_gets_the_body_alone(server):
    srv = server.start(APP)
    body = h1(srv, "/trailers", te=False).partition(b"\r\n\r\n")[2]
    assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"


def test_http2_trailers_end_the_stream(server):
    srv = server.start(APP)
    sock, conn = h2_connection(srv.port)
    with sock:
        stream = h2_get(conn, "/trailers")
        sock.sendall(conn.data_to_send())
        events = h2_pump(sock, conn, lambda ev: any(
            isinstance(e, h2.events.StreamEnded) for e in ev))
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
    assert body == b"hello world"
    assert len(trailers) == 1 and trailers[0].stream_id == stream
    assert trailers[0].headers == [(b"x-checksum", b"abc123"), (b"x-count", b"2")]


def test_the_extension_is_offered_where_trailers_reach_the_client(server):
    srv = server.start(APP)
    with http_client() as c:
        assert "http.response.trailers" not in c.get(f"{srv.url}/extensions").json()
        offered = c.get(f"{srv.url}/extensions", headers={"TE": "trailers"}).json()
        assert "http.response.trailers" in offered
    sock, conn = h2_connection(srv.port)
    with sock:
        h2_get(conn, "/extensions")
        sock.sendall(conn.data_to_send())
        events = h2_pump(sock, conn, lambda ev: any(
            isinstance(e, h2.events.StreamEnded) for e in ev))
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert b'"http.response.trailers"' in body


def test_unannounced_trailers_are_an_app_error(server):
    srv = server.start(APP)
    with http_client() as c:
        assert c.get(f"{srv.url}/unannounced").text == "done"
        assert c.get(f"{srv.url}/errors").json() == [
            "Unexpected ASGI message 'http.response.trailers' sent without 'trailers': True "
            "in 'http.response.start'."]
