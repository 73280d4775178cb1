"""The app behind nginx in tests/python/test_nginx.py. Times are time.monotonic()
(CLOCK_MONOTONIC is system-wide on Linux, so the test process can compare them).

HTTP:
    /whoami           JSON: the scope's client (a list, or null over a Unix socket), scheme,
                      server, http_version and the x-forwarded-* / connection / host headers
                      as the app received them
    /upload           reads the body as it streams in, keeping only a count and a sha256;
                      JSON: {"bytes", "sha256", "messages", "first_byte_at", "last_byte_at"}
    /sse              text/event-stream: "data: one", then after `gap` seconds (default 2)
                      "data: two", then the end; `X-Accel-Buffering: no` unless ?buffered=1
    /req?id=ID        writes "REQ <id> <time>" to stdout when the app starts it, answers
                      "ok <id>"
    /pid, /sleep      tests/apps/workers_app.py (the process id; sleep `s` seconds, printing
                      "SLEEP-STARTED <pid>", answer "slept")
WebSocket:
    /whoami           accept; send the same JSON as HTTP /whoami; wait for the close
    anything else     tests/apps/ws_app.py (e.g. /echo echoes text and bytes)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from urllib.parse import parse_qs

from apps import workers_app, ws_app
from apps._util import send_json, send_response, serve_lifespan

SHOWN_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"connection", b"host", b"upgrade")


def _whoami(scope) -> dict:
    headers: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        if name in SHOWN_HEADERS:
            headers.setdefault(name.decode(), []).append(value.decode("latin-1"))
    client = scope.get("client")
    server = scope.get("server")
    return {
        "client": None if client is None else list(client),
        "scheme": scope["scheme"],
        "server": None if server is None else list(server),
        "http_version": scope["http_version"],
        "headers": headers,
    }


async def _upload(receive, send) -> None:
    digest = hashlib.sha256()
    count = messages = 0
    first = last = None
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client left
        messages += 1
        chunk = message.get("body", b"")
        if chunk:
            last = time.monotonic()
            if first is None:
                first = last
            count += len(chunk)
            digest.update(chunk)
        if not message.get("more_body", False):
            break
    await send_json(send, {"bytes": count, "sha256": digest.hexdigest(), "messages": messages,
                           "first_byte_at": first, "last_byte_at": last})


async def _sse(scope, send) -> None:
    query = parse_qs(scope["query_string"].decode())
    gap = float(query.get("gap", ["2"])[0])
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    if query.get("buffered", ["0"])[0] != "1":
        headers.append((b"x-accel-buffering", b"no"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
    await asyncio.sleep(gap)
    await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send)
        return
    path = scope["path"]
    if scope["type"] == "websocket":
        if path != "/whoami":
            await ws_app.app(scope, receive, send)
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_whoami(scope))})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    if path == "/whoami":
        await send_json(send, _whoami(scope))
    elif path == "/upload":
        await _upload(receive, send)
    elif path == "/sse":
        await _sse(scope, send)
    elif path == "/req":
        rid = parse_qs(scope["query_string"].decode()).get("id", ["?"])[0]
        # One write(2) for the whole line: print() makes two (the text, then the newline),
        # and the access log's writer thread may put its lines between them.
        os.write(1, f"REQ {rid} {time.monotonic():.6f}\n".encode())
        await send_response(send, 200, f"ok {rid}".encode())
    else:
        await workers_app.app(scope, receive, send)

