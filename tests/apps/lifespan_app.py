"""Lifespan test apps. The marker file is FERRI_TEST_MARKER (if set): startup writes
"startup", shutdown appends " shutdown".

    app              supports lifespan; startup stores {"greeting": "hello from startup",
                     "counter": 1} in the state; requests answer with the state as JSON;
                     /sleep?s=<seconds> sleeps first (logging "SLEEP-STARTED" to stdout)
    failing_app      answers lifespan.startup.failed with a message
    raising_app      raises during lifespan startup
    no_lifespan_app  an HTTP-only app that rejects the lifespan scope the way many apps
                     do (an assertion)
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

from apps._util import send_json, send_response


def _mark(text: str) -> None:
    marker = os.environ.get("FERRI_TEST_MARKER")
    if marker:
        with open(marker, "a", encoding="utf-8") as fh:
            fh.write(text)


async def _lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from startup"
            scope["state"]["counter"] = 1
            _mark("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _mark(" shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["path"] == "/sleep":
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["1"])[0])
        print("SLEEP-STARTED", flush=True)
        await asyncio.sleep(seconds)
        await send_response(send, 200, b"slept")
        return
    await send_json(send, {"state": scope.get("state")})


async def failing_app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed",
                    "message": "database unreachable: refusing to start"})
        return
    await send_response(send, 200, b"should never serve")


async def raising_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("exploded during startup")
    await send_response(send, 200, b"should never serve")


async def no_lifespan_app(scope, receive, send):
    assert scope["type"] == "http", "only http is supported"
    await send_response(send, 200, b"served without lifespan")
