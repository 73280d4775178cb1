"""Scenario "stream-10": a streamed response of 10 body messages with more_body=True.

No content-length is set, so HTTP/1.1 servers use chunked transfer encoding. Each of the 10
chunks is 128 bytes; a final empty message with more_body=False ends the response. This
measures the per-message cost of the send() path rather than bandwidth.
"""

from __future__ import annotations

from ._asgi import Receive, Send, serve_lifespan

CHUNK_COUNT = 10
CHUNK_SIZE = 128
CHUNKS = [f"chunk {i:02d} ".ljust(CHUNK_SIZE - 1, ".").encode() + b"\n" for i in range(CHUNK_COUNT)]
BODY = b"".join(CHUNKS)
HEADERS = [(b"content-type", b"text/plain")]


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Send the 10 chunks one send() call each, then close the body."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
