"""Raw ASGI WebSocket apps for the end-to-end tests, one behaviour per path. What happens
after a client is gone is recorded in EVENTS, readable over HTTP at /events (JSON list of
[tag, what]).

    /echo            accept; echo text and bytes until the disconnect (recorded with its
                     code and reason)
    /subprotocol     accept with the first offered subprotocol and an extra header
    /scope           accept; send the scope as JSON
    /reject          websocket.close before accepting (the client sees 403)
    /deny            a 401 denial response through websocket.http.response.*
    /close           accept; close with 4001 "bye"
    /return          accept; return without closing (the server closes with 1000)
    /raise           accept; raise (the server closes with 1011)
    /raise-early     raise before the handshake (the client sees 500)
    /send-after-close
                     accept; wait for the disconnect, then try send(): records "OSError"
    /no-read         accept; never read (backpressure); record how long until disconnect
    /stream          accept; send N text messages ("n" query parameter), then close
    /big-send-blocked
                     accept; send 4 MiB, then 1 MiB while the loop is blocked for 2 s;
                     records whether the second send() returned ("sent") or raised
                     ("OSError")
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs

from apps._util import send_json, serve_lifespan

EVENTS: list[list[str]] = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send, {"greeting": "hi"})
        return
    if scope["type"] == "http":
        await send_json(send, EVENTS)
        return
    assert scope["type"] == "websocket"
    root = scope.get("root_path", "")  # routes are below --root-path, as in Starlette
    path = scope["path"][len(root):] if scope["path"].startswith(root) else scope["path"]
    message = await receive()
    assert message == {"type": "websocket.connect"}, message

    if path == "/reject":
        await send({"type": "websocket.close"})
        return
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"token")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    if path == "/raise-early":
        raise RuntimeError("boom before the handshake")
    if path == "/subprotocol":
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-extra", b"yes")]})
        await send({"type": "websocket.send", "text": json.dumps(offered)})
        await receive()
        return
    await send({"type": "websocket.accept"})

    if path == "/echo":
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                what = f"{message['code']} {message['reason']}"
                EVENTS.append(["echo-disconnect", what])
                print(f"echo-disconnect {what}", flush=True)  # read from the log at shutdown
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif path == "/scope":
        shown = dict(scope)
        shown["state"] = dict(scope.get("state") or {})
        shown["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        shown["raw_path"] = scope["raw_path"].decode()
        shown["query_string"] = scope["query_string"].decode()
        shown["client"] = list(scope["client"])
        shown["server"] = list(scope["server"])
        await send({"type": "websocket.send", "text": json.dumps(shown)})
        await receive()
    elif path == "/close":
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if p)
        code = int(query.get("code", "4001"))
        reason = "bye" * int(query.get("repeat", "1"))
        try:
            await send({"type": "websocket.close", "code": code, "reason": reason})
        except RuntimeError as exc:
            EVENTS.append(["close-refused", str(exc)])
            raise
        message = await receive()
        EVENTS.append(["close-then-receive", message["type"]])
    elif path == "/return":
        return
    elif path == "/raise":
        raise RuntimeError("boom after accept")
    elif path == "/send-after-close":
        message = await receive()
        EVENTS.append(["send-after-close-got", message["type"]])
        try:
            await send({"type": "websocket.send", "text": "too late"})
            EVENTS.append(["send-after-close", "sent"])
        except OSError:
            EVENTS.append(["send-after-close", "OSError"])
    elif path == "/no-read":
        await asyncio.sleep(float(parse_qs(scope["query_string"].decode()).get("s", ["2"])[0]))
        count = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            count += 1
        EVENTS.append(["no-read", str(count)])
    elif path == "/big-send-blocked":
        # The first message fills the socket, so the second waits in send() for room; then
        # the loop stalls while an engine on its own thread writes both and reads the
        # client's close, all before the app looks again.
        await send({"type": "websocket.send", "bytes": b"a" * (4 << 20)})
        asyncio.get_running_loop().call_soon(time.sleep, 2.0)
        try:
            await send({"type": "websocket.send", "bytes": b"b" * (1 << 20)})
            EVENTS.append(["big-send", "sent"])
        except OSError:
            EVENTS.append(["big-send", "OSError"])
    elif path == "/stream":
        n = int(parse_qs(scope["query_string"].decode()).get("n", ["10"])[0])
        for i in range(n):
            await send({"type": "websocket.send", "text": f"message {i}"})
        await send({"type": "websocket.close", "code": 1000})
