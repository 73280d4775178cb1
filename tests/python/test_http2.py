"""HTTP/2 under abuse and at its limits, end to end over h2c (prior knowledge on the plain TCP
port): CONTINUATION, SETTINGS and PING floods, an oversized header list, a stream whose body
never comes, flow control in both directions, --cancel-on-disconnect on RST_STREAM,
--limit-concurrency counting streams, SIGTERM with streams in flight, and connection-specific
response headers.

Clients: the `h2` library over a raw socket (tests/python/h2client.py), or raw frames built
by hand where `h2` refuses to send them. Served app: tests/apps/basic.py. Memory is the
server's VmRSS (a single process: no --workers here).
"""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import h2.events
import hpack
import httpx
import pytest
from conftest import raw_connection, recv_until_closed
from h2client import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FrameReader,
    assert_serves,
    goaway_error,
    h2_connection,
    h2_get,
    h2_pump,
    raw_frame,
    rss_kib,
)
from pki import tls_flags

pytestmark = pytest.mark.timeout(60)

BASIC = "apps.basic:app"
MIB = 1024 * 1024
#: The initial flow-control window of an HTTP/2 peer that announces none (RFC 9113 6.9.2).
DEFAULT_WINDOW = 65535


# --- helpers ------------------------------------------------------------------------------------


def access_lines(srv) -> list[str]:
    return [line for line in srv.logs().splitlines() if " HTTP/2\" " in line]


