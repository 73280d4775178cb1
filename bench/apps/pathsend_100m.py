"""Scenario "pathsend-100m": GET answered with a 100 MiB file. Where the server offers the
`http.response.pathsend` extension (ferricorn, Granian) the app names the file and the
server sends it; elsewhere (uvicorn, Hypercorn) the app reads it in 1 MiB chunks and sends
them, as Starlette's FileResponse does."""

from __future__ import annotations

import os
import tempfile

from ._asgi import Receive, Send, serve_lifespan

SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024
#: One file per machine, made once: the same bytes for every server of a run.
PATH = os.path.join(tempfile.gettempdir(), "ferricorn-bench-pathsend-100m.bin")


def _ensure_file() -> None:
    if os.path.exists(PATH) and os.path.getsize(PATH) == SIZE:
        return
    part = f"{PATH}.{os.getpid()}"
    with open(part, "wb") as f:
        block = bytes(range(256)) * (CHUNK // 256)
        for _ in range(SIZE // CHUNK):
            f.write(block)
    os.replace(part, PATH)


_ensure_file()
HEADERS = [(b"content-type", b"application/octet-stream"),
           (b"content-length", str(SIZE).encode())]


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Send the file, by path where the server can."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    if "http.response.pathsend" in scope.get("extensions", {}):
        await send({"type": "http.response.pathsend", "path": PATH})
        return
    with open(PATH, "rb") as f:
        while chunk := f.read(CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
