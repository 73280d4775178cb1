"""Property-based fuzzing of the TLS and HTTP/2 glue, end to end: one TLS server and one h2c
server per module, each fed hypothesis-made garbage and mutated valid input.

- TLS: random bytes instead of a ClientHello, and real ClientHellos (captured from Python's
  ssl with a MemoryBIO) truncated, with bytes flipped, dropped, inserted or repeated, or
  their record and handshake lengths changed.
- HTTP/2 (h2c by prior knowledge, and over TLS by ALPN): frames after the preface, made
  either as raw bytes (any type, flags, stream id, declared length) or with meaning (SETTINGS
  with values in and out of range, WINDOW_UPDATE 0 and overflowing, HEADERS with valid,
  random or mutated HPACK, padding longer than the frame, CONTINUATION floods, RST_STREAM
  on idle streams, PRIORITY depending on itself, DATA and PUSH_PROMISE where they may not
  be), after or without a valid request.

For each example: the client then ends its side (shutdown SHUT_WR), and the server must end
the connection within a generous bound (no hang), send only whole frames, answer a frame
RFC 9113 names a connection error with a GOAWAY carrying an error, still serve a request on
the same connection after frames that are all allowed, and serve a fresh request (TLS
HTTP/1.1, TLS HTTP/2, h2c) with 200 afterwards, from the same process.

    FERRICORN_FUZZ_EXAMPLES=N    examples per test (default: a few seconds' worth)
    FERRICORN_FUZZ_SEED=clock    a fresh random seed (default: derandomized, repeatable)
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time

import hpack
import pytest
from h2client import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    PRIORITY,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FrameReader,
    goaway_error,
    raw_frame,
)
from hypothesis import HealthCheck, Phase, event, given, note, seed, settings
from hypothesis import strategies as st
from pki import tls_flags

pytestmark = pytest.mark.timeout(600)

APP = "apps.basic:app"
HELLO = b"Hello, world!"
#: How long the server may take to end a connection after the client ended its side.
CLOSE_BOUND = 10.0

_EXAMPLES = int(os.environ.get("FERRICORN_FUZZ_EXAMPLES") or 0)
_SEED = os.environ.get("FERRICORN_FUZZ_SEED")


def fuzz_settings(default_examples: int):
    """Derandomized unless FERRICORN_FUZZ_SEED asks otherwise; no database, no deadline."""
    def apply(test):
        test = settings(
            max_examples=_EXAMPLES or default_examples,
            deadline=None,
            database=None,
            derandomize=_SEED is None,
            print_blob=True,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )(test)
        if _SEED not in (None, "", "clock"):
            test = seed(int(_SEED))(test)
        return test
    return apply


# ----- the servers and their health -------------------------------------------------------------

class Servers:
    def __init__(self, tls, h2c, pki) -> None:
        self.tls, self.h2c, self.pki = tls, h2c, pki
        self.context = ssl.create_default_context(cafile=str(pki["ca"]))

    def tls_socket(self, alpn: list[str]) -> ssl.SSLSocket:
        context = ssl.create_default_context(cafile=str(self.pki["ca"]))
        context.set_alpn_protocols(alpn)
        raw = socket.create_connection(("127.0.0.1", self.tls.port), timeout=CLOSE_BOUND)
        return context.wrap_socket(raw, server_hostname="localhost")

    def assert_serving(self, which: str = "all") -> None:
        """A fresh connection gets 200 for a plain request, on every protocol asked."""
        for srv in (self.tls, self.h2c):
            assert srv.alive(), f"the server exited:\n{srv.logs()[-3000:]}"
        if which in ("all", "tls"):
            with self.tls_socket(["http/1.1"]) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = read_all(sock)
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(HELLO), data[:300]
            with self.tls_socket(["h2"]) as sock:
                assert sock.selected_alpn_protocol() == "h2"
                assert h2_get(sock) == (200, HELLO)
        if which in ("all", "h2c"):
            with socket.create_connection(("127.0.0.1", self.h2c.port), timeout=10) as sock:
                assert h2_get(sock) == (200, HELLO)


@pytest.fixture(scope="module")
def servers(module_server, pki) -> Servers:
    # A short header-read timeout bounds what a stalled handshake or head may hold.
    tls = module_server.start(APP, *tls_flags(pki), "--no-access-log",
                              "--timeout-header-read", "5")
    h2c = module_server.start(APP, "--no-access-log", "--timeout-header-read", "5")
    return Servers(tls, h2c, pki)


def read_all(sock: socket.socket, bound: float = CLOSE_BOUND) -> bytes:
    """Everything until the server closes; fails if it does not within `bound`."""
    sock.settimeout(bound)
    deadline = time.monotonic() + bound
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return data
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {bound}s after "
                                 f"the client ended its side; got {data[:200]!r}") from None
        if not chunk:
            return data
        data += chunk
        assert time.monotonic() < deadline, "the server kept sending for too long"


def request_block(encoder: hpack.Encoder, path: str = "/", extra=()) -> bytes:
    return encoder.encode([(":method", "GET"), (":path", path), (":scheme", "https"),
                           (":authority", "t"), *extra])


def h2_get(sock, path: str = "/") -> tuple[int, bytes]:
    """One GET over a new HTTP/2 connection on `sock` (plain or TLS): status and body."""
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0)
                 + raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(encoder, path)))
    return h2_response(sock, FrameReader(sock), decoder, 1)


def h2_response(sock, reader: FrameReader, decoder: hpack.Decoder, stream: int,
                bound: float = 10.0) -> tuple[int, bytes]:
    sock.settimeout(bound)
    status, body = 0, b""
    while True:
        try:
            frame = reader.next()
        except TimeoutError:
            raise AssertionError(f"no answer on stream {stream} within {bound}s") from None
        assert frame is not None, f"connection closed before stream {stream} ended"
        kind, flags, sid, payload = frame
        if kind == SETTINGS and not flags & ACK:
            sock.sendall(raw_frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            sock.sendall(raw_frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            raise AssertionError(f"GOAWAY {goaway_error(payload)} before stream {stream} ended")
        elif sid == stream and kind == RST_STREAM:
            raise AssertionError(f"stream {stream} reset: {payload!r}")
        elif sid == stream and kind == HEADERS:
            assert flags & END_HEADERS, "a response head in CONTINUATION frames"
            fields = dict(decoder.decode(payload, raw=True))
            status = status or int(fields[b":status"])
            if flags & END_STREAM:
                return status, body
        elif sid == stream and kind == DATA:
            body += payload
            if flags & END_STREAM:
                return status, body


def split_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The server's bytes as whole frames; fails on bytes that are not frames."""
    frames, pos = [], 0
    while pos < len(data):
        assert len(data) - pos >= 9, f"a partial frame header at the end: {data[pos:]!r}"
        length = int.from_bytes(data[pos:pos + 3], "big")
        kind, flags, stream = struct.unpack_from(">BBI", data, pos + 3)
        assert len(data) - pos - 9 >= length, "a partial frame at the end"
        frames.append((kind, flags, stream & 0x7FFFFFFF, data[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return frames


# ----- TLS ----------------------------------------------------------------------------------

def client_hello(alpn: list[str], version: ssl.TLSVersion | None = None) -> bytes:
    """The first flight of a real Python TLS client (a ClientHello record)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    if version is not None:
        context.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


HELLOS = [client_hello(["h2", "http/1.1"]), client_hello(["http/1.1"]),
          client_hello(["h2"], ssl.TLSVersion.TLSv1_2)]


@st.composite
def mutated_bytes(draw, base: bytes) -> bytes:
    """`base` with 1-4 mutations: bytes flipped, set, dropped, inserted or repeated, a cut,
    or one of the TLS length fields (record, handshake, session id) changed."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "drop", "insert", "repeat", "truncate",
                                   "length"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 1]))
        elif op == "drop":
            del data[i:i + draw(st.integers(1, 16))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[i:i] = data[i:i + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[i:]
        else:
            at = draw(st.sampled_from([3, 6, 43]))  # record length, handshake length, sid
            if at + 2 <= len(data):
                value = draw(st.sampled_from([0, 1, 0xFFFF, 0x4000, 0x4001]))
                data[at:at + 2] = value.to_bytes(2, "big")
    return bytes(data)


tls_garbage = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.sampled_from(HELLOS).flatmap(mutated_bytes),
    st.sampled_from(HELLOS).flatmap(lambda h: st.integers(1, len(h) - 1).map(lambda n: h[:n])),
    st.sampled_from([b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", PREFACE,
                     b"\x16\x03\x01\x00\x00", b"\x16\x03\x03\xff\xff" + b"\x01" * 64,
                     b"\x15\x03\x03\x00\x02\x02\x28", b"\x80\x2e\x01\x03\x01"]),
)


@fuzz_settings(300)
@given(data=tls_garbage, tail=st.sampled_from(["end", "end", "reset", "hello-twice"]))
def test_tls_handshake_garbage(servers, data, tail):
    """Garbage or a mutated ClientHello costs only its own connection, which the server
    ends once the client ends its side (or at once); the server serves on."""
    note(f"sent {len(data)} bytes: {data[:120]!r}")
    with socket.create_connection(("127.0.0.1", servers.tls.port), timeout=10) as sock:
        try:
            sock.sendall(data + (HELLOS[0] if tail == "hello-twice" else b""))
        except (BrokenPipeError, ConnectionResetError):
            pass
        if tail == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            reply = read_all(sock)
            kinds = {b"": "nothing", b"\x15": "an alert", b"\x16": "a handshake"}
            event(f"TLS reply: {kinds.get(reply[:1], 'other')}")
            assert reply[:1] in kinds, f"not a TLS record: {reply[:60]!r}"
    servers.assert_serving("tls")


def test_tls_stalled_handshake_is_bounded(servers):
    """Half a ClientHello and silence: the connection is ended by --timeout-header-read (5 s
    here), not held for ever."""
    with socket.create_connection(("127.0.0.1", servers.tls.port), timeout=10) as sock:
        sock.sendall(HELLOS[0][:40])
        started = time.monotonic()
        read_all(sock, bound=5 + CLOSE_BOUND)
        assert time.monotonic() - started < 5 + CLOSE_BOUND
    servers.assert_serving()


# ----- HTTP/2 frames ---------------------------------------------------------------------------

SETTING_IDS = [1, 2, 3, 4, 5, 6, 8, 9, 0, 7, 0x10, 0xFFFF]
#: Setting values the receiver must refuse (RFC 9113 6.5.2, RFC 8441 3): a connection error.
BAD_SETTING = {2: lambda v: v > 1, 4: lambda v: v > 2**31 - 1,
               5: lambda v: not 16384 <= v <= 2**24 - 1, 8: lambda v: v > 1}


def frame(kind: int, flags: int, stream: int, payload: bytes, verdict: str,
          length: int | None = None) -> dict:
    """A frame to send and what RFC 9113 makes of it on a fresh connection: "ok" (allowed,
    the connection goes on), "error" (a connection error: GOAWAY with an error code),
    "any" (depends on state or implementation)."""
    return {"kind": kind, "flags": flags, "stream": stream, "payload": payload,
            "verdict": verdict, "length": length}


def encode_frame(f: dict) -> bytes:
    payload = f["payload"]
    length = len(payload) if f["length"] is None else f["length"]
    return length.to_bytes(3, "big") + struct.pack(">BBI", f["kind"], f["flags"],
                                                   f["stream"]) + payload


@st.composite
def settings_frame(draw) -> dict:
    values = draw(st.lists(st.tuples(st.sampled_from(SETTING_IDS), st.one_of(
        st.integers(0, 70000), st.sampled_from([2**31 - 1, 2**31, 2**32 - 1, 2**24, 16383]))),
        max_size=4))
    payload = b"".join(struct.pack(">HI", k, v) for k, v in values)
    bad = any(k in BAD_SETTING and BAD_SETTING[k](v) for k, v in values)
    shape = draw(st.sampled_from(["plain", "plain", "plain", "ack-with-payload", "stream",
                                  "odd-length"]))
    if shape == "ack-with-payload" and payload:
        return frame(SETTINGS, ACK, 0, payload, "error")
    if shape == "stream":
        return frame(SETTINGS, 0, draw(st.sampled_from([1, 3])), payload, "error")
    if shape == "odd-length":
        return frame(SETTINGS, 0, 0, payload + b"\x00" * draw(st.integers(1, 5)), "error")
    # An INITIAL_WINDOW_SIZE change reaches open streams' windows: fine on a fresh one.
    return frame(SETTINGS, 0, 0, payload, "error" if bad else "ok")


@st.composite
def window_update(draw) -> dict:
    stream = draw(st.sampled_from([0, 0, 1, 7]))
    increment = draw(st.sampled_from([0, 1, 1000, 2**31 - 1, 2**31 - 65535, 2**31 + 5]))
    payload = struct.pack(">I", increment)
    if draw(st.integers(0, 7)) == 0:
        return frame(WINDOW_UPDATE, 0, stream, payload[:3] or b"", "error")
    if stream == 0:
        if increment & 0x7FFFFFFF == 0:
            return frame(WINDOW_UPDATE, 0, 0, payload, "error")
        # The window starts at 65535: past 2^31-1 overflows (FLOW_CONTROL_ERROR).
        overflow = 65535 + (increment & 0x7FFFFFFF) > 2**31 - 1
        return frame(WINDOW_UPDATE, 0, 0, payload, "error" if overflow else "ok")
    return frame(WINDOW_UPDATE, 0, stream, payload, "any")  # idle or open: state decides


@st.composite
def headers_frame(draw, encoder_blocks: list[bytes]) -> dict:
    """HEADERS with valid, random or mutated HPACK, padding and priority as drawn."""
    stream = draw(st.sampled_from([1, 1, 3, 5, 0, 2, 2**31 - 1]))
    kind = draw(st.sampled_from(["valid", "valid", "random", "mutated", "huge-index"]))
    block = draw(st.sampled_from(encoder_blocks))
    if kind == "random":
        block = draw(st.binary(min_size=1, max_size=40))
    elif kind == "mutated":
        block = draw(mutated_bytes(block))
    elif kind == "huge-index":
        block = b"\xff\xff\xff\xff\x0f"  # an indexed field far past the tables: COMPRESSION
    flags = END_HEADERS | draw(st.sampled_from([0, END_STREAM]))
    payload = block
    verdict = "any"
    depends = None
    if draw(st.integers(0, 4)) == 0:  # PRIORITY flag, maybe depending on itself
        depends = draw(st.sampled_from([0, stream, 3]))
        flags |= 0x20
        payload = struct.pack(">IB", depends, 15) + payload
    if draw(st.integers(0, 4)) == 0:  # PADDED, the pad maybe longer than the frame
        pad = draw(st.integers(0, 255))
        flags |= 0x8
        payload = bytes([pad]) + payload + b"\x00" * min(pad, 10)
        # Padding past what the frame holds after its own fields is a PROTOCOL_ERROR.
        if pad > len(payload) - 1 - (5 if flags & 0x20 else 0):
            verdict = "error"
    if stream == 0 or (kind == "huge-index" and stream % 2):
        # (An even stream id is a connection error too, but the h2 crate decodes the block
        # first and may answer a field it dislikes with RST_STREAM: "any".)
        verdict = "error"
    if flags & 0x20 and depends == stream and stream:
        # A stream that depends on itself is a stream error (RST_STREAM), and the h2 crate
        # checks it first, even on an even stream id (which is a connection error).
        verdict = "any"
    return frame(HEADERS, flags, stream, payload, verdict)


@st.composite
def continuation_flood(draw) -> list[dict]:
    """HEADERS without END_HEADERS, then many CONTINUATION frames (CVE-2024-27316's kind):
    the server must bound what it gathers."""
    n = draw(st.sampled_from([1, 10, 200, 1500]))
    size = draw(st.sampled_from([1, 100, 1000]))
    frames = [frame(HEADERS, END_STREAM, 1, b"\x82", "any")]
    frames += [frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b" * (size // 5 or 1), "any")
               for _ in range(n)]
    if draw(st.booleans()):
        frames.append(frame(CONTINUATION, END_HEADERS, 1, b"", "any"))
    return frames


@st.composite
def raw_frame_strategy(draw) -> dict:
    kind = draw(st.one_of(st.integers(0, 9), st.integers(0, 255)))
    payload = draw(st.binary(max_size=40))
    length = draw(st.one_of(st.none(), st.none(), st.integers(0, 2**24 - 1)))
    stream = draw(st.one_of(st.sampled_from([0, 1, 3, 2]), st.integers(0, 2**32 - 1)))
    flags = draw(st.integers(0, 255))
    verdict = "ok" if kind > 9 and length is None else "any"  # unknown types are ignored
    return frame(kind, flags, stream, payload, verdict, length)


def named_frames() -> st.SearchStrategy:
    return st.sampled_from([
        frame(PING, 0, 0, b"12345678", "ok"),
        frame(PING, 0, 0, b"1234", "error"),
        frame(PING, 0, 1, b"12345678", "error"),
        frame(PING, ACK, 0, b"12345678", "ok"),  # an unsolicited ACK is ignored
        frame(RST_STREAM, 0, 0, b"\x00\x00\x00\x08", "error"),
        frame(RST_STREAM, 0, 9, b"\x00\x00\x00\x08", "error"),  # an idle stream
        frame(RST_STREAM, 0, 1, b"\x00\x00", "error"),
        frame(PRIORITY, 0, 11, struct.pack(">IB", 11, 15), "any"),  # depends on itself
        frame(PRIORITY, 0, 11, struct.pack(">IB", 1, 15), "ok"),
        frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 15), "error"),
        frame(PRIORITY, 0, 13, b"\x00\x00", "any"),
        frame(DATA, 0, 0, b"data", "error"),
        frame(DATA, 0, 15, b"data", "error"),  # an idle stream
        frame(DATA, 0x8, 1, b"\xff" + b"x" * 3, "any"),  # padding past the frame
        frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02\x82", "error"),
        frame(GOAWAY, 0, 0, b"\x00\x00\x00\x00\x00\x00\x00\x00", "any"),
        frame(GOAWAY, 0, 1, b"\x00\x00\x00\x00\x00\x00\x00\x00", "error"),
        frame(CONTINUATION, END_HEADERS, 1, b"\x82", "error"),  # no HEADERS before it
        frame(0xFF, 0, 0, b"unknown", "ok"),
        frame(0x0B, 0xFF, 5, b"", "ok"),
    ])