@dataclass
class Answer:
    """What one stream received, from the `h2` events of its connection."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None


def answer(events: list, stream: int) -> Answer:
    result = Answer()
    for event in events:
        if getattr(event, "stream_id", None) != stream:
            continue
        if isinstance(event, h2.events.ResponseReceived):
            result.headers = {k.decode(): v.decode() for k, v in event.headers}
            result.status = int(result.headers.pop(":status"))
        elif isinstance(event, h2.events.DataReceived):
            result.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            result.ended = True
        elif isinstance(event, h2.events.StreamReset):
            result.reset = event.error_code
    return result


def ended(*streams: int):
    """An h2_pump condition: each of `streams` ended (END_STREAM) or was reset."""
    def check(events: list) -> bool:
        done = {e.stream_id for e in events
                if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))}
        return set(streams) <= done
    return check


def reset(stream: int):
    """An h2_pump condition: `stream` was reset by the server."""
    def check(events: list) -> bool:
        return any(isinstance(e, h2.events.StreamReset) and e.stream_id == stream
                   for e in events)
    return check


def request_block(encoder: hpack.Encoder, path: str, method: str = "GET") -> bytes:
    return encoder.encode([(":method", method), (":path", path), (":scheme", "http"),
                           (":authority", "t")])


def hpack_int(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with a zero first-byte pattern."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal_field(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, no Huffman (RFC 7541 6.2.2): hpack's own
    encoder is far too slow for megabytes."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def frames_until_closed(sock: socket.socket, timeout: float = 5.0) -> list:
    reader = FrameReader(sock)
    sock.settimeout(timeout)
    frames: list = []
    try:
        while (frame := reader.next()) is not None:
            frames.append(frame)
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open {timeout}s; "
                             f"frames: {[f[:3] for f in frames]}") from None
    return frames


# --- 1. CONTINUATION flood ------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["10k-empty-frames", "10MiB-header-block"])
def test_continuation_flood_ends_the_connection_with_enhance_your_calm(server, shape):
    """A HEADERS frame without END_HEADERS, then CONTINUATION frames without end (the 2024
    CONTINUATION flood): the server answers GOAWAY(ENHANCE_YOUR_CALM) naming no stream as
    processed and closes the connection, holding no more than a few frames' worth; the app
    never sees the request and others are served."""
    srv = server.start(BASIC)
    before = rss_kib(srv)
    sock = raw_connection(srv.port)
    encoder = hpack.Encoder()
    sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0)
                 + raw_frame(HEADERS, END_STREAM, 1, request_block(encoder, "/anything?flood")))
    if shape == "10k-empty-frames":
        frames = [raw_frame(CONTINUATION, 0, 1)] * 10_000
    else:
        block = literal_field(b"x-flood", b"a" * (10 * MIB))
        frames = [raw_frame(CONTINUATION, 0, 1, block[i:i + 16384])
                  for i in range(0, len(block), 16384)]
    try:
        for frame in frames:
            sock.sendall(frame)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server already closed: what this test expects
    received = frames_until_closed(sock)
    sock.close()
    grown = rss_kib(srv) - before

    goaways = [goaway_error(payload) for kind, _, _, payload in received if kind == GOAWAY]
    assert goaways == [(0, ENHANCE_YOUR_CALM)], received
    assert [f for f in received if f[2] != 0] == [], "nothing may answer stream 1"
    assert grown < 16 * 1024, f"the server's RSS grew by {grown} KiB"
    assert_serves(srv)
    assert not any("flood" in line for line in access_lines(srv))


# --- 2. SETTINGS and PING floods ------------------------------------------------------------


#: Each flood: one frame, repeated. SETTINGS carries SETTINGS_INITIAL_WINDOW_SIZE = 65535
#: (the default, so nothing changes); the counts are well past what the kernel's socket
#: buffers absorb on loopback.
FLOODS = {
    "settings": (raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, DEFAULT_WINDOW)), 1_500_000),
    "ping": (raw_frame(PING, 0, 0, b"flood!!!"), 1_000_000),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_settings_and_ping_floods_are_answered_at_the_pace_the_client_reads(server, kind):
    """Observed behaviour: every SETTINGS and PING of a flood gets its ACK (no GOAWAY, no
    close), but only as fast as the client reads them: a client that does not read finds the
    server has stopped reading too (its own sends block) instead of queueing ACKs in memory.
    Once it reads, the same connection serves a request."""
    srv = server.start(BASIC)
    frame, count = FLOODS[kind]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # ACKs back up quickly
    sock.settimeout(20)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0))
    before = rss_kib(srv)

    blob = memoryview(frame * count)
    sent = [0]

    def send_all() -> None:
        while sent[0] < len(blob):
            sent[0] += sock.send(blob[sent[0]:sent[0] + 65536])

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    last, deadline = -1, time.monotonic() + 8
    while sent[0] != last and sender.is_alive() and time.monotonic() < deadline:
        last = sent[0]
        time.sleep(0.5)
    assert sender.is_alive() and sent[0] < len(blob), \
        f"the server took all {len(blob)} bytes without the client reading a single ACK"
    grown = rss_kib(srv) - before
    assert grown < 8 * 1024, f"the server's RSS grew by {grown} KiB"

    reader = FrameReader(sock)
    control: Counter = Counter()
    wanted = (SETTINGS, ACK) if kind == "settings" else (PING, ACK)
    expected = count + 1 if kind == "settings" else count  # + the ACK of the preface's
    while control[wanted] < expected:
        received = reader.next()
        assert received is not None, f"closed after {dict(control)}; logs:\n{srv.logs()}"
        kind_, flags, stream, payload = received
        if kind_ == PING:
            assert payload == b"flood!!!"
        if kind_ in (SETTINGS, PING, GOAWAY, RST_STREAM):
            control[(kind_, flags)] += 1
    sender.join(10)
    assert not sender.is_alive()

    # The same connection still serves a request.
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    sock.sendall(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(encoder, "/")))
    status, body = None, b""
    while True:
        received = reader.next()
        assert received is not None, f"closed after {dict(control)}"
        kind_, flags, stream, payload = received
        if kind_ in (SETTINGS, PING, GOAWAY, RST_STREAM):
            control[(kind_, flags)] += 1
        elif kind_ == HEADERS and stream == 1:
            status = dict(decoder.decode(payload))[":status"]
        elif stream == 1:
            body += payload
        if stream == 1 and flags & END_STREAM:
            break
    sock.close()
    expected_control = {(SETTINGS, 0): 1, (SETTINGS, ACK): 1}
    expected_control[wanted] = expected
    assert dict(control) == expected_control
    assert (status, body) == ("200", b"Hello, world!")
    assert_serves(srv)


# --- 3. header list over the limit -----------------------------------------------------------


@pytest.mark.parametrize("body_pending", [False, True], ids=["no-body", "body-pending"])
def test_header_list_over_the_limit_gets_431_and_the_connection_goes_on(server, body_pending):
    """--h2-max-header-list-size 8192 (SETTINGS_MAX_HEADER_LIST_SIZE): a 10 KB header gets a
    bare 431 on its stream (the app never sees it); when the client still had a body to
    send, RST_STREAM(PROTOCOL_ERROR) follows. A 7 KB header on the same connection is
    served."""
    srv = server.start(BASIC, "--h2-max-header-list-size", "8192")
    sock, conn = h2_connection(srv.port)
    over = h2_get(conn, "/anything?over", method="POST" if body_pending else "GET",
                  end_stream=not body_pending, extra=[("x-big", "a" * 10_000)])
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, reset(over) if body_pending else ended(over))
    under = h2_get(conn, "/anything?under", extra=[("x-big", "a" * 7_000)])
    sock.sendall(conn.data_to_send())
    events += h2_pump(sock, conn, ended(under))
    sock.close()

    refused = answer(events, over)
    assert (refused.status, refused.body, refused.ended) == (431, b"", True)
    assert refused.reset == (PROTOCOL_ERROR if body_pending else None)
    served = answer(events, under)
    assert (served.status, served.body, served.reset) == (200, b"ok", None)
    assert not any("over" in line for line in access_lines(srv))
    assert_serves(srv)


# --- 4. a stream whose body never comes ------------------------------------------------------


def test_stalled_small_body_times_out_with_408_and_spares_the_other_streams(server):
    """HEADERS with content-length: 10 and no END_STREAM, then nothing. A body this small is
    read before the app runs, within --timeout-request-body (1 s here); when it does not come
    the stream is answered 408 Request Timeout (RFC 9110 15.5.9) and reset with NO_ERROR,
    while another stream on the same connection and other clients are served meanwhile."""
    srv = server.start(BASIC, "--timeout-request-body", "1", "--log-level", "debug")
    sock, conn = h2_connection(srv.port)
    stalled = h2_get(conn, "/echo", method="POST", end_stream=False,
                     extra=[("content-length", "10")])
    other = h2_get(conn, "/stream?delay=0.2")
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    events = h2_pump(sock, conn, ended(other))
    assert_serves(srv)
    events += h2_pump(sock, conn, ended(stalled))
    elapsed = time.monotonic() - started
    if not reset(stalled)(events):
        events += h2_pump(sock, conn, reset(stalled))
    sock.close()

    assert answer(events, other).body == b"Hello, world!"
    timed_out = answer(events, stalled)
    assert 0.9 <= elapsed < 3.0, f"answered after {elapsed:.2f}s"
    assert (timed_out.status, timed_out.ended, timed_out.reset) == (408, True, NO_ERROR), \
        (timed_out, srv.logs())
    srv.wait_for_log("timed out reading the request body", timeout=5)


def test_stalled_body_without_length_is_ended_by_the_request_timeout(server):
    """HEADERS without content-length or END_STREAM, then nothing: the app waits in
    receive(). Nothing but --timeout-request ends it (here 1 s): 504, the task cancelled;
    the other stream on the connection was served meanwhile."""
    srv = server.start(BASIC, "--timeout-request", "1", "--log-level", "debug")
    sock, conn = h2_connection(srv.port)
    stalled = h2_get(conn, "/echo", method="POST", end_stream=False)
    other = h2_get(conn, "/stream?delay=0.2")
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    events = h2_pump(sock, conn, ended(other, stalled))
    elapsed = time.monotonic() - started
    sock.close()

    assert answer(events, other).body == b"Hello, world!"
    timed_out = answer(events, stalled)
    assert 0.9 <= elapsed < 3.0, f"answered after {elapsed:.2f}s"
    assert (timed_out.status, timed_out.ended) == (504, True), timed_out
    assert timed_out.body.startswith(b"Gateway Timeout"), timed_out.body
    srv.wait_for_log("Request task cancelled: POST /echo")
    # The access line is written after the 504 goes out, by the log's writer thread.
    srv.wait_for_log('"POST /echo HTTP/2" 504', timeout=5)
    assert_serves(srv)


# --- 5. flow control bounds memory -----------------------------------------------------------


def read_granting_nothing(sock: socket.socket, conn, seconds: float) -> list:
    """The events of `seconds` of reading, sending nothing back (no WINDOW_UPDATE)."""
    events: list = []
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert data, "connection closed"
        events += conn.receive_data(data)
    return events


def progress(srv) -> dict:
    with httpx.Client(trust_env=False, timeout=10) as http:
        return http.get(srv.url + "/progress").json()


def test_a_client_that_grants_no_window_pauses_a_200_mib_response(server):
    """A client that never sends WINDOW_UPDATE gets exactly its initial 65,535-byte window of
    a 200 MiB response; the app's send() is paused by backpressure (it has handed over only
    a bounded amount) and the server's memory does not grow. Opening the window resumes the
    flow."""
    srv = server.start(BASIC)
    before = rss_kib(srv)
    sock, conn = h2_connection(srv.port)
    flood = h2_get(conn, "/flood?mib=200")
    sock.sendall(conn.data_to_send())
    events = read_granting_nothing(sock, conn, 2.0)
    sock.sendall(conn.data_to_send())  # SETTINGS ACK only: no WINDOW_UPDATE
    handed_over = progress(srv)["flood"]
    grown = rss_kib(srv) - before

    first = answer(events, flood)
    assert (first.status, len(first.body), first.ended) == (200, DEFAULT_WINDOW, False)
    assert handed_over <= 1 * MIB, f"the app got {handed_over} bytes past a closed window"
    assert grown < 16 * 1024, f"the server's RSS grew by {grown} KiB"

    # Open the window: the response flows again.
    conn.increment_flow_control_window(64 * MIB)
    conn.increment_flow_control_window(64 * MIB, stream_id=flood)
    sock.sendall(conn.data_to_send())

    def eight_mib(events: list) -> bool:
        return sum(len(e.data) for e in events
                   if isinstance(e, h2.events.DataReceived)) >= 8 * MIB

    h2_pump(sock, conn, eight_mib)
    assert progress(srv)["flood"] > 8 * MIB - 2 * DEFAULT_WINDOW
    conn.reset_stream(flood)
    sock.sendall(conn.data_to_send())
    sock.close()
    assert_serves(srv)


def test_an_upload_to_an_app_that_does_not_read_stops_at_the_window(server):
    """An app that never calls receive(): a client uploading to it can send exactly the
    stream's initial window (--h2-initial-stream-window-size), and two such streams together
    exactly the connection's (--h2-initial-connection-window-size): a third gets no room at
    all. No WINDOW_UPDATE frees more while the app does not read, so the server holds at
    most the connection window."""
    srv = server.start(BASIC, "--h2-initial-stream-window-size", "262144",
                       "--h2-initial-connection-window-size", "524288")
    before = rss_kib(srv)
    sock, conn = h2_connection(srv.port)

    def window_announced(events: list) -> bool:
        return any(isinstance(e, h2.events.SettingsAcknowledged) for e in events) and any(
            isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0 for e in events)

    h2_pump(sock, conn, window_announced)
    assert (conn.remote_settings.initial_window_size, conn.outbound_flow_control_window) == \
        (262144, 524288)
    streams = [h2_get(conn, "/ignore-body?s=3", method="POST", end_stream=False)
               for _ in range(3)]
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("IGNORE-BODY-STARTED")
    chunk = b"u" * 16384
    accepted = {}
    for stream in streams:
        total = 0
        while (room := min(conn.local_flow_control_window(stream), len(chunk))) > 0:
            conn.send_data(stream, chunk[:room])
            sock.sendall(conn.data_to_send())
            total += room
        accepted[stream] = total
    # Wait a second for a WINDOW_UPDATE that must not come.
    events = read_granting_nothing(sock, conn, 1.0)
    grown = rss_kib(srv) - before
    sock.close()

    assert list(accepted.values()) == [262144, 262144, 0]
    assert [e for e in events if isinstance(e, h2.events.WindowUpdated)] == []
    assert grown < 16 * 1024, f"the server's RSS grew by {grown} KiB"
    assert_serves(srv)


# --- 6. --cancel-on-disconnect ---------------------------------------------------------------


def test_rst_stream_cancels_the_app_task_with_cancel_on_disconnect(server):
    """With --cancel-on-disconnect, a client's RST_STREAM(CANCEL) on a slow stream cancels
    that app task (asyncio.CancelledError in the app) at once; another stream on the same
    connection is served."""
    srv = server.start(BASIC, "--cancel-on-disconnect")
    sock, conn = h2_connection(srv.port)
    slow = h2_get(conn, "/sleep?s=30&tag=slow")
    other = h2_get(conn, "/sleep?s=0.5&tag=other")
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("SLEEP-STARTED slow")
    srv.wait_for_log("SLEEP-STARTED other")
    conn.reset_stream(slow, error_code=CANCEL)
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("SLEEP-CANCELLED slow", timeout=3)
    events = h2_pump(sock, conn, ended(other))
    sock.close()
    assert (answer(events, other).status, answer(events, other).body) == (200, b"slept other")
    assert "SLEEP-WOKE slow" not in srv.logs()


def test_rst_stream_leaves_the_app_task_running_without_the_flag(server):
    """Without --cancel-on-disconnect (the default), the reset stream's app task runs to its
    end: it wakes after its sleep and is not cancelled."""
    srv = server.start(BASIC)
    sock, conn = h2_connection(srv.port)
    slow = h2_get(conn, "/sleep?s=1&tag=slow")
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("SLEEP-STARTED slow")
    conn.reset_stream(slow, error_code=CANCEL)
    sock.sendall(conn.data_to_send())
    logs = srv.wait_for_log("SLEEP-WOKE slow", timeout=5)
    sock.close()
    assert "SLEEP-CANCELLED slow" not in logs


# --- 7. --limit-concurrency counts streams --------------------------------------------------


def test_limit_concurrency_counts_streams_not_connections(server):
    """--limit-concurrency 2 and one HTTP/2 connection with two slow streams in the app: a
    third stream is answered 503 with Retry-After: 1 at once, as an HTTP/1.1 request past
    the limit is (test_serving.py), and the app never sees it; once the slow ones are done,
    a fourth stream on the same connection is served."""
    srv = server.start(BASIC, "--limit-concurrency", "2")
    sock, conn = h2_connection(srv.port)
    first = h2_get(conn, "/sleep?s=1.5&tag=first")
    second = h2_get(conn, "/sleep?s=1.5&tag=second")
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("SLEEP-STARTED first")
    srv.wait_for_log("SLEEP-STARTED second")
    third = h2_get(conn, "/sleep?s=0&tag=third")
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    events = h2_pump(sock, conn, ended(third))
    shed_after = time.monotonic() - started
    events += h2_pump(sock, conn, ended(first, second))
    fourth = h2_get(conn, "/sleep?s=0&tag=fourth")
    sock.sendall(conn.data_to_send())
    events += h2_pump(sock, conn, ended(fourth))
    sock.close()

    shed = answer(events, third)
    assert (shed.status, shed.headers.get("retry-after"), shed.ended) == (503, "1", True)
    assert 0 < len(shed.body) < 512, shed.body
    assert shed_after < 1.0, f"the 503 took {shed_after:.2f}s"
    for stream, tag in ((first, "first"), (second, "second"), (fourth, "fourth")):
        done = answer(events, stream)
        assert (done.status, done.body) == (200, f"slept {tag}".encode())
    assert "SLEEP-STARTED third" not in srv.logs()
    srv.wait_for_log("Overloaded: answered 503 to 1 request(s)")


# --- 8. SIGTERM with streams in flight ------------------------------------------------------


class RawPeer:
    """A raw-frame HTTP/2 client that answers SETTINGS and PING as a live client does and
    decodes each response head once (HPACK decoding is stateful)."""

    def __init__(self, port: int) -> None:
        self.sock = raw_connection(port)
        self.reader = FrameReader(self.sock)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.frames: list = []  # (type, flags, stream, payload)
        self.statuses: dict[int, str] = {}
        self.closed = False
        self.sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0))

    def get(self, stream: int, path: str) -> None:
        self.sock.sendall(raw_frame(HEADERS, END_STREAM | END_HEADERS, stream,
                                    request_block(self.encoder, path)))

    def read(self, deadline: float, stop=lambda peer: False) -> None:
        """Frames until `stop(self)` holds or the server closes the connection; an
        AssertionError at `deadline`."""
        while not self.closed and not stop(self):
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                frame = self.reader.next()
            except TimeoutError:
                raise AssertionError(f"nothing more before the deadline; frames: "
                                     f"{[f[:3] for f in self.frames]}") from None
            if frame is None:
                self.closed = True
                break
            self.frames.append(frame)
            kind, flags, stream, payload = frame
            if kind == SETTINGS and not flags & ACK:
                self.sock.sendall(raw_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self.sock.sendall(raw_frame(PING, ACK, 0, payload))
            elif kind == HEADERS:
                self.statuses[stream] = dict(self.decoder.decode(payload))[":status"]

    def stream(self, stream: int) -> tuple[str | None, bytes, bool]:
        """(status, body, ended) of `stream` so far."""
        body = b"".join(p for kind, _, sid, p in self.frames if sid == stream and kind == 0)
        done = any(sid == stream and flags & END_STREAM and kind in (HEADERS, 0)
                   for kind, flags, sid, _ in self.frames)
        return self.statuses.get(stream), body, done

    def goaways(self) -> list[tuple[int, int]]:
        return [goaway_error(p) for kind, _, _, p in self.frames if kind == GOAWAY]


def test_sigterm_lets_the_in_flight_stream_finish_and_exits_0(server):
    srv = server.start(BASIC, "--timeout-graceful-shutdown", "10")
    peer = RawPeer(srv.port)
    peer.get(1, "/sleep?s=1.5&tag=a")
    srv.wait_for_log("SLEEP-STARTED a")
    signalled = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    peer.read(signalled + 10)
    peer.sock.close()
    assert peer.stream(1) == ("200", b"slept a", True)
    assert srv.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 10


def test_sigterm_sends_goaway_and_refuses_new_streams(server):
    """SIGTERM with a stream in flight: the server sends GOAWAY(NO_ERROR) naming stream 1 as
    the last it processes, before that stream is done; a stream the client opens after it
    is refused (ignored, or RST_STREAM(REFUSED_STREAM)) and never reaches the app; stream 1
    gets its whole body; the connection closes as soon as it is done, and the process
    exits 0."""
    srv = server.start(BASIC, "--timeout-graceful-shutdown", "10")
    peer = RawPeer(srv.port)
    peer.get(1, "/sleep?s=2&tag=a")
    srv.wait_for_log("SLEEP-STARTED a")
    signalled = time.monotonic()
    srv.send_signal(signal.SIGTERM)

    def final_goaway(peer: RawPeer) -> bool:  # hyper first says 2^31-1, then the real one
        return any(last != 0x7FFFFFFF for last, _ in peer.goaways())

    try:
        peer.read(signalled + 1.5, final_goaway)
    except AssertionError:
        pass
    assert final_goaway(peer), \
        f"no GOAWAY within 1.5 s of SIGTERM; frames: {[f[:3] for f in peer.frames]}"
    assert peer.stream(1)[2] is False, "the GOAWAY came only after stream 1 was done"
    assert peer.goaways()[-1] == (1, NO_ERROR)

    peer.get(3, "/sleep?s=0&tag=late")
    peer.read(signalled + 10)
    closed = time.monotonic()
    peer.sock.close()
    assert peer.stream(1) == ("200", b"slept a", True)
    late = [(kind, payload) for kind, _, sid, payload in peer.frames if sid == 3]
    assert late in ([], [(RST_STREAM, struct.pack(">I", REFUSED_STREAM))]), late
    assert "SLEEP-STARTED late" not in srv.logs()
    ended_at = signalled + 2  # stream 1 sleeps 2 s
    assert closed - ended_at < 1.5, f"closed {closed - ended_at:.2f}s after the last stream"
    assert srv.wait(timeout=10) == 0


@pytest.mark.parametrize("client_frame", [False, True], ids=["silent-client", "client-pings"])
def test_idle_connection_closes_after_keep_alive_with_goaway(server, client_frame):
    """An HTTP/2 connection idle after its last response is closed after --timeout-keep-alive
    (1 s here, the header-read timeout being 6 s), with GOAWAY(NO_ERROR) naming stream 1 as
    the last processed (RFC 9113 6.8: so the client knows nothing later was processed),
    whether or not the client sent a frame (here a PING, which live clients send) while
    idle."""
    srv = server.start(BASIC, "--timeout-keep-alive", "1", "--timeout-header-read", "6")
    peer = RawPeer(srv.port)
    peer.read(time.monotonic() + 5, lambda peer: any(
        kind == SETTINGS and flags & ACK for kind, flags, _, _ in peer.frames))
    peer.get(1, "/")
    peer.read(time.monotonic() + 5, lambda peer: peer.stream(1)[2])
    idle_since = time.monotonic()
    if client_frame:
        time.sleep(0.2)
        peer.sock.sendall(raw_frame(PING, 0, 0, b"liveness"))
    try:
        peer.read(idle_since + 4)
    finally:
        peer.sock.close()
    closed_after = time.monotonic() - idle_since
    assert peer.stream(1) == ("200", b"Hello, world!", True)
    assert 0.8 <= closed_after < 2.5, f"closed {closed_after:.2f}s after the last response"
    # hyper's graceful shutdown (RFC 9113 6.8): a first GOAWAY naming the largest stream id,
    # a PING round trip, then the final one naming the last stream processed.
    assert peer.goaways() in ([(1, NO_ERROR)], [(2**31 - 1, NO_ERROR), (1, NO_ERROR)])


# --- 9. connection-specific response headers ------------------------------------------------


HOP = ["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"]


@pytest.mark.parametrize("names", [[name] for name in HOP] + [HOP], ids=HOP + ["all"])
def test_connection_specific_response_headers_are_dropped_not_fatal(server, names):
    """An app that sets HTTP/1.1 connection headers (RFC 9113 8.2.2 forbids them in HTTP/2)
    still gets its response delivered whole; none of them reaches the client, and each
    dropped one is logged at debug level."""
    srv = server.start(BASIC, "--log-level", "debug")
    sock, conn = h2_connection(srv.port)
    stream = h2_get(conn, "/hop-by-hop?" + "&".join(f"h={name}" for name in names))
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, ended(stream))
    sock.close()
    got = answer(events, stream)
    assert (got.status, got.body, got.ended, got.reset) == (200, b"hop-by-hop body", True, None)
    assert got.headers["x-kept"] == "yes"
    assert sorted(set(got.headers) & set(HOP)) == []
    for name in names:
        srv.wait_for_log(f'dropped the app\'s "{name}" response header: '
                         f"HTTP/2 does not allow it", timeout=5)


def test_connection_close_from_the_app_ends_neither_the_connection_nor_other_streams(server):
    """`connection: close` in an app's response over HTTP/2 is dropped: the stream beside
    it goes on, no GOAWAY comes, and the next stream on the connection is served."""
    srv = server.start(BASIC)
    sock, conn = h2_connection(srv.port)
    beside = h2_get(conn, "/sleep?s=1&tag=beside")
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("SLEEP-STARTED beside")
    closing = h2_get(conn, "/hop-by-hop?h=connection-close")
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, ended(beside, closing))
    after = h2_get(conn, "/")
    sock.sendall(conn.data_to_send())
    events += h2_pump(sock, conn, ended(after))
    sock.close()
    assert [e for e in events if isinstance(e, h2.events.ConnectionTerminated)] == []
    got = answer(events, closing)
    assert (got.status, got.body, "connection" in got.headers) == (200, b"hop-by-hop body",
                                                                   False)
    assert (answer(events, beside).status, answer(events, beside).body) == (200, b"slept beside")
    assert (answer(events, after).status, answer(events, after).body) == (200, b"Hello, world!")


def connect_request(conn, extra: list[tuple[str, str]] | None = None,
                    end_stream: bool = False) -> int:
    """Queues a plain CONNECT (RFC 9113 8.5: only :method and :authority)."""
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "CONNECT"), (":authority", "example.com:443"),
                               *(extra or [])], end_stream=end_stream)
    return stream


def test_a_2xx_to_a_plain_connect_opens_no_tunnel_and_carries_no_content(server):
    """An HTTP app that answers a CONNECT with 200 and a body: RFC 9110 9.3.6 forbids
    Content-Length and content in a 2xx to CONNECT, and no WebSocket holds the stream, so the
    stream gets the head alone and ends at once (the client's half, still open, is closed
    with RST_STREAM NO_ERROR, RFC 9113 8.1); the connection goes on."""
    srv = server.start(BASIC, "--log-level", "debug")
    sock, conn = h2_connection(srv.port)
    stream = connect_request(conn)
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, reset(stream))
    got = answer(events, stream)
    assert (got.status, got.body, got.ended, got.reset) == (200, b"", True, NO_ERROR)
    assert "content-length" not in got.headers
    after = h2_get(conn, "/")
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, ended(after))
    sock.close()
    assert (answer(events, after).status, answer(events, after).body) == (200, b"Hello, world!")
    srv.wait_for_log("a 2xx answer to a CONNECT that is no WebSocket", timeout=5)


def test_a_connect_that_declares_content_is_reset_with_protocol_error(server):
    """RFC 9110 9.3.6: a CONNECT has no content; one whose Content-Length says otherwise is
    reset with PROTOCOL_ERROR before the app sees it, and the connection goes on."""
    srv = server.start(BASIC)
    sock, conn = h2_connection(srv.port)
    stream = connect_request(conn, [("content-length", "5")])
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, ended(stream))
    assert answer(events, stream).reset == PROTOCOL_ERROR
    after = h2_get(conn, "/")
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, ended(after))
    sock.close()
    assert (answer(events, after).status, answer(events, after).body) == (200, b"Hello, world!")
    # The access line is written after the response goes out: wait for it, then look.
    srv.wait_for_log('"GET / HTTP/2" 200', timeout=5)
    assert "CONNECT" not in "\n".join(access_lines(srv))


# --- 10. RST_STREAM reaches an app that only waits in receive() ------------------------------


WAITS = "apps.h2_waits_app:app"


def received_on(sock, conn, tag: str) -> tuple[Answer, dict]:
    """GET /received on a new stream of this connection: its answer, and what the app
    recorded for `tag` ({} if nothing yet)."""
    import json

    stream = h2_get(conn, "/received")
    sock.sendall(conn.data_to_send())
    got = answer(h2_pump(sock, conn, ended(stream)), stream)
    return got, json.loads(got.body).get(tag, {}) if got.status == 200 else {}


@pytest.mark.parametrize("route", ["wait-before-start", "wait-after-start"])
def test_rst_stream_gives_a_waiting_app_http_disconnect(server, route):
    """An app that, having read its (empty) body, only awaits receive() and never sends
    again (before its response started, or after its start and a first chunk): the client's
    RST_STREAM(CANCEL) on that stream makes that receive() return exactly
    {"type": "http.disconnect"} within 5 s, nothing else ever, and a later stream on the
    same connection is answered 200."""
    srv = server.start(WAITS)
    sock, conn = h2_connection(srv.port)
    waiting = h2_get(conn, f"/{route}?tag=w")
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("WAITING w")
    if route == "wait-after-start":
        def started(events: list) -> bool:
            return answer(events, waiting).body == b"started"
        first = answer(h2_pump(sock, conn, started), waiting)
        assert (first.status, first.body, first.ended) == (200, b"started", False)
    # The app has the body and now waits: nothing has come for it yet.
    polled, record = received_on(sock, conn, "w")
    assert polled.status == 200
    assert record["messages"] == [{"type": "http.request", "body": "", "more_body": False}]

    conn.reset_stream(waiting, error_code=CANCEL)
    reset_at = time.monotonic()
    sock.sendall(conn.data_to_send())
    while len(record["messages"]) < 2 and time.monotonic() < reset_at + 5:
        time.sleep(0.05)
        polled, record = received_on(sock, conn, "w")
        assert (polled.status, polled.ended, polled.reset) == (200, True, None), polled
    assert record["messages"] == [{"type": "http.request", "body": "", "more_body": False},
                                  {"type": "http.disconnect"}], \
        f"receive() did not return http.disconnect within 5 s; logs:\n{srv.logs()}"
    assert 0 <= record["at"] - reset_at < 5.0  # CLOCK_MONOTONIC, shared by both processes

    after = h2_get(conn, "/received")
    sock.sendall(conn.data_to_send())
    events = h2_pump(sock, conn, ended(after))
    sock.close()
    assert (answer(events, after).status, answer(events, after).reset) == (200, None)
    srv.wait_for_log("RECEIVED w", timeout=5)


# --- 11. --http httptools: uvicorn's name for HTTP/1.1 only ----------------------------------


def test_http_httptools_serves_http11_only_on_a_plain_port(server):
    """`--http httptools` (uvicorn's name) selects ferricorn's HTTP/1.1, as h11 does: an
    HTTP/1.1 request is served; the h2c prior-knowledge preface (with the client's SETTINGS)
    is not taken as HTTP/2: no SETTINGS or any byte comes back, the connection is closed
    (hyper's HTTP/1.1 parser sees "PRI * HTTP/2.0" and closes without an answer), and the
    server goes on serving HTTP/1.1."""
    srv = server.start(BASIC, "--http", "httptools")
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.get(srv.url + "/")
    assert (response.http_version, response.status_code, response.text) == \
        ("HTTP/1.1", 200, "Hello, world!")
    with raw_connection(srv.port) as sock:
        sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0))
        assert recv_until_closed(sock, timeout=5) == b""
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(srv.url + "/")
    assert srv.alive(), srv.logs()
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(srv.url + "/").text == "Hello, world!"


def test_http_httptools_offers_no_h2_by_alpn_on_tls(server, pki):
    """On a TLS port, `--http httptools` makes the server's ALPN list "http/1.1" alone: a
    client offering h2 and http/1.1 gets http/1.1 and is served HTTP/1.1; one offering h2
    alone finds no protocol in common (the handshake fails with no_application_protocol)."""
    import ssl

    srv = server.start(BASIC, *tls_flags(pki, "key", "--http", "httptools"))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = recv_until_closed(tls)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nHello, world!")
    only_h2 = ssl.create_default_context(cafile=str(pki["ca"]))
    only_h2.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError, match="alert no application protocol"):
            only_h2.wrap_socket(raw, server_hostname="localhost")
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=10) as http:
        response = http.get(f"https://127.0.0.1:{srv.port}/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "Hello, world!")


# --- 12. --limit-queue counts streams -------------------------------------------------------


def test_limit_queue_counts_streams_not_connections(server):
    """--limit-concurrency 1 --limit-queue 1 and three slow streams on one HTTP/2
    connection: the first runs, the second waits in the queue and starts only once the
    first is done (answered 200 after it), the third is answered at once with the overload
    503 (Retry-After: 1, body "Service Unavailable\\n") and never reaches the app; the
    connection serves a fourth stream afterwards."""
    srv = server.start(BASIC, "--limit-concurrency", "1", "--limit-queue", "1")
    sock, conn = h2_connection(srv.port)
    first = h2_get(conn, "/sleep?s=1.5&tag=first")
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("SLEEP-STARTED first")
    second = h2_get(conn, "/sleep?s=0.5&tag=second")
    sock.sendall(conn.data_to_send())
    time.sleep(0.2)  # the second is in the queue before the third comes
    third = h2_get(conn, "/sleep?s=0&tag=third")
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    events = h2_pump(sock, conn, ended(third))
    shed_after = time.monotonic() - started
    assert "SLEEP-STARTED second" not in srv.logs(), "the second ran beside the first"
    events += h2_pump(sock, conn, ended(first))
    first_done = time.monotonic()
    events += h2_pump(sock, conn, ended(second))
    second_after_first = time.monotonic() - first_done
    fourth = h2_get(conn, "/sleep?s=0&tag=fourth")
    sock.sendall(conn.data_to_send())
    events += h2_pump(sock, conn, ended(fourth))
    sock.close()

    shed = answer(events, third)
    assert (shed.status, shed.headers.get("retry-after"), shed.body, shed.ended, shed.reset) \
        == (503, "1", b"Service Unavailable\n", True, None)
    assert shed_after < 1.0, f"the 503 took {shed_after:.2f}s"
    for stream, tag in ((first, "first"), (second, "second"), (fourth, "fourth")):
        done = answer(events, stream)
        assert (done.status, done.body, done.reset) == (200, f"slept {tag}".encode(), None)
    # The queued stream ran after the first: its 0.5 s sleep began once the first was done.
    assert second_after_first >= 0.4, f"the second ended {second_after_first:.2f}s after"
    logs = srv.logs()
    assert logs.index("SLEEP-DONE first") < logs.index("SLEEP-STARTED second")
    assert "SLEEP-STARTED third" not in logs
    srv.wait_for_log("Overloaded: answered 503 to 1 request(s)")


# --- slow-loris streams and the graceful timeout running out ---------------------------------


def half_header_block(encoder: hpack.Encoder, stream: int = 1) -> bytes:
    """The preface, an empty SETTINGS and a HEADERS frame without END_HEADERS: a
    CONTINUATION is due, which never comes."""
    return PREFACE + raw_frame(SETTINGS, 0, 0) + raw_frame(
        HEADERS, END_STREAM, stream, request_block(encoder, "/?stalled"))


def test_a_header_block_left_open_is_closed_with_goaway_after_the_header_read_timeout(server):
    """Preface, SETTINGS, then HEADERS without END_HEADERS and nothing more: the connection has
    no request yet, so --timeout-header-read (1 s here) applies. The server then says
    GOAWAY(NO_ERROR) naming 2^31-1 (hyper's first GOAWAY; the client answers none of its
    PINGs, so no second one comes) and closes the socket a drain grace later; the half
    request never reaches the app, and the server serves a new connection."""
    srv = server.start(BASIC, "--timeout-header-read", "1", "--log-level", "debug")
    sock = raw_connection(srv.port)
    started = time.monotonic()
    sock.sendall(half_header_block(hpack.Encoder()))
    reader = FrameReader(sock)
    sock.settimeout(10)
    frames, goaway_at = [], None
    while (frame := reader.next()) is not None:
        frames.append(frame)
        if frame[0] == GOAWAY and goaway_at is None:
            goaway_at = time.monotonic() - started
    closed_at = time.monotonic() - started
    sock.close()

    assert [goaway_error(p) for kind, _, _, p in frames if kind == GOAWAY] == \
        [(2**31 - 1, NO_ERROR)], [f[:3] for f in frames]
    assert [kind for kind, *_ in frames if kind not in (SETTINGS, WINDOW_UPDATE)] == \
        [GOAWAY, PING], [f[:3] for f in frames]
    assert goaway_at is not None and 0.9 <= goaway_at < 3.0, f"GOAWAY after {goaway_at}s"
    assert 0.5 <= closed_at - goaway_at < 3.0, f"closed {closed_at - goaway_at:.2f}s later"
    srv.wait_for_log("closing an idle HTTP/2 connection (GOAWAY)")
    assert "stalled" not in srv.logs()
    assert_serves(srv)


def test_200_open_header_blocks_cost_bounded_memory_and_others_are_served(server):
    """200 connections at once, each with a HEADERS frame left without its CONTINUATION: the
    server's RSS grows by less than 32 MiB, a normal request is served meanwhile, and all
    200 are closed by the server after --timeout-header-read (3 s here)."""
    srv = server.start(BASIC, "--timeout-header-read", "3")
    assert_serves(srv)
    before = rss_kib(srv)
    socks = []
    try:
        for _ in range(200):
            sock = raw_connection(srv.port)
            sock.sendall(half_header_block(hpack.Encoder()))
            socks.append(sock)
        opened = time.monotonic()
        time.sleep(0.5)
        assert_serves(srv)
        grown = rss_kib(srv) - before
        assert grown < 32 * 1024, f"RSS grew by {grown} KiB with 200 stalled header blocks"
        still_open = []
        for sock in socks:
            sock.settimeout(max(0.1, opened + 15 - time.monotonic()))
            try:
                FrameReader(sock).until_closed()
            except TimeoutError:
                still_open.append(sock)
        assert not still_open, f"{len(still_open)} of 200 still open 15 s after"
    finally:
        for sock in socks:
            sock.close()
    assert_serves(srv)


def test_a_small_body_trickled_a_byte_at_a_time_gets_408_at_the_body_timeout(server):
    """HEADERS for a POST with content-length: 20 (END_HEADERS, no END_STREAM), then one
    DATA byte every 0.3 s. A body this small is read whole before the app runs, and
    --timeout-request-body (1 s here) bounds that whole read, however steadily the bytes
    come: at about 1 s the stream gets 408 with its body and RST_STREAM(NO_ERROR), the app
    never runs, and a later stream on the same connection is served."""
    srv = server.start(BASIC, "--timeout-request-body", "1", "--log-level", "debug")
    peer = RawPeer(srv.port)
    block = peer.encoder.encode([(":method", "POST"), (":path", "/echo"), (":scheme", "http"),
                                 (":authority", "t"), ("content-length", "20")])
    peer.sock.sendall(raw_frame(HEADERS, END_HEADERS, 1, block))
    started = time.monotonic()
    sent = 0

    def reset_1(peer: RawPeer) -> bool:
        return any(kind == RST_STREAM and sid == 1 for kind, _, sid, _ in peer.frames)

    while not reset_1(peer) and time.monotonic() - started < 5.4:
        peer.sock.sendall(raw_frame(DATA, 0, 1, b"x"))
        sent += 1
        try:
            peer.read(time.monotonic() + 0.3, reset_1)
        except AssertionError:
            pass  # nothing within 0.3 s: trickle on
    answered = time.monotonic() - started
    assert not peer.closed
    peer.get(3, "/")
    peer.read(time.monotonic() + 5, lambda peer: peer.stream(3)[2])
    peer.sock.close()

    assert peer.stream(1) == ("408", b"Request Timeout\n", True), peer.frames
    resets = [(flags, payload) for kind, flags, sid, payload in peer.frames
              if kind == RST_STREAM and sid == 1]
    assert resets[0] == (0, struct.pack(">I", NO_ERROR)), resets
    assert 0.9 <= answered < 3.0, f"answered after {answered:.2f}s"
    assert 3 <= sent < 20, sent
    assert peer.stream(3) == ("200", b"Hello, world!", True)
    srv.wait_for_log("timed out reading the request body")
    srv.wait_for_log('"POST /echo HTTP/2" 408', timeout=5)


def test_graceful_timeout_running_out_cancels_the_stream_answers_500_and_exits_0(server):
    """--timeout-graceful-shutdown 1 and a stream whose app sleeps 60 s, then SIGTERM: GOAWAY
    (NO_ERROR) at once, the final one naming stream 1; when the second runs out the app's
    task is cancelled (the documented warning line), the stream is answered 500 (not
    reset), the connection is closed, and the process exits 0 (docs/deployment.md)."""
    srv = server.start(BASIC, "--timeout-graceful-shutdown", "1")
    peer = RawPeer(srv.port)
    peer.get(1, "/sleep?s=60&tag=a")
    srv.wait_for_log("SLEEP-STARTED a")
    signalled = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    peer.read(signalled + 10, lambda peer: any(last == 1 for last, _ in peer.goaways()))
    goaway_after = time.monotonic() - signalled
    assert peer.stream(1) == (None, b"", False), "stream 1 was answered before the timeout"
    peer.read(signalled + 10)
    closed_after = time.monotonic() - signalled
    peer.sock.close()
    code = srv.wait(timeout=10)
    exited_after = time.monotonic() - signalled

    assert goaway_after < 0.9, f"GOAWAY {goaway_after:.2f}s after SIGTERM"
    assert peer.goaways() == [(2**31 - 1, NO_ERROR), (1, NO_ERROR)]
    assert peer.stream(1) == ("500", b"Internal Server Error", True)
    assert not [f for f in peer.frames if f[0] == RST_STREAM], [f[:3] for f in peer.frames]
    assert 0.9 <= closed_after < 5.0, f"closed {closed_after:.2f}s after SIGTERM"
    assert code == 0, srv.logs()
    assert exited_after < 10.0
    logs = srv.logs()
    assert "WARNING:  Cancelling 1 running request(s): graceful shutdown timed out." in logs
    assert "SLEEP-CANCELLED a" in logs
    assert "SLEEP-WOKE a" not in logs
    assert '"GET /sleep?s=60&tag=a HTTP/2" 500' in logs
