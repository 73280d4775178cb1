"""The `--h2-*` limits reach the wire: the server's first SETTINGS frame carries them, and
the defaults are the documented ones. Then each limit at work, over raw frames: the rapid
reset attack (CVE-2023-44487) against --h2-max-pending-reset-streams, PINGs from
--h2-keep-alive-interval (and the close of a client that answers none), and a stream past
--h2-max-concurrent-streams refused."""

from __future__ import annotations

import struct
import threading
import time

import h2.events
import hpack
import pytest
from conftest import http_client, raw_connection
from h2.settings import SettingCodes
from h2client import (
    ACK,
    CANCEL,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PING,
    PREFACE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FrameReader,
    assert_serves,
    h2_connection,
    h2_pump,
    raw_frame,
    rss_kib,
)

pytestmark = pytest.mark.timeout(60)


def server_settings(srv) -> dict[int, int]:
    sock, conn = h2_connection(srv.port)
    with sock:
        events = h2_pump(sock, conn, lambda ev: any(
            isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
    changed = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    return {code: s.new_value for code, s in changed.changed_settings.items()}


def test_default_limits(server):
    settings = server_settings(server.start("apps.basic:app"))
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 65536
    assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 1 << 20
    assert settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_limits_follow_the_flags(server):
    srv = server.start("apps.basic:app", "--h2-max-concurrent-streams", "7",
                       "--h2-max-header-list-size", "20000",
                       "--h2-initial-stream-window-size", "100000",
                       "--h2-initial-connection-window-size", "300000")
    settings = server_settings(srv)
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 20000
    assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 100000


def test_no_extended_connect_without_websockets(server):
    settings = server_settings(server.start("apps.basic:app", "--ws", "none"))
    assert settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0


@pytest.mark.parametrize("flag,value", [
    ("--h2-max-concurrent-streams", "0"),
    ("--h2-initial-stream-window-size", "100"),
    ("--h2-initial-connection-window-size", str(2**31)),
])
def test_out_of_range_limits_stop_startup(server, flag, value):
    srv = server.start("apps.basic:app", flag, value, ready=False)
    assert srv.wait(timeout=20) == 2  # argparse's usage error
    assert flag in srv.logs()


# --- the limits at work, over raw frames ---------------------------------------------------
#
# The clients below write frames by hand (h2client.raw_frame): the `h2` library will neither
# open streams past the server's SETTINGS_MAX_CONCURRENT_STREAMS nor produce tens of thousands
# of frames quickly. Served app: tests/apps/counting_app.py, which counts its calls per path
# (GET /calls), so a test sees exactly which requests reached the app.

COUNTING = "apps.counting_app:app"
MIB_KIB = 1024  # KiB in a MiB
#: The debug data the `h2` crate's GOAWAY carries when the pending resets exceed the limit.
TOO_MANY_RESETS = b"too_many_resets"


def request_block(path: str) -> bytes:
    """A GET's header block in HPACK with no dynamic table (RFC 7541: indexed :method GET and
    :scheme http, then :path and :authority as literals without indexing): the same bytes
    work on any stream, in any order, with no encoder state."""
    encoded = path.encode()
    assert len(encoded) < 127
    return b"\x82\x86\x04" + bytes([len(encoded)]) + encoded + b"\x01\x01t"


def get_frame(stream: int, path: str) -> bytes:
    return raw_frame(HEADERS, END_HEADERS | END_STREAM, stream, request_block(path))


def reset_frame(stream: int, code: int = CANCEL) -> bytes:
    return raw_frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def rapid_resets(first: int, count: int) -> bytes:
    """`count` streams from `first` on, each opened (HEADERS) and cancelled (RST_STREAM) at
    once: the rapid reset attack (CVE-2023-44487)."""
    return b"".join(get_frame(stream, "/reset") + reset_frame(stream)
                    for stream in range(first, first + 2 * count, 2))


def goaway_frame_payload(last: int, code: int, debug: bytes = b"") -> bytes:
    return struct.pack(">II", last, code) + debug


def app_calls(srv) -> dict[str, int]:
    with http_client() as http:
        return http.get(f"{srv.url}/calls").json()


class Peer:
    """A raw-frame HTTP/2 client (h2c, prior knowledge). Once constructed it has sent the
    preface and its SETTINGS and received the server's SETTINGS (acknowledged). It records
    every frame with its arrival time, decodes each response head once (HPACK decoding is
    stateful), and answers PINGs unless `answer_pings` is false."""

    def __init__(self, port: int, answer_pings: bool = True) -> None:
        self.sock = raw_connection(port)
        self.reader = FrameReader(self.sock)
        self.decoder = hpack.Decoder()
        self.answer_pings = answer_pings
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.times: list[float] = []  # monotonic arrival time of each frame
        self.statuses: dict[int, str] = {}
        self.closed = False
        self.closed_at: float | None = None
        self.sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0))
        self.read_until(lambda peer: any(kind == SETTINGS and not flags & ACK
                                         for kind, flags, _, _ in peer.frames))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _next(self, deadline: float) -> bool:
        """Reads one frame; False once the time is up or the server closed."""
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            return False
        self.sock.settimeout(left)
        try:
            frame = self.reader.next()
        except TimeoutError:
            return False
        if frame is None:
            self.closed, self.closed_at = True, time.monotonic()
            return False
        self.frames.append(frame)
        self.times.append(time.monotonic())
        kind, flags, stream, payload = frame
        if kind == SETTINGS and not flags & ACK:
            self.sock.sendall(raw_frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK and self.answer_pings:
            self.sock.sendall(raw_frame(PING, ACK, 0, payload))
        elif kind == HEADERS:
            assert flags & END_HEADERS, "no CONTINUATION expected"
            self.statuses[stream] = dict(self.decoder.decode(payload))[":status"]
        return True

    def read_until(self, stop, timeout: float = 10.0) -> None:
        """Frames until `stop(self)` holds or the server closes the connection (the caller
        checks which); an AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.closed and not stop(self):
            if not self._next(deadline) and not self.closed:
                raise AssertionError(f"nothing more within {timeout}s; frames: "
                                     f"{[f[:3] for f in self.frames]}")

    def read_for(self, seconds: float) -> None:
        """Every frame for `seconds`, or until the server closes the connection."""
        deadline = time.monotonic() + seconds
        while self._next(deadline):
            pass

    def until_closed(self, timeout: float = 10.0) -> None:
        self.read_until(lambda peer: False, timeout)

    def significant(self) -> list[tuple[int, int, int, bytes]]:
        """The frames besides the connection's SETTINGS and WINDOW_UPDATE bookkeeping."""
        return [f for f in self.frames if f[2] != 0 or f[0] not in (SETTINGS, WINDOW_UPDATE)]

    def pings(self) -> list[float]:
        """When each PING (not an ACK) from the server arrived."""
        return [t for (kind, flags, _, _), t in zip(self.frames, self.times, strict=True)
                if kind == PING and not flags & ACK]

    def response(self, stream: int) -> tuple[str | None, bytes, bool]:
        """(status, body, ended) of `stream` so far."""
        body = b"".join(p for kind, _, sid, p in self.frames if sid == stream and kind == DATA)
        done = any(sid == stream and flags & END_STREAM and kind in (HEADERS, DATA)
                   for kind, flags, sid, _ in self.frames)
        return self.statuses.get(stream), body, done

    def close(self) -> None:
        self.sock.close()


# --- rapid reset (CVE-2023-44487) and --h2-max-pending-reset-streams ------------------------


def test_rapid_reset_flood_ends_the_connection_with_enhance_your_calm(server):
    """CVE-2023-44487 with --h2-max-pending-reset-streams 5: a client writes 20,000 streams,
    each HEADERS then RST_STREAM(CANCEL) at once, in batches of 1,000. The server reads the
    first batch, and the sixth reset of a stream it has not yet taken in (stream 11) ends the
    connection: exactly one GOAWAY(ENHANCE_YOUR_CALM, last stream 11, debug data
    "too_many_resets"), nothing on any stream, then the close. The app is never called, the
    server's memory does not grow, and a fresh connection is served."""
    srv = server.start(COUNTING, "--h2-max-pending-reset-streams", "5")
    before = rss_kib(srv)
    peer = Peer(srv.port)
    try:
        for batch in range(20):
            peer.send(rapid_resets(1 + 2000 * batch, 1000))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection: what this test expects
    peer.until_closed()
    peer.close()
    grown = rss_kib(srv) - before

    assert peer.significant() == [
        (GOAWAY, 0, 0, goaway_frame_payload(11, ENHANCE_YOUR_CALM, TOO_MANY_RESETS))]
    assert app_calls(srv) == {}
    assert grown < 16 * MIB_KIB, f"the server's RSS grew by {grown} KiB"
    assert_serves(srv)
    assert app_calls(srv) == {"/": 1}


@pytest.mark.parametrize("flags,burst,trips", [
    ((), 20, False),
    ((), 21, True),
    (("--h2-max-pending-reset-streams", "5"), 5, False),
    (("--h2-max-pending-reset-streams", "5"), 6, True),
    (("--h2-max-pending-reset-streams", "50"), 50, False),
    (("--h2-max-pending-reset-streams", "50"), 51, True),
], ids=["default-20", "default-21", "5-at-5", "5-at-6", "50-at-50", "50-at-51"])
def test_max_pending_reset_streams_is_the_burst_that_ends_the_connection(server, flags, burst,
                                                                         trips):
    """--h2-max-pending-reset-streams N (default 20) counts the streams a client opened and
    reset that the server had not yet taken in: a burst of N such streams written at once (in
    one segment) is allowed, N + 1 is not. Past N: GOAWAY(ENHANCE_YOUR_CALM) naming the
    (N+1)-th stream as the last, the PING that followed the burst unanswered, the connection
    closed. Up to N: the PING is answered, nothing is sent on the reset streams, and the same
    connection serves a request. The reset streams never reach the app either way."""
    srv = server.start(COUNTING, *flags)
    peer = Peer(srv.port)
    peer.send(rapid_resets(1, burst) + raw_frame(PING, 0, 0, b"afterall"))
    if trips:
        peer.until_closed()
        assert peer.significant() == [(GOAWAY, 0, 0, goaway_frame_payload(
            2 * burst - 1, ENHANCE_YOUR_CALM, TOO_MANY_RESETS))]
        assert app_calls(srv) == {}
    else:
        peer.read_until(lambda p: any(f[0] == PING for f in p.frames))
        assert peer.significant() == [(PING, ACK, 0, b"afterall")]
        stream = 2 * burst + 1
        peer.send(get_frame(stream, "/"))
        peer.read_until(lambda p: p.response(stream)[2])
        assert peer.response(stream) == ("200", b"Hello, world!", True)
        assert [f for f in peer.significant() if f[0] in (GOAWAY, RST_STREAM)] == []
        assert not peer.closed
        assert app_calls(srv) == {"/": 1}
    peer.close()
    assert_serves(srv)


def test_rapid_reset_under_the_limit_costs_no_app_call_and_no_memory(server):
    """The rapid reset a client may keep up within the default limit (20): 6,000 rounds of
    5 streams opened and cancelled at once, then a PING whose answer it waits for (so the
    streams the server has not taken in stay far below 20), 30,000 streams in all on one
    connection. Every PING is answered and nothing else is sent (no GOAWAY, nothing on a
    stream); not one of the 30,000 reaches the app; the server's memory grows by less than
    8 MiB; the same connection then serves a request."""
    srv = server.start(COUNTING)
    peer = Peer(srv.port)
    peer.read_for(0.2)  # the SETTINGS ACK and WINDOW_UPDATE, before the baseline
    before = rss_kib(srv)
    rounds, per_round = 6000, 5
    for n in range(rounds):
        tag = n.to_bytes(8, "big")
        peer.send(rapid_resets(1 + 2 * per_round * n, per_round) + raw_frame(PING, 0, 0, tag))
        peer.read_until(lambda p, tag=tag: p.frames[-1] == (PING, ACK, 0, tag))
        assert not peer.closed, f"closed in round {n}: {peer.significant()[-3:]}"
    grown = rss_kib(srv) - before
    calls = app_calls(srv)
    stream = 2 * rounds * per_round + 1
    peer.send(get_frame(stream, "/"))
    peer.read_until(lambda p: p.response(stream)[2])
    peer.close()

    others = [f[:3] for f in peer.significant() if f[:2] != (PING, ACK) and f[2] != stream]
    assert others == []
    assert sum(1 for f in peer.frames if f[:2] == (PING, ACK)) == rounds
    assert calls == {}
    assert grown < 8 * MIB_KIB, f"the server's RSS grew by {grown} KiB"
    assert peer.response(stream) == ("200", b"Hello, world!", True)
    assert app_calls(srv) == {"/": 1}


# --- --h2-keep-alive-interval -------------------------------------------------------------


def test_keep_alive_interval_pings_each_interval_after_the_answer(server):
    """--h2-keep-alive-interval 0.5: an idle connection gets a PING (stream 0, 8 bytes)
    about 0.5 s after it opened, and again about 0.5 s after each answer: at least 3 within
    4 s for a client that answers, none sooner than the interval after the last answer. A
    client that does not answer gets that one PING and no other (the server waits for the
    answer) in 4 s. Neither connection is closed."""
    srv = server.start(COUNTING, "--h2-keep-alive-interval", "0.5",
                       "--timeout-keep-alive", "60")
    answering, silent = Peer(srv.port), Peer(srv.port, answer_pings=False)
    opened = time.monotonic()
    reader = threading.Thread(target=answering.read_for, args=(4.0,))
    reader.start()
    silent.read_for(4.0)
    reader.join(10)
    assert not reader.is_alive()
    for peer in (answering, silent):
        peer.close()

    pings = answering.pings()
    assert len(pings) >= 3, answering.significant()
    assert pings[0] - opened >= 0.4
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:], strict=False)]
    assert min(gaps) >= 0.45, gaps
    assert {f[:3] for f in answering.significant()} == {(PING, 0, 0)}
    assert {len(f[3]) for f in answering.significant()} == {8}
    assert [f[:3] for f in silent.significant()] == [(PING, 0, 0)]
    assert not answering.closed and not silent.closed


