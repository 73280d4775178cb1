"""Scenario "hello": GET answered with the 13-byte text body "Hello, world!"."""

from __future__ import annotations

from ._asgi import Receive, Send, fixed_headers, serve_lifespan

BODY = b"Hello, world!"
HEADERS = fixed_headers(b"text/plain", len(BODY))


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Reply 200 "Hello, world!" to every HTTP request."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
