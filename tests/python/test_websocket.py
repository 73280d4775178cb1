"""WebSocket end to end: the ASGI websocket.* messages, the frames the engine handles
(fragmentation, ping/pong, UTF-8, size limit, backpressure, keepalive), compression, shutdown
and many sockets at once. Real server process; the `websockets` client library, and raw
sockets where a well-behaved client cannot produce the bytes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import time

import pytest
import websockets
from conftest import http_client, raw_connection, wait_app_event
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

APP = "apps.ws_app:app"
pytestmark = pytest.mark.timeout(60)


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def url(srv, path: str) -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


# ----- raw frames --------------------------------------------------------------------------

def raw_handshake(port: int, path: str = "/echo", extra: str = "") -> socket.socket:
    sock = raw_connection(port)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed mid-frame"
            data += chunk
        return data
    first, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(n)


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0]


# ----- messages ----------------------------------------------------------------------------

def test_echo_text_bytes_and_large_messages(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/echo"), max_size=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            big = os.urandom(3 * 1024 * 1024)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.close(4002, "done")
    run(main())
    assert wait_app_event(srv, "echo-disconnect") == "4002 done"


def test_send_delivered_before_the_close_returns(server):
    """A send() that waited for room completes once its message went out, even when the
    client's close arrived before the app looked again (it raised OSError: Starlette then
    reported 1006 instead of the client's code)."""
    srv = server.start(APP, "--engine-threads", "1")

    async def main():
        async with connect(url(srv, "/big-send-blocked"), max_size=None) as ws:
            await asyncio.sleep(0.5)  # the app now waits in its second send()
            assert await ws.recv() == b"a" * (4 << 20)
            assert await ws.recv() == b"b" * (1 << 20)
            await ws.close(1000)
    run(main())
    assert wait_app_event(srv, "big-send") == "sent"


def test_fragmented_message_is_reassembled(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/echo"), compression=None) as ws:
            await ws.send(["frag", "men", "ted"])  # an iterable goes out as fragments
            assert await ws.recv() == "fragmented"
    run(main())


def test_ping_is_answered_with_pong(server):
    """A ping gets a pong at once, carrying the ping's payload (RFC 6455 5.5.3), without a
    data frame to carry it along; the connection then works as before."""
    srv = server.start(APP)
    sock = raw_handshake(srv.port)
    with sock:
        sock.settimeout(2.0)  # generous for a local pong; a held-back one never comes
        sock.sendall(client_frame(0x9, b"abc"))
        try:
            frame = read_frame(sock)
        except TimeoutError:
            raise AssertionError("no pong within 2 s of a ping") from None
        assert frame == (0xA, b"abc")
        sock.sendall(client_frame(0x1, b"after the ping"))
        assert read_frame(sock) == (0x1, b"after the ping")


def test_control_frames_between_fragments(server):
    srv = server.start(APP)
    sock = raw_handshake(srv.port)
    sock.sendall(client_frame(0x1, b"ab", fin=False) + client_frame(0x9, b"p")
                 + client_frame(0x0, b"cd"))
    assert read_frame(sock) == (0xA, b"p")
    assert read_frame(sock) == (0x1, b"abcd")
    sock.close()


def test_invalid_utf8_text_closes_with_1007(server):
    srv = server.start(APP)
    sock = raw_handshake(srv.port)
    sock.sendall(client_frame(0x1, b"\xff\xfe bad"))
    opcode, payload = read_frame(sock)
    assert (opcode, close_code(payload)) == (0x8, 1007)
    assert wait_app_event(srv, "echo-disconnect").startswith("1007")
    sock.close()


def test_message_over_max_size_closes_with_1009(server):
    srv = server.start(APP, "--ws-max-size", "1000")

    async def main():
        async with connect(url(srv, "/echo")) as ws:
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1009
    run(main())
    assert wait_app_event(srv, "echo-disconnect").startswith("1009")


def test_subprotocol_and_extra_accept_headers(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/subprotocol"), subprotocols=["chat", "v2"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-extra"] == "yes"
            assert json.loads(await ws.recv()) == ["chat", "v2"]
    run(main())


def test_scope(server):
    srv = server.start(APP, "--root-path", "/api")

    async def main():
        async with connect(url(srv, "/scope?q=%C3%A9"), subprotocols=["a", "b"]) as ws:
            return json.loads(await ws.recv())
    scope = run(main())
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/api/scope"  # --root-path /api, prepended as uvicorn does
    assert scope["raw_path"] == "/api/scope"
    assert scope["query_string"] == "q=%C3%A9"
    assert scope["root_path"] == "/api"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["server"] == ["127.0.0.1", srv.port]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    assert scope["state"] == {"greeting": "hi"}  # a copy of the lifespan state
    names = [name for name, _ in scope["headers"]]
    assert "sec-websocket-key" in names and "upgrade" in names


# ----- handshake outcomes ------------------------------------------------------------------

@pytest.mark.parametrize("path,status,body", [
    ("/reject", 403, b"Forbidden\n"),
    ("/deny", 401, b"no entry"),
    ("/raise-early", 500, b"Internal Server Error\n"),
])
def test_refused_handshakes(server, path, status, body):
    srv = server.start(APP)

    async def main():
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(srv, path)):
                pass
        return info.value.response
    response = run(main())
    assert response.status_code == status
    assert bytes(response.body) == body
    if path == "/deny":
        assert response.headers["x-why"] == "token"
    if path == "/raise-early":
        srv.wait_for_log("boom before the handshake")


