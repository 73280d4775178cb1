"""Scenario "cancel": how soon does the app's task learn that its client has gone?

- ``GET /work?id=N`` records ``time.monotonic()`` at arrival, then ``await asyncio.sleep(60)``
  without ever calling ``receive()``. If the server cancels the task, the ``CancelledError`` is
  caught just long enough to record ``time.monotonic()`` and re-raised.
- ``GET /results`` returns ``{"arrivals": [[id, t], ...], "cancels": [[id, t], ...]}``.
- ``GET /release`` ends the sleeps that are still pending (the ones no server cancelled), so
  the server can shut down at once instead of waiting up to 60 s for them; those are not
  recorded as cancels. It replies with how many it released.

The harness (bench/harness/robustness.py, ``measure_cancel``) runs on the same host, so its
``time.monotonic()`` and ours read the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from urllib.parse import parse_qs

from ._asgi import Receive, Send, fixed_headers, serve_lifespan

SLEEP_S = 60.0

arrivals: list[tuple[int, float]] = []
cancels: list[tuple[int, float]] = []
sleeping: dict[int, asyncio.Future] = {}
released = False


async def reply(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    """Send a complete response with a fixed-length body."""
    headers = fixed_headers(content_type, len(body))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def work(scope: dict, send: Send) -> None:
    """Sleep 60 s; record when (if ever) the server cancels us."""
    query = parse_qs(scope["query_string"].decode())
    request_id = int(query.get("id", ["-1"])[0])
    arrivals.append((request_id, time.monotonic()))
    # The sleep runs as its own future so that /release can end it without cancelling the
    # server's task; a cancel of our task by the server cancels the awaited future too.
    sleep = asyncio.ensure_future(asyncio.sleep(SLEEP_S))
    sleeping[request_id] = sleep
    try:
        await sleep
    except asyncio.CancelledError:
        if released and sleep.cancelled() and not _task_cancelling():
            return  # /release ended the sleep: not a cancel by the server, nothing to send
        cancels.append((request_id, time.monotonic()))
        raise
    finally:
        sleeping.pop(request_id, None)
    # Only if nobody cancelled the sleep within 60 s; the client has normally gone by then.
    with contextlib.suppress(Exception):
        await reply(send, 200, b"slept", b"text/plain")


def _task_cancelling() -> bool:
    """Whether the current task itself has a pending cancel request (Python 3.11+)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())


async def app(scope: dict, receive: Receive, send: Send) -> None:
    """Route /work, /results and /release."""
    global released
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/work":
        await work(scope, send)
    elif path == "/results":
        body = json.dumps({"arrivals": arrivals, "cancels": cancels}).encode()
        await reply(send, 200, body, b"application/json")
    elif path == "/release":
        released = True
        pending = list(sleeping.values())
        for sleep in pending:
            sleep.cancel()
        await reply(send, 200, str(len(pending)).encode(), b"text/plain")
    else:
        await reply(send, 404, b"not found", b"text/plain")
