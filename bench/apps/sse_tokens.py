"""sse-tokens: a token stream, as an LLM server sends it: 200 small events 10 ms apart.

Query ``?n=200&interval=0.01`` changes the count and the interval.
"""

import asyncio
from urllib.parse import parse_qs

from ._asgi import serve_lifespan

HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    query = parse_qs(scope["query_string"].decode())
    count = int(query.get("n", ["200"])[0])
    interval = float(query.get("interval", ["0.01"])[0])
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    for i in range(count):
        body = b"data: tok%d\n\n" % i
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await asyncio.sleep(interval)
    await send({"type": "http.response.body", "body": b""})
