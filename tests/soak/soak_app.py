"""The app the soak (tests/soak/soak.py) serves: one route per kind of request in its mix,
plus /stats, which says what the process holds after the load.

    GET  /                    "Hello, world!" (Content-Length)
    POST /echo                the request body back (read with receive() until more_body is
                              False); a client that leaves mid-body ends the call quietly
    GET  /stream?n=N&delay=D  N chunks of 11 bytes ("chunk-0000\\n", ...), awaiting
                              asyncio.sleep(D) between them (D=0: one pass of the loop)
    GET  /sse?n=N&delay=D     N `data: token-<i>` events as text/event-stream, D apart
    WS   /ws                  accept, echo every message until the disconnect
    GET  /stats               JSON: pid, len(asyncio.all_tasks()), app calls running now
                              (this one included), per-route counters, gc counts, RSS;
                              ?collect=1 runs gc.collect() first; ?trim=1 then calls glibc's
                              malloc_trim(0); "malloc" is glibc's mallinfo2() (bytes in use
                              and free in the heap), so a growing RSS can be told apart as
                              live allocations or memory the allocator keeps; with
                              SOAK_TRACEMALLOC=1 in the environment, ?top=N adds the N biggest
                              Python allocation sites

Every call is counted per route: started, finished (returned normally), client_gone (a
send() raised OSError or receive() said the client left) and failed (any other exception,
re-raised so the server logs it). A call that never ends shows as started > finished +
client_gone + failed, and its task in the task count. Plain ASGI 3, so uvicorn serves the same
app for comparison.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import sys
from urllib.parse import parse_qs

ROUTES = ("hello", "echo", "stream", "sse", "ws", "stats", "other")
COUNTERS = {route: {"started": 0, "finished": 0, "client_gone": 0, "failed": 0}
            for route in ROUTES}
#: App calls running now (requests and WebSocket sessions, lifespan not counted).
ACTIVE = 0

if os.environ.get("SOAK_TRACEMALLOC") == "1":
    import tracemalloc

    tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "1")))

HELLO = b"Hello, world!"
TEXT = [(b"content-type", b"text/plain")]


class ClientGone(Exception):
    """receive() said http.disconnect / websocket.disconnect."""


def _query(scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


def _route(scope) -> str:
    if scope["type"] == "websocket":
        return "ws"
    return {"/": "hello", "/echo": "echo", "/stream": "stream", "/sse": "sse",
            "/stats": "stats"}.get(scope["path"], "other")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


try:
    _LIBC = ctypes.CDLL(None)
    _LIBC.mallinfo2.restype = _MallInfo2
    _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # not glibc (or older than 2.33)
    _LIBC = None


def _malloc_info(trim: bool) -> dict[str, int] | None:
    """glibc's heap: `in_use` (allocated, live: uordblks + hblkhd) and `free` (fordblks, kept
    by the allocator), after malloc_trim(0) when `trim`."""
    if _LIBC is None:
        return None
    if trim:
        _LIBC.malloc_trim(0)
    info = _LIBC.mallinfo2()
    return {"arena": info.arena, "in_use": info.uordblks + info.hblkhd,
            "free": info.fordblks, "mmapped": info.hblkhd}


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    global ACTIVE
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    route = _route(scope)
    counters = COUNTERS[route]
    counters["started"] += 1
    ACTIVE += 1
    try:
        await HANDLERS[route](scope, receive, send)
    except (OSError, ClientGone):
        counters["client_gone"] += 1
    except BaseException:
        counters["failed"] += 1
        raise
    else:
        counters["finished"] += 1
    finally:
        ACTIVE -= 1


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": HELLO})


async def echo(scope, receive, send):
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def stream(scope, receive, send):
    query = _query(scope)
    n, delay = int(query.get("n", "5")), float(query.get("delay", "0"))
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    for i in range(n):
        await send({"type": "http.response.body", "body": b"chunk-%04d\n" % i,
                    "more_body": True})
        await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b""})


async def sse(scope, receive, send):
    query = _query(scope)
    n, delay = int(query.get("n", "5")), float(query.get("delay", "0"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache")]})
    for i in range(n):
        await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": b"data: token-%d\n\n" % i,
                    "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def ws(scope, receive, send):
    message = await receive()
    if message["type"] != "websocket.connect":
        raise ClientGone
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return  # the client's close: the normal end of a session
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def stats(scope, receive, send):
    query = _query(scope)
    if query.get("collect") == "1":
        gc.collect()
    out = {
        "pid": os.getpid(),
        "tasks": len(asyncio.all_tasks()),
        "active": ACTIVE,
        "counters": COUNTERS,
        "gc_objects": len(gc.get_objects()),
        "gc_counts": gc.get_count(),
        "malloc": _malloc_info(query.get("trim") == "1"),
        "rss": _rss_bytes(),
        "python": sys.version.split()[0],
    }
    if "top" in query and os.environ.get("SOAK_TRACEMALLOC") == "1":
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        out["traced"] = tracemalloc.get_traced_memory()
        out["top"] = [str(s) for s in snapshot.statistics("lineno")[:int(query["top"])]]
    body = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def other(scope, receive, send):
    await send({"type": "http.response.start", "status": 404, "headers": TEXT})
    await send({"type": "http.response.body", "body": b"not found"})


HANDLERS = {"hello": hello, "echo": echo, "stream": stream, "sse": sse, "ws": ws,
            "stats": stats, "other": other}