def test_no_keep_alive_pings_without_the_flag(server):
    """The default (--h2-keep-alive-interval off): an idle connection gets no PING in
    3 s, and stays open."""
    srv = server.start(COUNTING, "--timeout-keep-alive", "60")
    peer = Peer(srv.port)
    peer.read_for(3.0)
    peer.close()
    assert peer.significant() == []
    assert not peer.closed


def test_a_client_that_answers_no_ping_is_disconnected_after_20_s(server):
    """--h2-keep-alive-interval 0.5 and a client with a stream in the app (so the connection
    is not idle) that never answers a PING: 20 s (fixed) after the PING, the server sends
    GOAWAY(NO_ERROR, last stream 1) and closes the connection, logging why; the stream gets
    no response. This test takes about 21 s."""
    srv = server.start(COUNTING, "--h2-keep-alive-interval", "0.5", "--log-level", "debug")
    peer = Peer(srv.port, answer_pings=False)
    peer.send(get_frame(1, "/sleep?s=40"))
    peer.until_closed(timeout=40)
    peer.close()

    pings = peer.pings()
    assert len(pings) == 1, peer.significant()
    silent_for = peer.closed_at - pings[0]
    assert 19.5 <= silent_for < 30, f"closed {silent_for:.1f}s after the PING"
    assert [f[:3] for f in peer.significant()] == [(PING, 0, 0), (GOAWAY, 0, 0)]
    assert peer.significant()[1][3] == goaway_frame_payload(1, NO_ERROR)
    assert "closing an HTTP/2 connection: its client answered no PING within 20s" in srv.logs()
    assert app_calls(srv) == {"/sleep": 1}
    assert_serves(srv)


