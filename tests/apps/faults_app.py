"""Apps for the fault tests (tests/python/test_faults.py).

    app                    lifespan supported (a no-op);
                           /pid              the process id, as text
                           /sleep?s=<secs>   sleeps (asyncio), then "slept"
                           anything else     "ok"
    shutdown_raising_app   as `app`, but raises RuntimeError("exploded during shutdown") when
                           it receives lifespan.shutdown
    shutdown_failed_app    as `app`, but answers lifespan.shutdown with
                           lifespan.shutdown.failed ("could not flush the queue")
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

from apps._util import send_response


async def _http(scope, receive, send) -> None:
    path = scope["path"]
    if path == "/pid":
        await send_response(send, 200, str(os.getpid()).encode())
    elif path == "/sleep":
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["1"])[0])
        await asyncio.sleep(seconds)
        await send_response(send, 200, b"slept")
    else:
        await send_response(send, 200, b"ok")


async def _lifespan(receive, send, on_shutdown: str | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown == "raise":
                raise RuntimeError("exploded during shutdown")
            if on_shutdown == "fail":
                await send({"type": "lifespan.shutdown.failed",
                            "message": "could not flush the queue"})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, None)
    else:
        await _http(scope, receive, send)


async def shutdown_raising_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, "raise")
    else:
        await _http(scope, receive, send)


async def shutdown_failed_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, "fail")
    else:
        await _http(scope, receive, send)