def test_app_close_code_and_reason(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/close")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    rcvd = run(main())
    assert (rcvd.code, rcvd.reason) == (4001, "bye")
    assert wait_app_event(srv, "close-then-receive") == "websocket.disconnect"


def test_app_close_reason_over_123_bytes_is_cut_not_sent_invalid(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/close?repeat=60")) as ws:  # 180 bytes of reason
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    rcvd = run(main())
    assert rcvd.code == 4001
    assert rcvd.reason == ("bye" * 60)[:123]


@pytest.mark.parametrize("code", [1005, 1006, 999, 5000])
def test_app_close_with_a_reserved_code_is_refused(server, code):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, f"/close?code={code}")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(main()) == 1011  # the app's send() raised: it failed
    assert f"got {code}" in wait_app_event(srv, "close-refused")


@pytest.mark.parametrize("path,code", [("/return", 1000), ("/raise", 1011)])
def test_app_that_ends_without_closing(server, path, code):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, path)) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(main()) == code
    if path == "/raise":
        srv.wait_for_log("boom after accept")
        assert "Traceback" in srv.logs()


def test_send_after_the_peer_left_raises_oserror(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/send-after-close")) as ws:
            await ws.close()
    run(main())
    assert wait_app_event(srv, "send-after-close-got") == "websocket.disconnect"
    assert wait_app_event(srv, "send-after-close") == "OSError"


def test_peer_vanishing_without_close_frame_gives_1006(server):
    srv = server.start(APP)
    sock = raw_handshake(srv.port)
    sock.close()
    assert wait_app_event(srv, "echo-disconnect").startswith("1006")


# ----- compression -------------------------------------------------------------------------

def test_per_message_deflate_is_negotiated_and_works(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/echo")) as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            text = "token " * 5000
            await ws.send(text)
            assert await ws.recv() == text
    run(main())


def test_compressed_frames_are_really_smaller_on_the_wire(server):
    srv = server.start(APP)
    sock = raw_handshake(srv.port, "/stream?n=1",
                         "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    opcode, payload = read_frame(sock)
    assert opcode == 0x1 and payload != b"message 0"  # deflated (RSV1 set), not the text
    sock.close()


def test_no_per_message_deflate_flag(server):
    srv = server.start(APP, "--no-ws-per-message-deflate")

    async def main():
        async with connect(url(srv, "/echo")) as ws:
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"
    run(main())


# ----- flow control and keepalive -----------------------------------------------------------

def test_max_queue_holds_back_a_client_the_app_does_not_read(server):
    """While the app sleeps, the engine stops reading after --ws-max-queue messages, so a
    fast sender blocks on TCP backpressure instead of filling the server's memory; nothing
    is lost once the app reads."""
    srv = server.start(APP, "--ws-max-queue", "2")
    total = 300
    chunk = os.urandom(64 * 1024)  # 300 x 64 KiB = 19 MiB: more than the socket buffers

    async def main():
        async with connect(url(srv, "/no-read?s=4"), compression=None, max_size=None,
                           write_limit=64 * 1024) as ws:
            sent = 0
            start = time.monotonic()

            async def sender():
                nonlocal sent
                for _ in range(total):
                    await ws.send(chunk)
                    sent += 1
            task = asyncio.create_task(sender())
            await asyncio.sleep(1.5)
            blocked_after = sent  # the app has not read anything yet
            await task
            elapsed = time.monotonic() - start
            await ws.close()
            return blocked_after, elapsed
    blocked_after, elapsed = run(main(), timeout=30)
    assert blocked_after < total, "the server read everything while the app was not reading"
    assert elapsed > 3.0, elapsed
    assert wait_app_event(srv, "no-read", timeout=10) == str(total)


def test_keepalive_ping_and_timeout(server):
    srv = server.start(APP, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.5")
    sock = raw_handshake(srv.port)
    start = time.monotonic()
    opcode, _ = read_frame(sock)
    assert opcode == 0x9, opcode  # a ping
    assert time.monotonic() - start < 2
    # Never answered: the server gives up with 1011 (other pings may come first).
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            break
    assert close_code(payload) == 1011
    assert time.monotonic() - start < 5
    assert wait_app_event(srv, "echo-disconnect").startswith("1011")


def test_answered_pings_keep_the_socket_open(server):
    srv = server.start(APP, "--ws-ping-interval", "0.1", "--ws-ping-timeout", "0.3")

    async def main():
        async with connect(url(srv, "/echo")) as ws:  # the client answers pings itself
            await asyncio.sleep(1.5)
            await ws.send("still here")
            assert await ws.recv() == "still here"
    run(main())


# ----- server-wide -------------------------------------------------------------------------

def test_ws_none_hands_upgrades_to_the_app_as_http(server):
    srv = server.start(APP, "--ws", "none")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")


def test_shutdown_closes_sockets_with_1001(server):
    srv = server.start(APP)

    async def main():
        async with connect(url(srv, "/echo")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            srv.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(main()) == 1001
    assert srv.wait() == 0
    assert "echo-disconnect 1001" in srv.logs()


def test_limit_concurrency_counts_open_sockets(server):
    srv = server.start(APP, "--limit-concurrency", "1")

    async def main():
        async with connect(url(srv, "/echo")) as ws:
            with http_client() as c:
                assert c.get(f"{srv.url}/events").status_code == 503
            await ws.send("x")
            assert await ws.recv() == "x"
        await asyncio.sleep(0.3)
        with http_client() as c:
            assert c.get(f"{srv.url}/events").status_code == 200
    run(main())


def test_thousand_concurrent_sockets_echo(server):
    srv = server.start(APP)
    n = 1000

    async def one(i: int, gate: asyncio.Semaphore):
        async with gate:  # a bounded connect rate; the sockets stay open together
            ws = await connect(url(srv, "/echo"), compression=None, ping_interval=None)
        return ws

    async def main():
        gate = asyncio.Semaphore(100)
        sockets = await asyncio.gather(*(one(i, gate) for i in range(n)))
        await asyncio.gather(*(ws.send(f"m{i}") for i, ws in enumerate(sockets)))
        replies = await asyncio.gather(*(ws.recv() for ws in sockets))
        assert replies == [f"m{i}" for i in range(n)]
        await asyncio.gather(*(ws.close() for ws in sockets))
    run(main(), timeout=60)
    assert websockets.__version__


def test_scheme_is_wss_behind_a_tls_proxy(server):
    srv = server.start(APP)  # 127.0.0.1 is a trusted proxy by default

    async def main():
        async with connect(url(srv, "/scope"),
                           additional_headers={"X-Forwarded-Proto": "https",
                                               "X-Forwarded-For": "10.1.2.3"}) as ws:
            return json.loads(await ws.recv())
    scope = run(main())
    assert scope["scheme"] == "wss"
    assert scope["client"][0] == "10.1.2.3"


def test_sockets_are_not_subject_to_the_request_deadline(server):
    srv = server.start(APP, "--timeout-request", "0.3")

    async def main():
        async with connect(url(srv, "/echo")) as ws:
            await asyncio.sleep(1.0)
            await ws.send("after the deadline")
            assert await ws.recv() == "after the deadline"
    run(main())


def test_threaded_engine_serves_websockets(server):
    """The engine on its own thread (--engine-threads 1) wakes the app across threads."""
    srv = server.start(APP, "--engine-threads", "1")

    async def main():
        async with connect(url(srv, "/echo"), max_size=None) as ws:
            for i in range(200):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            big = os.urandom(1024 * 1024)
            await ws.send(big)
            assert await ws.recv() == big
    run(main())
    assert wait_app_event(srv, "echo-disconnect") == "1000 "


def test_compressed_sockets_do_not_each_keep_a_compressor(server):
    """Our side compresses without context takeover, from a shared pool: an open socket that
    negotiated permessage-deflate must not hold its own ~300 KiB deflate state. A generous
    bound (measured: about 24 KiB per socket, against about 340 KiB with a compressor each)."""
    srv = server.start(APP)
    n = 300

    def rss_kib() -> int:
        with open(f"/proc/{srv.proc.pid}/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0])

    async def main():
        before = rss_kib()
        sockets = [await connect(url(srv, "/echo"), ping_interval=None) for _ in range(n)]
        for ws in sockets:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.send("token " * 50)
            assert await ws.recv() == "token " * 50
        grown = (rss_kib() - before) / n
        for ws in sockets:
            await ws.close()
        return grown
    per_socket = run(main(), timeout=60)
    assert per_socket < 120, f"{per_socket:.0f} KiB per compressed socket"
