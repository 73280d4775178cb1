"""The llm-sse scenarios with no server at all: the ceiling the app itself sets.

Usage (from the repo root, in the bench venv)::

    python bench/llm_floor.py --clients 1000

Starts ``--clients`` calls of bench/apps/llm_sse.py at once on one uvloop event loop, in
process: each gets the same JSON request the llm-sse clients POST, a ``receive()`` that
returns it whole and a ``send()`` that only counts, and all run to their ``[DONE]``. It
prints one JSON line: tokens per second over the wall time from the first call to the last
stream's end, the time to first token at p99, the process CPU per token, and the cores used.

No server can deliver more tokens per second than this on the same machine: whatever it
does per token (sockets, framing, its own bookkeeping) comes on top of the app's work,
which runs on one event loop thread for every server here. bench/ANALYSIS.md compares the
servers' llm-sse-1k figures with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.appcost import load_app, start_lifespan  # noqa: E402
from bench.harness.scenarios import LLM_TOKENS, llm_request  # noqa: E402


async def measure(app, clients: int) -> dict[str, float]:
    body = llm_request(LLM_TOKENS)
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    tokens = 0
    first_tokens: list[float] = []
    lifespan = await start_lifespan(app)

    async def stream(start: float) -> None:
        nonlocal tokens
        request = {"type": "http.request", "body": body, "more_body": False}
        first: float | None = None

        async def send(message: dict) -> None:
            nonlocal tokens, first
            if message["type"] != "http.response.body":
                return
            if message.get("body", b"").startswith(b"data: {"):
                tokens += 1
                if first is None:
                    first = time.monotonic() - start
                    first_tokens.append(first)

        received = False

        async def receive() -> dict:
            # The body whole, once; then only a disconnect could come, and the client stays.
            nonlocal received
            if not received:
                received = True
                return request
            await asyncio.Event().wait()
            return {}

        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/completions", "raw_path": b"/v1/completions", "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "state": {},
        }
        await app(scope, receive, send)

    loop = asyncio.get_running_loop()
    cpu_start, start = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop.create_task(stream(start)) for _ in range(clients)))
    wall, cpu = time.monotonic() - start, time.process_time() - cpu_start
    if lifespan is not None:
        lifespan.cancel()
    first_tokens.sort()
    return {
        "clients": clients,
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall),
        "seconds": round(wall, 3),
        "ttft_p99_ms": round(first_tokens[int(0.99 * len(first_tokens)) - 1] * 1000, 1),
        "cpu_us_per_token": round(cpu / tokens * 1e6, 1),
        "cores": round(cpu / wall, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--app", default="bench.apps.llm_sse:app")
    args = parser.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(measure(load_app(args.app), args.clients))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
