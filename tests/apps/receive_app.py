"""Apps for receive() behaviour: Expect: 100-continue, http.disconnect, send() after the
client left. What happens after the client is gone is recorded in EVENTS, readable at
/events (JSON list of [tag, what]).

    /no-read          answers 200 "not read" without calling receive(), after 0.3 s (so a
                      100 Continue sent too early would come first)
    /read             reads the whole body, answers with it
    /wait-disconnect  reads the body, then waits in receive(); records ("wait-disconnect",
                      <type of the message that arrived>), then tries send() and records
                      ("send-after-disconnect", "OSError" / other exception / "sent")
    /stream-forever   streams 1 KB chunks every 20 ms until send() raises; records
                      ("stream-forever", "OSError" / other exception) (gives up after 20 s)
    /events           the EVENTS list
"""

from __future__ import annotations

import asyncio
import time

from apps._util import read_body, send_json, send_response

EVENTS: list[list[str]] = []


def _kind(exc: BaseException) -> str:
    """"OSError" for OSError and its subclasses, else the class name."""
    return "OSError" if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/no-read":
        await asyncio.sleep(0.3)
        await send_response(send, 200, b"not read")
    elif path == "/read":
        body, _ = await read_body(receive)
        await send_response(send, 200, body)
    elif path == "/wait-disconnect":
        await read_body(receive)
        message = await receive()
        EVENTS.append(["wait-disconnect", message["type"]])
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"too late"})
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            EVENTS.append(["send-after-disconnect", _kind(exc)])
        else:
            EVENTS.append(["send-after-disconnect", "sent"])
    elif path == "/stream-forever":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                await send({"type": "http.response.body", "body": b"x" * 1024,
                            "more_body": True})
                await asyncio.sleep(0.02)
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            EVENTS.append(["stream-forever", _kind(exc)])
            return
        EVENTS.append(["stream-forever", "never failed"])
        await send({"type": "http.response.body", "body": b""})
    elif path == "/events":
        await send_json(send, EVENTS)
    else:
        await send_response(send, 404, b"not found")
