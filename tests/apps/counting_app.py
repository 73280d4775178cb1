"""An app that counts its calls, for the HTTP/2 abuse tests (tests/python/test_http2_limits.py):
how many requests reached the app, per path, whatever the client did to them.

    /calls     JSON {path: calls} for every other path (this one is not counted)
    /sleep     sleeps `s` seconds (asyncio; query: s=<float>, default 1), answers "slept"
    anything   "Hello, world!"
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import parse_qs

from apps._util import send_json, send_response

#: Calls per path since the process started.
CALLS: Counter[str] = Counter()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: unsupported on purpose (auto mode tolerates it)
    path = scope["path"]
    if path == "/calls":
        await send_json(send, dict(CALLS))
        return
    CALLS[path] += 1
    if path == "/sleep":
        query = parse_qs(scope["query_string"].decode())
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        await send_response(send, 200, b"slept")
    else:
        await send_response(send, 200, b"Hello, world!")
