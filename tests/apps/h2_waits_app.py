"""An app that only waits in receive(), for the HTTP/2 stream-reset tests: it never sends
again after it starts waiting (so nothing but receive() can tell it the client left), and
records every message receive() returned, readable at /received.

    /wait-before-start  reads the request body, prints "WAITING <tag>", awaits receive()
                        once more, records, returns without sending anything
    /wait-after-start   sends the response start and one body chunk "started" (more_body),
                        prints "WAITING <tag>", awaits receive() once more, records, returns
                        without sending again
    /received           JSON: {tag: {"messages": [what receive() returned, in order, bytes as
                        latin-1 text], "at": time.monotonic() when the last one came}}
                        (query for all routes: tag=<str>)
"""

from __future__ import annotations

import sys
import time
from urllib.parse import parse_qs

from apps._util import send_json

RECEIVED: dict[str, dict] = {}


def _plain(message: dict) -> dict:
    return {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in message.items()}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    tag = parse_qs(scope["query_string"].decode()).get("tag", [""])[0]
    if path == "/received":
        await send_json(send, RECEIVED)
        return
    record = RECEIVED.setdefault(tag, {"messages": [], "at": None})

    async def receive_and_record() -> dict:
        message = await receive()
        record["messages"].append(_plain(message))
        record["at"] = time.monotonic()
        return message

    while True:  # the body (none is sent: one http.request with more_body false)
        message = await receive_and_record()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    if path == "/wait-after-start":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
    print(f"WAITING {tag}", file=sys.stderr, flush=True)
    await receive_and_record()
    print(f"RECEIVED {tag}", file=sys.stderr, flush=True)
