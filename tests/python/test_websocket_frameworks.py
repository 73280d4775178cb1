"""Framework WebSocket endpoints served unchanged: FastAPI/Starlette and Django Channels.

Served apps: tests/apps/ws_frameworks_app.py and tests/apps/channels_app.py. The client is
the `websockets` library (asyncio API), driven with asyncio.run inside plain test functions;
every exchange runs under a timeout so that a hang fails the test instead of blocking.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import http_client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

#: Upper bound for one whole client exchange (connect, messages, close).
EXCHANGE_TIMEOUT = 15.0


def run(coro_fn, timeout: float = EXCHANGE_TIMEOUT):
    """Run `coro_fn()` to completion under a timeout; returns its result."""

    async def bounded():
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def ws_url(srv, path: str) -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


def ws_connect(srv, path: str, **kwargs):
    """`websockets` connect that ignores proxy settings and cannot wait forever."""
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    return connect(ws_url(srv, path), proxy=None, **kwargs)


def handshake_status(srv, path: str, **kwargs) -> int:
    """Connect, expect the handshake to be refused; returns the HTTP status code."""

    async def attempt():
        try:
            async with ws_connect(srv, path, **kwargs):
                pass
        except InvalidStatus as exc:
            return exc.response.status_code
        raise AssertionError(f"handshake to {path} unexpectedly succeeded")

    return run(attempt)


def wait_for_json(srv, path: str, predicate, timeout: float = 5.0):
    """Poll an HTTP JSON endpoint until `predicate(value)` holds; returns the value."""
    deadline = time.monotonic() + timeout
    with http_client() as client:
        while True:
            value = client.get(srv.url + path).json()
            if predicate(value) or time.monotonic() >= deadline:
                return value
            time.sleep(0.05)


@pytest.fixture(scope="module")
def fastapi_ws(module_server):
    return module_server.start("apps.ws_frameworks_app:app")


@pytest.fixture(scope="module")
def channels_ws(module_server):
    return module_server.start("apps.channels_app:app")


# --- FastAPI / Starlette ---------------------------------------------------------------------


def test_fastapi_echo_text(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/echo") as ws:
            replies = []
            for text in ("hello", "", "ünïcødé ✓", "x" * 70_000):
                await ws.send(text)
                replies.append(await ws.recv())
            await ws.close(code=4321, reason="client done")
            return replies

    replies = run(exchange)
    assert replies == ["echo: hello", "echo: ", "echo: ünïcødé ✓", "echo: " + "x" * 70_000]
    # The endpoint saw WebSocketDisconnect with the client's close code.
    seen = wait_for_json(fastapi_ws, "/disconnects", lambda codes: 4321 in codes)
    assert 4321 in seen


def test_fastapi_echo_many_messages_pipelined(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/echo") as ws:
            for i in range(200):
                await ws.send(f"m{i}")
            return [await ws.recv() for _ in range(200)]

    assert run(exchange) == [f"echo: m{i}" for i in range(200)]


def test_fastapi_bytes(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/bytes") as ws:
            await ws.send(b"\x00\x01abc\xff")
            first = await ws.recv()
            await ws.send(bytes(range(256)) * 100)
            second = await ws.recv()
            return first, second

    first, second = run(exchange)
    assert first == b"\xffcba\x01\x00"
    assert isinstance(second, bytes)
    assert second == (bytes(range(256)) * 100)[::-1]


def test_fastapi_receive_json_send_json(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/json") as ws:
            out = []
            for n in (1, 21, -4):
                await ws.send(json.dumps({"n": n}))
                out.append(json.loads(await ws.recv()))
            return out

    assert run(exchange) == [
        {"n": 1, "double": 2},
        {"n": 21, "double": 42},
        {"n": -4, "double": -8},
    ]


def test_starlette_websocket_endpoint_class(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/endpoint") as ws:
            greeting = json.loads(await ws.recv())
            replies = []
            for payload in ({"a": 1}, [1, 2, 3], "str"):
                await ws.send(json.dumps(payload))
                replies.append(json.loads(await ws.recv()))
            await ws.close(code=4555)
            return greeting, replies

    greeting, replies = run(exchange)
    assert greeting == {"hello": "starlette"}
    assert replies == [
        {"count": 1, "got": {"a": 1}},
        {"count": 2, "got": [1, 2, 3]},
        {"count": 3, "got": "str"},
    ]
    # on_disconnect ran with the client's close code.
    assert 4555 in wait_for_json(fastapi_ws, "/disconnects", lambda codes: 4555 in codes)


def test_fastapi_path_and_query_params(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/items/42?q=needle%20x") as ws:
            data = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return data, ws.close_code

    data, code = run(exchange)
    assert data == {"item_id": 42, "q": "needle x", "path": "/ws/items/42"}
    assert code == 1000


def test_fastapi_path_param_validation_rejects_handshake(fastapi_ws):
    # "abc" is not an int: FastAPI's validation handler sends websocket.close (1008) before
    # accepting -> HTTP 403, as uvicorn and hypercorn answer. FastAPI passes the validation
    # errors (a list) as the close "reason"; a reason that is never sent must not matter.
    assert handshake_status(fastapi_ws, "/ws/items/abc") == 403


def test_fastapi_header_dependency_accepts(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/private?user=alice",
                              additional_headers={"X-Token": "secret"}) as ws:
            data = json.loads(await ws.recv())
            await ws.send("done")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return data, ws.close_code

    data, code = run(exchange)
    assert data == {"token": "secret", "user": "alice"}
    assert code == 1000


def test_fastapi_header_dependency_rejects(fastapi_ws):
    assert handshake_status(fastapi_ws, "/ws/private") == 403
    assert handshake_status(fastapi_ws, "/ws/private",
                            additional_headers={"X-Token": "wrong"}) == 403


def test_fastapi_close_before_accept_is_403(fastapi_ws):
    assert handshake_status(fastapi_ws, "/ws/forbidden") == 403


def test_fastapi_websocket_exception_before_accept_is_403(fastapi_ws):
    assert handshake_status(fastapi_ws, "/ws/raise-exception") == 403


def test_fastapi_unknown_websocket_route_is_403(fastapi_ws):
    # Starlette's router answers an unmatched websocket scope with websocket.close.
    assert handshake_status(fastapi_ws, "/ws/nope") == 403


def test_fastapi_server_close_with_custom_code(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/bye") as ws:
            text = await ws.recv()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return text, info.value.rcvd.code, info.value.rcvd.reason

    assert run(exchange) == ("bye", 4001, "done")


def test_fastapi_subprotocol(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/subprotocol",
                              subprotocols=["chat.v2", "chat.v1"]) as ws:
            offered = json.loads(await ws.recv())
            return ws.subprotocol, offered

    assert run(exchange) == ("chat.v2", ["chat.v2", "chat.v1"])


def test_fastapi_iter_text(fastapi_ws):
    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/iter") as ws:
            out = []
            for word in ("abc", "Def"):
                await ws.send(word)
                out.append(await ws.recv())
            return out

    assert run(exchange) == ["ABC", "DEF"]


def test_fastapi_permessage_deflate_round_trip(fastapi_ws):
    payload = "compress me " * 5000

    async def exchange():
        async with ws_connect(fastapi_ws, "/ws/echo", compression="deflate") as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await ws.send(payload)
            return extensions, await ws.recv()

    extensions, reply = run(exchange)
    assert "permessage-deflate" in extensions
    assert reply == "echo: " + payload


def test_fastapi_http_routes_still_served(fastapi_ws):
    with http_client() as client:
        response = client.get(fastapi_ws.url + "/disconnects")
    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_fastapi_message_too_big_closes_1009(server):
    # RFC 6455 7.4.1: 1009 "message too big" is what the peer must be told.
    srv = server.start("apps.ws_frameworks_app:app", "--ws-max-size", "1024")

    async def exchange():
        async with ws_connect(srv, "/ws/echo") as ws:
            await ws.send("a" * 1000)
            small = await ws.recv()
            await ws.send("b" * 5000)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return small, info.value.rcvd.code

    small, code = run(exchange)
    assert small == "echo: " + "a" * 1000
    assert code == 1009
    assert srv.stop() == 0


def test_fastapi_with_ws_none_is_plain_http(server):
    # --ws none: the upgrade request reaches FastAPI as HTTP; no route -> no handshake.
    srv = server.start("apps.ws_frameworks_app:app", "--ws", "none")
    status = handshake_status(srv, "/ws/echo")
    assert status != 101
    assert 400 <= status < 500
    assert srv.stop() == 0


# --- Django Channels -------------------------------------------------------------------------


def test_channels_http_still_served(channels_ws):
    with http_client() as client:
        response = client.get(channels_ws.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello from Django with Channels"


def test_channels_echo_text_and_bytes(channels_ws):
    async def exchange():
        async with ws_connect(channels_ws, "/ws/echo/") as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send("ünïcødé")
            text2 = await ws.recv()
            await ws.send(b"\x01\x02\x03")
            data = await ws.recv()
            await ws.close(code=4444)
            return text, text2, data

    assert run(exchange) == ("echo: hello", "echo: ünïcødé", b"\x03\x02\x01")
    seen = wait_for_json(channels_ws, "/disconnects", lambda codes: 4444 in codes)
    assert 4444 in seen


def test_channels_json_consumer(channels_ws):
    async def exchange():
        async with ws_connect(channels_ws, "/ws/json/") as ws:
            out = []
            for n in (3, 50):
                await ws.send(json.dumps({"n": n}))
                out.append(json.loads(await ws.recv()))
            return out

    assert run(exchange) == [{"n": 3, "double": 6}, {"n": 50, "double": 100}]


def test_channels_url_kwargs_query_and_subprotocol(channels_ws):
    async def exchange():
        async with ws_connect(channels_ws, "/ws/room/lobby/?a=1&b=two",
                              subprotocols=["proto.one", "proto.two"]) as ws:
            return ws.subprotocol, [await ws.recv() for _ in range(3)]

    subprotocol, messages = run(exchange)
    assert subprotocol == "proto.one"
    assert messages == ["lobby", "a=1&b=two", "proto.one,proto.two"]


def test_channels_reject_in_connect_is_403(channels_ws):
    assert handshake_status(channels_ws, "/ws/reject/") == 403


def test_channels_close_with_custom_code(channels_ws):
    async def exchange():
        async with ws_connect(channels_ws, "/ws/close/") as ws:
            text = await ws.recv()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return text, info.value.rcvd.code

    assert run(exchange) == ("bye", 4001)


def test_channels_sync_consumer(channels_ws):
    async def exchange():
        async with ws_connect(channels_ws, "/ws/sync/") as ws:
            out = []
            for word in ("one", "two"):
                await ws.send(word)
                out.append(await ws.recv())
            return out

    assert run(exchange) == ["sync: one", "sync: two"]


def test_channels_unknown_route_fails_handshake(channels_ws):
    # URLRouter raises ValueError("No route found ...") before the handshake: the server
    # answers the upgrade with 500 (as it does for any app exception before accept).
    assert handshake_status(channels_ws, "/ws/missing/") == 500
    # The server is still healthy afterwards.
    async def exchange():
        async with ws_connect(channels_ws, "/ws/echo/") as ws:
            await ws.send("still here")
            return await ws.recv()

    assert run(exchange) == "echo: still here"