# --- --h2-max-concurrent-streams ----------------------------------------------------------


@pytest.mark.parametrize("limit,refused", [(2, [5]), (3, [])], ids=["limit-2", "limit-3"])
def test_a_stream_past_max_concurrent_streams_is_refused(server, limit, refused):
    """--h2-max-concurrent-streams N and a client that ignores it: streams 1, 3 and 5 (a 1 s
    request each) written at once. Past N, the server answers RST_STREAM(REFUSED_STREAM) at
    once (before the others' responses) on the extra stream, which never reaches the app;
    the others get 200; no GOAWAY. Once they are done the same connection serves another
    stream."""
    srv = server.start(COUNTING, "--h2-max-concurrent-streams", str(limit))
    peer = Peer(srv.port)
    opened = [1, 3, 5]
    served = [s for s in opened if s not in refused]
    peer.send(b"".join(get_frame(stream, "/sleep?s=1") for stream in opened))
    peer.read_until(lambda p: all(p.response(s)[2] for s in served))
    calls = app_calls(srv)
    peer.send(get_frame(7, "/"))
    peer.read_until(lambda p: p.response(7)[2])
    peer.close()

    resets = [f for f in peer.significant() if f[0] == RST_STREAM]
    assert resets == [(RST_STREAM, 0, stream, struct.pack(">I", REFUSED_STREAM))
                      for stream in refused]
    for stream in served:
        assert peer.response(stream) == ("200", b"slept", True)
    if refused:
        kinds = [f[0] for f in peer.significant()]
        assert kinds.index(RST_STREAM) < kinds.index(HEADERS), "the refusal waited"
    assert [f for f in peer.significant() if f[0] == GOAWAY] == []
    assert {s for _, _, s, _ in peer.significant()} == set(opened + [7])
    assert calls == {"/sleep": len(served)}
    assert peer.response(7) == ("200", b"Hello, world!", True)


