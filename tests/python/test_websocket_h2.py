"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket` opens the
same ASGI WebSocket session as an HTTP/1.1 upgrade, its frames carried in the stream's DATA.
Browsers use it when the page itself came over HTTP/2. Driven with the `h2` library over a
raw socket (h2c by prior knowledge), WebSocket frames built here."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from conftest import wait_app_event
from h2client import h2_connection, h2_pump
from pki import tls_flags

pytestmark = pytest.mark.timeout(60)

APP = "apps.ws_app:app"


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 5.2), FIN set."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole server frames (unmasked) at the start of `data`, and the bytes left over."""
    frames = []
    while len(data) >= 2:
        first, second = data[0], data[1]
        assert not second & 0x80, "a server frame is never masked"
        n, at = second & 0x7F, 2
        if n == 126:
            if len(data) < 4:
                break
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                break
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + n:
            break
        frames.append((first & 0x0F, data[at:at + n]))
        data = data[at + n:]
    return frames, data


def h2_tls_context(pki) -> ssl.SSLContext:
    """A client context that trusts the test CA and offers "h2" alone by ALPN."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.set_alpn_protocols(["h2"])
    return context


def h2_tls_connection(port: int, context: ssl.SSLContext):
    """(TLS socket, h2 connection) with the preface sent, after checking the server chose h2
    by ALPN."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    sock.settimeout(10)
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


class WebSocketStream:
    """A WebSocket on one HTTP/2 stream: extended CONNECT, then frames in DATA."""

    def __init__(self, srv, path: str, tls: ssl.SSLContext | None = None) -> None:
        """Over h2c by prior knowledge; with `tls`, over TLS with ALPN "h2" (a context from
        h2_tls_context), as browsers open wss:// on a page that came over HTTP/2."""
        self.sock, self.conn = h2_connection(srv.port) if tls is None \
            else h2_tls_connection(srv.port, tls)
        settings = h2_pump(self.sock, self.conn, lambda ev: any(
            isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
        changed = next(e for e in settings if isinstance(e, h2.events.RemoteSettingsChanged))
        assert changed.changed_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] \
            .new_value == 1, "the server allows extended CONNECT (RFC 8441 3)"
        self.stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream, [
            (":method", "CONNECT"), (":protocol", "websocket"),
            (":scheme", "http" if tls is None else "https"),
            (":path", path), (":authority", "t"), ("sec-websocket-version", "13")])
        self.sock.sendall(self.conn.data_to_send())
        self.buffer = b""
        self.ended = False
        events = self.pump(lambda ev: any(isinstance(e, h2.events.ResponseReceived)
                                          for e in ev))
        response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        self.headers = dict(response.headers)

    def pump(self, until) -> list:
        """Reads until `until(events)`; keeps this stream's DATA and whether it ended."""
        def done(events):
            for e in events[len(seen):]:
                seen.append(e)
                if isinstance(e, h2.events.DataReceived) and e.stream_id == self.stream:
                    self.buffer += e.data
                if isinstance(e, h2.events.StreamEnded) and e.stream_id == self.stream:
                    self.ended = True
            return until(seen)
        seen: list = []
        return h2_pump(self.sock, self.conn, done)

    def send(self, opcode: int, payload: bytes) -> None:
        frame = ws_frame(opcode, payload)
        step = self.conn.max_outbound_frame_size
        for at in range(0, len(frame), step):
            self.conn.send_data(self.stream, frame[at:at + step])
        self.sock.sendall(self.conn.data_to_send())

    def recv(self, count: int = 1) -> list[tuple[int, bytes]]:
        """The next `count` frames from the server."""
        frames: list[tuple[int, bytes]] = []

        def enough(_events) -> bool:
            got, self.buffer = split_frames(self.buffer)
            frames.extend(got)
            return len(frames) >= count

        if not enough([]):
            self.pump(enough)
        return frames


