"""A routing app for the HTTP basics, body and logging tests.

    /                 "Hello, world!" in one message (Content-Length)
    /stream           "Hello", ", ", "world!" as three body messages, `delay` seconds apart
                      (query: delay=<float>, default 1)
    /status/<code>    an empty response with that status
    /echo             the request body back, with x-body-messages = number of http.request
                      messages and x-last-more-body = more_body of the last one
    /digest           JSON: length and sha256 of the request body, and the messages seen
    /big              a 1 MB response body in one message
    /anything         "ok"
"""

from __future__ import annotations

import asyncio
import hashlib
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
        await send_response(send, 200, bytes(range(256)) * 4096,
                            content_type=b"application/octet-stream")
    else:
        await send_response(send, 200, b"ok")
