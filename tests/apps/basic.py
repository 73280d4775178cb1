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
    /sleep            prints "SLEEP-STARTED <tag>", sleeps `s` seconds (asyncio), prints
                      "SLEEP-WOKE <tag>", answers "slept <tag>", prints "SLEEP-DONE <tag>";
                      cancelled while asleep, prints "SLEEP-CANCELLED <tag>" and re-raises
                      (query: s=<float>, default 1, tag=<str>)
    /flood            `mib` MiB (default 200) in 64 KiB body messages; PROGRESS["flood"] counts
                      the bytes send() has taken so far, "FLOOD-DONE" on stderr at the end
    /progress         JSON: PROGRESS
    /ignore-body      never calls receive(): prints "IGNORE-BODY-STARTED", sleeps `s` seconds
                      (default 5), answers "ignored"
    /hop-by-hop       200 "hop-by-hop body" in two body messages, with the connection-specific
                      response header(s) named by `h` (repeatable: connection (keep-alive),
                      connection-close, keep-alive, transfer-encoding, upgrade,
                      proxy-connection) plus x-kept: yes
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from urllib.parse import parse_qs

from apps._util import read_body, send_json, send_response

#: What the long-running routes have done so far (served by /progress).
PROGRESS: dict[str, int] = {}

#: Response headers HTTP/2 forbids (RFC 9113 8.2.2), as an HTTP/1.1 app might set them.
HOP_BY_HOP = {
    "connection": (b"connection", b"keep-alive"),
    "connection-close": (b"connection", b"close"),
    "keep-alive": (b"keep-alive", b"timeout=5, max=100"),
    "transfer-encoding": (b"transfer-encoding", b"chunked"),
    "upgrade": (b"upgrade", b"h2c"),
    "proxy-connection": (b"proxy-connection", b"keep-alive"),
}


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
    elif path == "/sleep":
        tag = query.get("tag", [""])[0]
        print(f"SLEEP-STARTED {tag}", file=sys.stderr, flush=True)
        try:
            await asyncio.sleep(float(query.get("s", ["1"])[0]))
        except asyncio.CancelledError:
            print(f"SLEEP-CANCELLED {tag}", file=sys.stderr, flush=True)
            raise
        print(f"SLEEP-WOKE {tag}", file=sys.stderr, flush=True)
        await send_response(send, 200, f"slept {tag}".encode())
        print(f"SLEEP-DONE {tag}", file=sys.stderr, flush=True)
    elif path == "/flood":
        chunk = b"f" * 65536
        total = int(query.get("mib", ["200"])[0]) * 16
        PROGRESS["flood"] = 0
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for i in range(total):
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": i < total - 1})
            PROGRESS["flood"] += len(chunk)
        print("FLOOD-DONE", file=sys.stderr, flush=True)
    elif path == "/progress":
        await send_json(send, PROGRESS)
    elif path == "/ignore-body":
        print("IGNORE-BODY-STARTED", file=sys.stderr, flush=True)
        await asyncio.sleep(float(query.get("s", ["5"])[0]))
        await send_response(send, 200, b"ignored")
    elif path == "/hop-by-hop":
        headers = [HOP_BY_HOP[name] for name in query.get("h", [])]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"x-kept", b"yes"),
                                *headers]})
        await send({"type": "http.response.body", "body": b"hop-by-hop ", "more_body": True})
        await send({"type": "http.response.body", "body": b"body"})
    else:
        await send_response(send, 200, b"ok")


async def wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
