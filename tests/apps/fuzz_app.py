"""The app of the ASGI message fuzz tests (tests/python/test_fuzz_asgi_messages.py): it sends
whatever sequence of messages a test planned, valid or not, and records what each `send()`
did, so the test can hold the server to exactly what the spec and the README say.

A plan is JSON (PUT /plan/<id>):

    {"messages": [<encoded value>, ...],      what to pass to send(), in order
     "on_error": "raise" | "return" | "continue",
                                               what to do when send() raises: re-raise it (as
                                               FuzzStop naming the plan), return at once, or
                                               go on with the next message
     "end": "return" | "raise",                after the last message: return, or raise
     "receive_first": true | false}            WebSocket only: await websocket.connect first

Values are encoded so that every Python type the ASGI spec talks about (and many it does
not) can be sent as JSON: see `decode`. Then:

    PUT /plan/<id>        stores the plan (answers 200 "stored")
    ANY /run/<id>         HTTP: runs the plan (the request body is read first, if any)
    websocket /ws/<id>    WebSocket: runs the plan (websocket.* messages)
    GET /result/<id>      JSON {"done": bool, "sent": [[index, "ok" | exception type,
                          message], ...], "extensions": [name, ...]}: what each send() did,
                          once the plan is over, and the extensions the run's scope offered
    anything else         200 "ok"
"""

from __future__ import annotations

import json
from typing import Any

PLANS: dict[str, dict[str, Any]] = {}
RESULTS: dict[str, dict[str, Any]] = {}


class FuzzStop(Exception):
    """Re-raised from a send() failure, naming the plan so its log line can be found."""


class StrSub(str):
    """A str subclass: ASGI code may meet them (enum values, lazy strings)."""


class DictSub(dict):
    """A dict subclass as a message."""


def decode(value: Any) -> Any:
    """A Python value from its tagged JSON form `[tag, payload...]`:

    none, bool, int (payload: decimal text, any size), float, str, strsub, bytes /
    bytearray / memoryview (payload: hex; with a `*` after the tag, hex and a count: the
    bytes repeated, to keep big bodies small in the plan), list, tuple, iter (a one-shot
    iterator), gen (a generator over the items), dict / dictsub (payload: [[key, value],
    ...], both encoded), object (an opaque object()).
    A new object each call: iterators and memoryviews are not shared between decodes.
    """
    tag = value[0]
    if tag == "none":
        return None
    if tag == "bool":
        return bool(value[1])
    if tag == "int":
        return int(value[1])
    if tag == "float":
        return float(value[1])
    if tag == "str":
        return value[1]
    if tag == "strsub":
        return StrSub(value[1])
    if tag == "bytes":
        return bytes.fromhex(value[1])
    if tag == "bytearray":
        return bytearray.fromhex(value[1])
    if tag == "memoryview":
        return memoryview(bytes.fromhex(value[1]))
    if tag in ("bytes*", "bytearray*", "memoryview*"):  # [tag, hex, count]: hex repeated
        return decode([tag[:-1], value[1] * value[2]])
    if tag == "list":
        return [decode(v) for v in value[1]]
    if tag == "tuple":
        return tuple(decode(v) for v in value[1])
    if tag == "iter":
        return iter([decode(v) for v in value[1]])
    if tag == "gen":
        return (item for item in [decode(v) for v in value[1]])
    if tag in ("dict", "dictsub"):
        made = {decode(k): decode(v) for k, v in value[1]}
        return DictSub(made) if tag == "dictsub" else made
    if tag == "object":
        return object()
    raise ValueError(f"unknown tag {tag!r}")


async def _respond(send, status: int, body: bytes, content_type: bytes = b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def _run_plan(plan_id: str, scope, send) -> None:
    """Sends the plan's messages as it says; records each outcome in RESULTS, and what the
    scope offered (whether an extension's messages may reach the client is the test's
    to judge)."""
    plan = PLANS.pop(plan_id)
    record: list[list[Any]] = []
    RESULTS[plan_id] = {"done": False, "sent": record,
                        "extensions": sorted(scope.get("extensions") or {})}
    try:
        for index, encoded in enumerate(plan["messages"]):
            message = decode(encoded)
            try:
                await send(message)
            except Exception as exc:  # noqa: BLE001 - recorded for the test to judge
                record.append([index, type(exc).__name__, str(exc)])
                if plan["on_error"] == "raise":
                    raise FuzzStop(f"fuzz plan {plan_id}: send #{index} raised") from exc
                if plan["on_error"] == "return":
                    return
                continue
            record.append([index, "ok", ""])
        if plan["end"] == "raise":
            raise FuzzStop(f"fuzz plan {plan_id}: deliberate failure at the end")
    finally:
        RESULTS[plan_id]["done"] = True


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if kind == "websocket":
        plan_id = path.rsplit("/", 1)[-1]
        if PLANS.get(plan_id, {}).get("receive_first"):
            await receive()
        await _run_plan(plan_id, scope, send)
        return
    if path.startswith("/plan/"):
        PLANS[path[len("/plan/"):]] = json.loads(await _read_body(receive))
        await _respond(send, 200, b"stored")
    elif path.startswith("/run/"):
        await _read_body(receive)
        await _run_plan(path[len("/run/"):], scope, send)
    elif path.startswith("/result/"):
        result = RESULTS.get(path[len("/result/"):], {"done": False, "sent": []})
        if result["done"]:
            RESULTS.pop(path[len("/result/"):])
        await _respond(send, 200, json.dumps(result).encode(), b"application/json")
    else:
        await _respond(send, 200, b"ok")
