"""Scenario "echo-4k": POST a 4 KiB body, read it with receive() and send it back."""

from __future__ import annotations

from ._asgi import Receive, Send, fixed_headers, read_body, serve_lifespan


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Echo the request body (any size) as application/octet-stream."""
    if scope["type"] == "http":
        body = await read_body(receive)
        headers = fixed_headers(b"application/octet-stream", len(body))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
