"""The app's own cost: one benchmark app called in-process, with no server and no sockets.

Usage (from the repo root, in the bench venv)::

    python bench/appcost.py bench.apps.fastapi_items:app --method POST --path /items \\
        --body-file item.json --content-type application/json

Runs the app's lifespan startup, then calls it over and over for about ``--seconds`` on a
uvloop event loop, each call in its own asyncio Task (as every server here runs it), with a
scope dict built per call, a ``receive()`` that returns the whole body at once and a
``send()`` that does nothing. It prints one JSON line: ``{"us_per_request": ..., ...}``, the
process CPU time per call.

With ``--interface wsgi`` the app is a PEP 3333 callable (bench/apps/wsgi_apps.py), called
the same way on this one thread with no event loop: an environ dict built per call with a
fresh ``io.BytesIO`` as ``wsgi.input``, a ``start_response`` that keeps nothing, and the
returned iterable read to its end (and closed, if it has a ``close``).

That figure is a floor no server can go under on this machine: whatever a server does
for a request comes on top of it. bench/run.py compares it with each server's CPU per request
to tell the scenarios where the server is the bottleneck from those where the app is.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import sys
import time
from pathlib import Path

WARMUP_CALLS = 2_000
BATCH = 1_000  # calls between two looks at the clock


def load_app(target: str):
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute or "app")


async def start_lifespan(app) -> asyncio.Task | None:
    """Runs lifespan startup; returns the task (parked until shutdown), None without lifespan."""
    inbox: asyncio.Queue = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict) -> None:
        if message["type"].startswith("lifespan.startup") and not started.done():
            started.set_result(message["type"])

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, send))
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if started in done and started.result() != "lifespan.startup.complete":
        raise SystemExit(f"lifespan startup failed: {started.result()}")
    return None if task in done else task


async def measure(app, args: argparse.Namespace) -> dict[str, float]:
    body = Path(args.body_file).read_bytes() if args.body_file else b""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"appcost")]
    if args.content_type:
        headers.append((b"content-type", args.content_type.encode()))
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    path, _, query = args.path.partition("?")
    request = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict:
        return request

    async def send(message: dict) -> None:
        return None

    def scope() -> dict:
        return {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": args.method, "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "state": {},
        }

    lifespan = await start_lifespan(app)
    loop = asyncio.get_running_loop()
    for _ in range(WARMUP_CALLS):
        await loop.create_task(app(scope(), receive, send))
    calls, cpu_start, wall_end = 0, time.process_time(), time.monotonic() + args.seconds
    while time.monotonic() < wall_end:
        for _ in range(BATCH):
            await loop.create_task(app(scope(), receive, send))
        calls += BATCH
    cpu = time.process_time() - cpu_start
    if lifespan is not None:
        lifespan.cancel()
    return {"us_per_request": round(cpu / calls * 1e6, 2), "calls": calls}


def measure_wsgi(app, args: argparse.Namespace) -> dict[str, float]:
    """The WSGI counterpart of ``measure``: plain calls on this thread, no event loop."""
    body = Path(args.body_file).read_bytes() if args.body_file else b""
    path, _, query = args.path.partition("?")
    base = {
        "REQUEST_METHOD": args.method, "SCRIPT_NAME": "", "PATH_INFO": path,
        "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000",
        "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "appcost",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if args.content_type:
        base["CONTENT_TYPE"] = args.content_type
    if body:
        base["CONTENT_LENGTH"] = str(len(body))

    def write(_data: bytes) -> None:
        return None

    def start_response(_status: str, _headers: list, _exc_info: object = None):
        return write

    def call() -> None:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body)
        result = app(environ, start_response)
        try:
            for _chunk in result:
                pass
        finally:
            if hasattr(result, "close"):
                result.close()

    for _ in range(WARMUP_CALLS):
        call()
    calls, cpu_start, wall_end = 0, time.process_time(), time.monotonic() + args.seconds
    while time.monotonic() < wall_end:
        for _ in range(BATCH):
            call()
        calls += BATCH
    cpu = time.process_time() - cpu_start
    return {"us_per_request": round(cpu / calls * 1e6, 2), "calls": calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="module:attribute, e.g. bench.apps.hello:app")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--body-file", help="request body, read from this file")
    parser.add_argument("--content-type")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--interface", choices=("asgi", "wsgi"), default="asgi")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    app = load_app(args.app)
    if args.interface == "wsgi":
        print(json.dumps(measure_wsgi(app, args) | {"interface": "wsgi"}))
        return 0
    try:
        import uvloop
    except ImportError:  # the figure is then for asyncio's loop; it says so
        result = asyncio.run(measure(app, args)) | {"loop": "asyncio"}
    else:
        result = uvloop.run(measure(app, args)) | {"loop": "uvloop"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
