"""Scenario "ws-echo": a WebSocket echo (text and bytes); plain HTTP gets "ws-echo" (the
harness's readiness check)."""

from __future__ import annotations

from ._asgi import Receive, Send, fixed_headers, serve_lifespan

BODY = b"ws-echo"
HEADERS = fixed_headers(b"text/plain", len(BODY))


async def app(scope: dict, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
