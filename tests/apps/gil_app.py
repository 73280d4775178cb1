"""An app that watches its own event loop, and can make a thread hold the GIL.

    /             "Hello, world!"
    /gap          JSON: the longest time between two ticks of a task that sleeps 5 ms in a
                  loop, and how many ticks there were, since the last /gap?reset=1 (which
                  starts counting afresh); the ticking task starts with the first request
    /hog          starts a thread that sleeps `delay` seconds (default 0.2) and then holds
                  the GIL for `size` steps of a catastrophically backtracking regular
                  expression (the `re` engine never lets go of the GIL); answers at once
    /hog-times    JSON: when the hog started and ended (time.monotonic(), the same clock as
                  every other process on the machine's); answered only once the hog is over
                  (this answer needs the GIL too); the end is noted a moment late
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from urllib.parse import parse_qs

from apps._util import send_json, send_response

_watch = {"last": 0.0, "longest": 0.0, "ticks": 0}
_ticker: list[asyncio.Task] = []
_hog = {"start": None, "end": None}
_BACKTRACKS = re.compile(r"(a+)+$")


async def _tick() -> None:
    while True:
        await asyncio.sleep(0.005)
        now = time.monotonic()
        _watch["longest"] = max(_watch["longest"], now - _watch["last"])
        _watch["last"] = now
        _watch["ticks"] += 1


def _hold_the_gil(delay: float, size: int) -> None:
    time.sleep(delay)
    _hog["start"] = time.monotonic()
    _BACKTRACKS.match("a" * size + "b")
    _hog["end"] = time.monotonic()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    path = scope["path"]
    if not _ticker:
        _watch["last"] = time.monotonic()
        _ticker.append(asyncio.get_running_loop().create_task(_tick()))
    if path == "/gap":
        await send_json(send, {"longest": _watch["longest"], "ticks": _watch["ticks"]})
        if "reset" in query:
            _watch.update(last=time.monotonic(), longest=0.0, ticks=0)
    elif path == "/hog":
        delay = float(query.get("delay", ["0.2"])[0])
        size = int(query.get("size", ["26"])[0])
        threading.Thread(target=_hold_the_gil, args=(delay, size), daemon=True).start()
        await send_json(send, {"started": True})
    elif path == "/hog-times":
        # The GIL may come here between the end of the match and the line that notes it.
        while _hog["start"] is not None and _hog["end"] is None:
            await asyncio.sleep(0.001)
        await send_json(send, _hog)
    else:
        await send_response(send, 200, b"Hello, world!")
