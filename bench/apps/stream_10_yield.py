"""Scenario "stream-10-yield": stream-10's 10 chunks, with the app awaiting between two sends
(`asyncio.sleep(0)`), as every real token stream does: each send then happens in its own
turn of the event loop instead of back to back."""

from __future__ import annotations

import asyncio

from ._asgi import Receive, Send, serve_lifespan
from .stream_10 import CHUNKS, HEADERS


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Send the 10 chunks one send() call each, yielding to the loop between them."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
