"""Scenario "slow-100ms": every request waits 100 ms (asyncio.sleep) before "Hello, world!".

With 1,000 connections the ideal is 10,000 requests/s at ~100 ms latency; the gap measures how
well the server keeps many in-flight requests cheap.
"""

from __future__ import annotations

import asyncio

from ._asgi import Receive, Send, fixed_headers, serve_lifespan

DELAY_S = 0.1
BODY = b"Hello, world!"
HEADERS = fixed_headers(b"text/plain", len(BODY))


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Sleep 100 ms, then reply "Hello, world!"."""
    if scope["type"] == "http":
        await asyncio.sleep(DELAY_S)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
