"""The app for the process-model tests (--workers, restarts, signals, reload).

    /pid              the worker's process id, as text
    /sleep?s=<secs>   sleeps (asyncio), logging "SLEEP-STARTED <pid>" to stdout, then "slept"
    /block?s=<secs>   blocks the event loop with time.sleep (logging "BLOCK-STARTED <pid>")
    anything else     "ok"

Lifespan is supported (a no-op), so `--lifespan on` works with it.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qs

from apps._util import send_response, serve_lifespan


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send)
        return
    path = scope["path"]
    seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["1"])[0])
    if path == "/pid":
        await send_response(send, 200, str(os.getpid()).encode())
    elif path == "/sleep":
        print(f"SLEEP-STARTED {os.getpid()}", flush=True)
        await asyncio.sleep(seconds)
        await send_response(send, 200, b"slept")
    elif path == "/block":
        print(f"BLOCK-STARTED {os.getpid()}", flush=True)
        time.sleep(seconds)  # blocks the event loop on purpose
        await send_response(send, 200, b"unblocked")
    else:
        await send_response(send, 200, b"ok")
