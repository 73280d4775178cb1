"""Responses with trailers (the `http.response.trailers` extension), for the end-to-end tests.

    /trailers      announces trailers, sends a body in two messages, then the trailer fields
                   in two messages (more_trailers); lists them in `Trailer` for HTTP/1.1
    /extensions    the scope's "extensions" keys as JSON
    /unannounced   sends trailers without announcing them; records the error at /errors
    /errors        what the app's send() raised, as JSON
"""

from __future__ import annotations

import json

ERRORS: list[str] = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path in ("/extensions", "/errors"):
        data = sorted(scope.get("extensions", {})) if path == "/extensions" else ERRORS
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(data).encode()})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"trailer", b"x-checksum, x-count")]})
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"world"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")],
                    "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [[b"x-count", b"2"]]})
    elif path == "/unannounced":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        try:
            await send({"type": "http.response.trailers", "headers": []})
        except RuntimeError as exc:
            ERRORS.append(str(exc))
