"""Token-stream apps for test_streams.py: streams that await between sends, as real ones do.

- `/yield?chunks=N&size=S`: N chunks of S bytes, `await asyncio.sleep(0)` between sends;
  chunk i is its number in six digits padded with "." to S bytes, so any loss, duplicate or
  reordering shows.
- `/ticks?n=N&interval=T`: N server-sent events T seconds apart, each carrying the server's
  `time.monotonic()` when it was sent (the test runs on the same host, so the clocks agree).
- `/gc`: the collector's state as JSON (enabled, thresholds, objects frozen), for
  `--gc-policy`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from urllib.parse import parse_qs

from apps._util import serve_lifespan


def yield_chunk(i: int, size: int) -> bytes:
    return f"{i:06d}".encode().ljust(size, b".")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send)
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/yield":
        chunks, size = int(query.get("chunks", "10")), int(query.get("size", "16"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for i in range(chunks):
            await send({"type": "http.response.body", "body": yield_chunk(i, size),
                        "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
    elif scope["path"] == "/ticks":
        count, interval = int(query.get("n", "10")), float(query.get("interval", "0.02"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(count):
            event = f"id: {i}\ndata: {time.monotonic():.6f}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await asyncio.sleep(interval)
        await send({"type": "http.response.body", "body": b""})
    elif scope["path"] == "/gc":
        state = {"enabled": gc.isenabled(), "threshold": gc.get_threshold(),
                 "frozen": gc.get_freeze_count()}
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(state).encode()})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
