"""Scenario "json": GET answered with a 1 KiB (1,024-byte) JSON document, serialized once.

The document is serialized at import so the benchmark measures the server's response path,
not the JSON encoder; the padding field brings it to exactly 1,024 bytes.
"""

from __future__ import annotations

import json

from ._asgi import Receive, Send, fixed_headers, serve_lifespan

SIZE = 1024


def build_document(size: int = SIZE) -> bytes:
    """A plausible API payload (a page of users), padded to exactly ``size`` bytes."""
    document = {
        "page": 1,
        "per_page": 8,
        "total": 8,
        "users": [
            {
                "id": i,
                "name": f"user-{i:03d}",
                "email": f"user-{i:03d}@example.com",
                "active": i % 3 != 0,
                "score": round(i * 1.75, 2),
            }
            for i in range(1, 9)
        ],
        "padding": "",
    }
    unpadded = len(json.dumps(document, separators=(",", ":")))
    if unpadded > size:
        raise ValueError(f"document is {unpadded} bytes, more than {size}")
    document["padding"] = "x" * (size - unpadded)
    body = json.dumps(document, separators=(",", ":")).encode()
    assert len(body) == size, len(body)
    return body


BODY = build_document()
HEADERS = fixed_headers(b"application/json", len(BODY))


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Reply with the pre-serialized 1 KiB JSON document."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