def test_echo_and_close_over_an_http2_stream(server):
    srv = server.start(APP)
    ws = WebSocketStream(srv, "/echo")
    assert ws.headers[b":status"] == b"200"  # RFC 8441 5: 200, no Sec-WebSocket-Accept
    assert b"sec-websocket-accept" not in ws.headers
    ws.send(0x1, "héllo".encode())
    ws.send(0x2, b"\x00\xff" * 40_000)  # past the stream's first flow-control window
    assert ws.recv(2) == [(0x1, "héllo".encode()), (0x2, b"\x00\xff" * 40_000)]
    ws.send(0x8, struct.pack("!H", 4002) + b"done")
    assert ws.recv() == [(0x8, struct.pack("!H", 4002) + b"done")], "the close is answered"
    ws.pump(lambda _: ws.ended)  # and the stream ends after it
    assert wait_app_event(srv, "echo-disconnect") == "4002 done"
    ws.sock.close()


def test_scope_of_a_websocket_over_http2(server):
    srv = server.start(APP)
    ws = WebSocketStream(srv, "/scope?x=1")
    (opcode, payload), = ws.recv()
    scope = json.loads(payload)
    assert opcode == 0x1
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["query_string"] == "x=1"
    assert ["host", "t"] in scope["headers"]
    assert not any(name.startswith(":") for name, _ in scope["headers"])
    ws.sock.close()


def test_websocket_and_requests_share_one_connection(server):
    """The session is one stream: requests on the same connection go on beside it."""
    srv = server.start(APP)
    ws = WebSocketStream(srv, "/echo")
    get = ws.conn.get_next_available_stream_id()
    ws.conn.send_headers(get, [(":method", "GET"), (":path", "/events"), (":scheme", "http"),
                               (":authority", "t")], end_stream=True)
    ws.send(0x1, b"still here")
    seen = ws.pump(lambda ev: any(
        isinstance(e, h2.events.StreamEnded) and e.stream_id == get for e in ev))
    assert any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == get
               and (b":status", b"200") in e.headers for e in seen)
    assert ws.recv() == [(0x1, b"still here")]
    ws.sock.close()


def test_rejected_websocket_over_http2_gets_403(server):
    srv = server.start(APP)
    ws = WebSocketStream(srv, "/reject")
    assert ws.headers[b":status"] == b"403"
    ws.sock.close()


def test_echo_over_http2_over_tls(server, pki):
    """wss:// as a browser opens it on a page that came over HTTP/2: TLS with ALPN "h2",
    then an RFC 8441 extended CONNECT. The scope says scheme "wss" and http_version "2",
    text and binary frames come back exactly, and the close is answered with its code and
    reason, the app seeing that disconnect."""
    srv = server.start(APP, *tls_flags(pki))
    context = h2_tls_context(pki)

    ws = WebSocketStream(srv, "/scope?over=tls", tls=context)
    assert ws.headers[b":status"] == b"200"
    (opcode, payload), = ws.recv()
    scope = json.loads(payload)
    ws.sock.close()
    assert opcode == 0x1
    assert (scope["type"], scope["scheme"], scope["http_version"], scope["path"],
            scope["query_string"]) == ("websocket", "wss", "2", "/scope", "over=tls")
    assert scope["headers"] == [["sec-websocket-version", "13"], ["host", "t"]]

    ws = WebSocketStream(srv, "/echo", tls=context)
    assert ws.headers[b":status"] == b"200"
    ws.send(0x1, "héllo over tls".encode())
    ws.send(0x2, bytes(range(256)) * 300)  # past the stream's first flow-control window
    assert ws.recv(2) == [(0x1, "héllo over tls".encode()), (0x2, bytes(range(256)) * 300)]
    ws.send(0x8, struct.pack("!H", 4002) + b"done")
    assert ws.recv() == [(0x8, struct.pack("!H", 4002) + b"done")], "the close is answered"
    ws.pump(lambda _: ws.ended)
    ws.sock.close()
    srv.wait_for_log("echo-disconnect 4002 done", timeout=5)
