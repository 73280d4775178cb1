"""Scenario "upload-1m": POST a 1 MiB body; the app counts the bytes and replies with the count.

The body is consumed chunk by chunk and never joined, as a streaming upload handler would.
"""

from __future__ import annotations

from ._asgi import Receive, Send, fixed_headers, serve_lifespan


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Reply with the number of request-body bytes received, as text."""
    if scope["type"] == "http":
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(received).encode()
        headers = fixed_headers(b"text/plain", len(body))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