#: The debug data of the `h2` crate's GOAWAY when a client made it reset too many streams.
TOO_MANY_INTERNAL_RESETS = b"too_many_internal_resets"


def test_a_client_that_keeps_opening_streams_past_the_limit_is_cut_off(server):
    """--h2-max-concurrent-streams 1, stream 1 holding the one slot, and a client that opens
    2,000 more streams regardless. Each is refused at once (RST_STREAM(REFUSED_STREAM)) and
    never reaches the app, but a refusal is an error of the client's, and the `h2` crate
    allows 1,024 of them per connection: the 1,024th refusal (stream 2049) is followed by
    exactly one GOAWAY(ENHANCE_YOUR_CALM, last stream 1, "too_many_internal_resets") and the
    close, with a debug line. The server's memory does not grow and a fresh connection is
    served."""
    srv = server.start(COUNTING, "--h2-max-concurrent-streams", "1", "--log-level", "debug")
    before = rss_kib(srv)
    peer = Peer(srv.port)
    peer.send(get_frame(1, "/sleep?s=30"))
    try:
        for start in range(0, 2000, 250):
            peer.send(b"".join(get_frame(3 + 2 * i, "/") for i in range(start, start + 250)))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection: what this test expects
    peer.until_closed(timeout=20)
    peer.close()
    grown = rss_kib(srv) - before

    refused = struct.pack(">I", REFUSED_STREAM)
    assert peer.significant() == [
        *[(RST_STREAM, 0, stream, refused) for stream in range(3, 2051, 2)],
        (GOAWAY, 0, 0, goaway_frame_payload(1, ENHANCE_YOUR_CALM, TOO_MANY_INTERNAL_RESETS)),
    ]
    assert "/" not in app_calls(srv)
    assert grown < 16 * MIB_KIB, f"the server's RSS grew by {grown} KiB"
    assert "HTTP/2 connection error: connection error detected: detected excessive load " \
        "generating behavior" in srv.logs()
    assert_serves(srv)