BLOCKS = [request_block(hpack.Encoder()),
          request_block(hpack.Encoder(), "/status/404"),
          request_block(hpack.Encoder(), "/", [("x-a", "b" * 100)]),
          hpack.Encoder().encode([(":method", "GET"), (":path", "/")]),  # no :scheme
          hpack.Encoder().encode([(":method", "GET"), (":path", "/"), (":scheme", "https"),
                                  ("connection", "close")]),  # forbidden in HTTP/2
          hpack.Encoder().encode([(":method", "CONNECT"), (":protocol", "websocket"),
                                  (":path", "/"), (":scheme", "https"), (":authority", "t")])]


@st.composite
def frame_sequence(draw) -> list[dict]:
    frames: list[dict] = []
    for _ in range(draw(st.integers(1, 6))):
        choice = draw(st.sampled_from(["settings", "window", "headers", "named", "named",
                                       "raw", "flood"]))
        if choice == "settings":
            frames.append(draw(settings_frame()))
        elif choice == "window":
            frames.append(draw(window_update()))
        elif choice == "headers":
            frames.append(draw(headers_frame(BLOCKS)))
        elif choice == "named":
            frames.append(draw(named_frames()))
        elif choice == "raw":
            frames.append(draw(raw_frame_strategy()))
        else:
            frames += draw(continuation_flood())
    return frames


