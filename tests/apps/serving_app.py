"""App for the serving-policy tests (admission, cancel on disconnect, request timeout,
blocked-loop warning). Every request except /stats and /events is counted as an app call
and its `tag` query parameter appended to STATS["order"] as the app sees it. What a
request went through is recorded in EVENTS[tag] as [what, time.monotonic()] pairs
(CLOCK_MONOTONIC is system-wide on Linux, so the test process can compare the times).

    /hello                answers 200 "hello"
    /slow?s=S             prints "SLOW-STARTED <tag>", sleeps S s (asyncio), answers "slow"
    /sleep?s=S            stands in for a model call: prints "ENTERED <tag>", awaits
                          asyncio.sleep(S); records "cancelled" if that raises CancelledError
                          (and re-raises), else "completed", then answers 200 and records
                          "send: OSError" if send() raises OSError
    /wait-receive         reads the body, prints "ENTERED <tag>", waits in receive(); records
                          "cancelled" (re-raised) or the type of the message that arrived,
                          then tries send() ("send: OSError" / "sent") and records "completed"
    /stream               streams 100-byte chunks every 50 ms (for 20 s at most); records
                          "cancelled" (re-raised) or "send: OSError"
    /block?s=S            blocks the event-loop thread with time.sleep(S), answers "unblocked"
    /stats                {"calls": N, "order": [tags]} (not counted)
    /events               EVENTS (not counted)
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from apps._util import read_body, send_json, send_response, serve_lifespan

STATS: dict = {"calls": 0, "order": []}
EVENTS: dict[str, list] = {}


def _query(scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


def _record(tag: str, what: str) -> None:
    EVENTS.setdefault(tag, []).append([what, time.monotonic()])


def _kind(exc: BaseException) -> str:
    return "OSError" if isinstance(exc, OSError) else type(exc).__name__


async def _try_send(send, tag: str, body: bytes) -> None:
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    except Exception as exc:  # noqa: BLE001 - recorded for the test
        _record(tag, f"send: {_kind(exc)}")
    else:
        _record(tag, "sent")


def _block(seconds: float) -> None:
    time.sleep(seconds)  # SERVING-APP-STALL: the loop thread sits here


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stats":
        await send_json(send, STATS)
        return
    if path == "/events":
        await send_json(send, EVENTS)
        return
    query = _query(scope)
    tag = query.get("tag", "")
    seconds = float(query.get("s", "1"))
    STATS["calls"] += 1
    STATS["order"].append(tag)

    if path == "/hello":
        await send_response(send, 200, b"hello")
    elif path == "/slow":
        print(f"SLOW-STARTED {tag}", flush=True)
        await asyncio.sleep(seconds)
        await send_response(send, 200, b"slow")
    elif path == "/sleep":
        print(f"ENTERED {tag}", flush=True)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            _record(tag, "cancelled")
            raise
        _record(tag, "completed")
        await _try_send(send, tag, b"done")
    elif path == "/wait-receive":
        await read_body(receive)
        print(f"ENTERED {tag}", flush=True)
        try:
            message = await receive()
        except asyncio.CancelledError:
            _record(tag, "cancelled")
            raise
        _record(tag, message["type"])
        await _try_send(send, tag, b"too late")
        _record(tag, "completed")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                await send({"type": "http.response.body", "body": b"x" * 100,
                            "more_body": True})
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            _record(tag, "cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            _record(tag, f"send: {_kind(exc)}")
            return
        _record(tag, "stream ended")
        await send({"type": "http.response.body", "body": b""})
    elif path == "/block":
        _block(seconds)
        await send_response(send, 200, b"unblocked")
    else:
        await send_response(send, 404, b"not found")
