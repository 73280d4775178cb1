"""Small helpers shared by the raw ASGI benchmark apps.

Kept deliberately tiny: each app should show exactly what it sends, so the benchmark measures
the server and not a framework.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol so no server logs "lifespan unsupported"."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    """Read the whole request body with receive(), however the server chunks it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def fixed_headers(content_type: bytes, length: int) -> list[tuple[bytes, bytes]]:
    """Response headers for a body of known length."""
    return [(b"content-type", content_type), (b"content-length", str(length).encode())]