def expected_outcome(frames: list[dict]) -> str:
    """"ok" when every frame is allowed (the connection must then serve a request), "error"
    when the first frame that is not allowed is a certain connection error, else "any"."""
    for f in frames:
        if f["verdict"] != "ok":
            return f["verdict"]
    return "ok"


def h2_socket(servers: Servers, transport: str):
    if transport == "tls":
        sock = servers.tls_socket(["h2"])
        assert sock.selected_alpn_protocol() == "h2"
        return sock
    return socket.create_connection(("127.0.0.1", servers.h2c.port), timeout=10)


@fuzz_settings(600)
@given(frames=frame_sequence(), transport=st.sampled_from(["h2c", "h2c", "tls"]),
       request_first=st.booleans())
def test_http2_frames(servers, frames, transport, request_first):
    if request_first:  # the answer's DATA took from the window: overflow needs more
        frames = [dict(f, verdict="any") if f["kind"] == WINDOW_UPDATE and f["stream"] == 0
                  and len(f["payload"]) == 4 and f["payload"] != bytes(4) else f
                  for f in frames]
    outcome = expected_outcome(frames)
    shown = [(f["kind"], f["flags"], f["stream"], f["payload"][:24], f["verdict"])
             for f in frames[:12]]
    note(f"frames: {shown} ({len(frames)} in all)")
    event(f"expected: {outcome}")
    with h2_socket(servers, transport) as sock:
        encoder, decoder = hpack.Encoder(), hpack.Decoder()
        decoder.max_allowed_table_size = 2**32  # whatever the fuzzed SETTINGS allowed
        sock.sendall(PREFACE + raw_frame(SETTINGS, 0, 0))
        reader = FrameReader(sock)
        if request_first:
            # A valid request on stream 1, answered before the fuzz: streams are then open,
            # so frames about stream 1 are on a closed stream.
            sock.sendall(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(encoder)))
            assert h2_response(sock, reader, decoder, 1) == (200, HELLO)
            outcome = outcome if outcome != "error" or not any(
                f["stream"] == 1 and f["kind"] in (DATA, RST_STREAM, HEADERS, CONTINUATION)
                for f in frames) else "any"
        try:
            sock.sendall(b"".join(encode_frame(f) for f in frames))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        if outcome == "ok":
            # Nothing broke the connection: it still serves, on a fresh stream id (with the
            # settings back to defaults, as a fuzzed window of 0 would hold the answer).
            stream = 101
            sane = struct.pack(">HIHIHIHI", 1, 4096, 4, 65535, 5, 16384, 6, 2**20)
            sock.sendall(raw_frame(SETTINGS, 0, 0, sane)
                         + raw_frame(HEADERS, END_STREAM | END_HEADERS, stream,
                                     request_block(encoder)))
            assert h2_response(sock, reader, decoder, stream) == (200, HELLO)
        try:
            # The TCP half-close under TLS too (SSLSocket.shutdown would drop the TLS layer).
            socket.socket.shutdown(sock, socket.SHUT_WR)
        except OSError:
            pass
        rest = bytes(reader.buf[reader.pos:]) + read_all(sock)
    received = split_frames(rest)
    goaways = [goaway_error(p) for k, _, _, p in received if k == GOAWAY]
    event(f"goaway: {sorted({code for _, code in goaways})}")
    for _, code in goaways:
        assert code <= 0xD, f"unknown GOAWAY error code {code}"
    if outcome == "error":
        assert any(code != 0 for _, code in goaways), \
            f"a connection error without a GOAWAY naming it; got {goaways}"
    servers.assert_serving("h2c" if transport == "h2c" else "tls")


def test_everything_still_serves(servers):
    servers.assert_serving()
