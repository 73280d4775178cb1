"""A small HTTP/2 client for the end-to-end tests: the `h2` library driven over a plain socket
(h2c by prior knowledge), plus raw frames built by hand for what `h2` refuses to send.

    sock, conn = h2_connection(port)          # preface + SETTINGS sent
    stream = h2_get(conn, "/path")            # queued; send with sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, until)       # read, acknowledging DATA, until until(events)

    raw_frame(type, flags, stream, payload)   # one frame's bytes (RFC 9113 4.1)
    FrameReader(sock).next()                  # (type, flags, stream, payload) or None at EOF
"""

from __future__ import annotations

import socket
import struct

import httpx
from conftest import raw_connection

#: Frame types (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
#: Flags.
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
#: Error codes (RFC 9113 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, \
    ENHANCE_YOUR_CALM = range(12)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_connection(port: int, timeout: float = 10.0, **settings):
    """A raw HTTP/2 client over a plain socket (prior knowledge), with the `h2` library;
    `settings` (e.g. initial_window_size=0) go into the client's first SETTINGS frame.
    Returns (socket, h2.connection.H2Connection) with the preface already sent."""
    import h2.config
    import h2.connection
    import h2.settings

    sock = raw_connection(port, timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    if settings:
        # Values in place from the start (not pending until the server acknowledges them).
        values = dict(conn.local_settings.items())
        values.update({getattr(h2.settings.SettingCodes, name.upper()): value
                       for name, value in settings.items()})
        conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_get(conn, path: str, end_stream: bool = True, method: str = "GET",
           extra: list[tuple[str, str]] | None = None) -> int:
    """Queues a request on the next stream (no body: END_STREAM on the HEADERS unless
    `end_stream` is false); returns its stream id. The caller sends conn.data_to_send()."""
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", method), (":path", path), (":scheme", "http"),
                               (":authority", "t"), *(extra or [])], end_stream=end_stream)
    return stream


def h2_pump(sock, conn, until, timeout: float = 10.0, acknowledge: bool = True) -> list:
    """Reads frames until `until(events)` holds; returns the events. DATA is acknowledged
    (WINDOW_UPDATE) as it arrives unless `acknowledge` is false. An EOF before `until`
    holds fails the caller with the events seen so far."""
    import h2.events

    events: list = []
    sock.settimeout(timeout)
    while not until(events):
        data = sock.recv(65536)
        assert data, f"connection closed; events: {events}"
        for event in conn.receive_data(data):
            events.append(event)
            if acknowledge and isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    return events


def raw_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) \
        + payload


class FrameReader:
    """Splits what a server sends into frames, for clients that speak raw frames."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0

    def _frame(self) -> tuple[int, int, int, bytes] | None:
        """The next whole frame already received, if any."""
        if len(self.buf) - self.pos < 9:
            return None
        length = int.from_bytes(self.buf[self.pos:self.pos + 3], "big")
        if len(self.buf) - self.pos < 9 + length:
            return None
        kind, flags, stream = struct.unpack_from(">BBI", self.buf, self.pos + 3)
        payload = bytes(self.buf[self.pos + 9:self.pos + 9 + length])
        self.pos += 9 + length
        return kind, flags, stream & 0x7FFFFFFF, payload

    def next(self) -> tuple[int, int, int, bytes] | None:
        """The next frame as (type, flags, stream id, payload); None once the server closed
        (EOF or reset) before a whole frame arrived. socket.timeout propagates."""
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            del self.buf[:self.pos]
            self.pos = 0
            try:
                data = self.sock.recv(262144)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data

    def until_closed(self) -> list[tuple[int, int, int, bytes]]:
        """Every frame until the server closes the connection."""
        frames = []
        while (frame := self.next()) is not None:
            frames.append(frame)
        return frames


def goaway_error(payload: bytes) -> tuple[int, int]:
    """(last stream id, error code) of a GOAWAY payload."""
    last, code = struct.unpack(">II", payload[:8])
    return last & 0x7FFFFFFF, code


def rss_kib(srv) -> int:
    """The server process's resident memory, in KiB."""
    with open(f"/proc/{srv.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def assert_serves(srv) -> None:
    """The server is up and a fresh HTTP/2 client gets a normal answer."""
    assert srv.alive(), srv.logs()
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        response = http.get(srv.url + "/")
    assert (response.http_version, response.status_code, response.text) == \
        ("HTTP/2", 200, "Hello, world!")
