"""A routing app for the HTTP basics, body and logging tests.

    /                 "Hello, world!" in one message (Content-Length)
    /stream           "Hello", ", ", "world!" as three body messages, `delay` seconds apart
                      (query: delay=<float>, default 1)
    /status/<code>    an empty response with that status
    /echo             the request body back, with x-body-messages = number of http.request
                      messages and x-last-more-body = more_body of the last one
    /digest           JSON: length and sha256 of the request body, and the messages seen
    /big              a 1 MiB response body in one message (query: mib=<int> MiB instead)
    /endless          a body chunk every 50 ms until receive() says http.disconnect, then
                      "ENDLESS-STOPPED" on stderr
    /anything         "ok"
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from urllib.parse import parse_qs

from apps._util import read_body, send_json, send_response


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: unsupported on purpose (auto mode tolerates it)
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    if path == "/":
        await send_response(send, 200, b"Hello, world!")
    elif path == "/stream":
        delay = float(query.get("delay", ["1"])[0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        parts = [b"Hello", b", ", b"world!"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            await send({"type": "http.response.body", "body": part, "more_body": not last})
            if not last:
                await asyncio.sleep(delay)
    elif path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/echo":
        body, messages = await read_body(receive)
        await send_response(send, 200, body, headers=[
            (b"x-body-messages", str(len(messages)).encode()),
            (b"x-last-more-body", str(messages[-1]["more_body"]).encode()),
        ], content_type=b"application/octet-stream")
    elif path == "/digest":
        body, messages = await read_body(receive)
        await send_json(send, {
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "messages": messages,
        })
    elif path == "/big":
        mib = int(query.get("mib", ["1"])[0])
        await send_response(send, 200, bytes(range(256)) * 4096 * mib,
                            content_type=b"application/octet-stream")
    elif path == "/endless":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
        while not disconnected.done():
            try:
                await send({"type": "http.response.body", "body": b"tick\n",
                            "more_body": True})
            except OSError:  # the client left (ASGI 2.4): the same ending
                break
            await asyncio.sleep(0.05)
        disconnected.cancel()
        print("ENDLESS-STOPPED", file=sys.stderr, flush=True)
    else:
        await send_response(send, 200, b"ok")


async def wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
