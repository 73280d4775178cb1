"""The drivers of the "Cancellation and overload" scenarios.

Owns ``measure_cancel`` (asyncio clients in this process send a request and close their
connection; the app, bench/apps/cancel_probe.py, reports when its task was cancelled, on the
same clock) and ``measure_overload`` (a wrk run whose Lua script counts the responses by
status). Must not start or stop servers, nor render reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import subprocess
import time
import urllib.request
from pathlib import Path

from .results import Run
from .scenarios import CANCEL_CONCURRENCY, CANCEL_HOLD_S, CANCEL_SETTLE_S, Scenario
from .servers import HOST
from .wrk import measure_wrk, parse_statuses, parse_wrk


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


async def cancel_clients(port: int, count: int) -> tuple[dict[int, float], int]:
    """``count`` clients, CANCEL_CONCURRENCY at a time: each sends ``GET /work?id=N``, waits
    CANCEL_HOLD_S and closes its connection. Returns {N: time.monotonic() just before the
    close} and the number of clients that could not connect or send."""
    closes: dict[int, float] = {}
    failed = 0
    gate = asyncio.Semaphore(CANCEL_CONCURRENCY)

    async def client(request_id: int) -> None:
        nonlocal failed
        async with gate:
            try:
                _reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                failed += 1
                return
            try:
                writer.write(f"GET /work?id={request_id} HTTP/1.1\r\nHost: {HOST}:{port}"
                             "\r\n\r\n".encode())
                await writer.drain()
                await asyncio.sleep(CANCEL_HOLD_S)
                closes[request_id] = time.monotonic()
            except OSError:
                failed += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    await asyncio.gather(*(client(i) for i in range(count)))
    return closes, failed


def measure_cancel(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """Client close -> CancelledError in the app (bench/apps/cancel_probe.py).

    The clients run in this process (asyncio), so their time.monotonic() and the app's read
    the same clock. CANCEL_SETTLE_S after the last close the harness fetches the app's
    /results, then /release ends the sleeps nobody cancelled so that the server stops at once.
    """
    count = args.cancel_requests
    started = time.monotonic()
    closes, failed = asyncio.run(cancel_clients(port, count))
    seconds = time.monotonic() - started
    time.sleep(CANCEL_SETTLE_S)
    base = f"http://{HOST}:{port}"
    with urllib.request.urlopen(f"{base}/results", timeout=10) as response:
        results = json.loads(response.read())
    with urllib.request.urlopen(f"{base}/release", timeout=10) as response:
        released = int(response.read())
    (log_dir / f"{stem}.cancel.json").write_text(json.dumps(
        {"closes": closes, "failed": failed, "released": released, **results}) + "\n")
    if proc.poll() is not None:
        raise ValueError(f"server died during the run (exit code {proc.returncode})")
    reached = {request_id for request_id, _ in results["arrivals"]} & set(closes)
    delays = [(cancelled_at - closes[request_id]) * 1000
              for request_id, cancelled_at in results["cancels"] if request_id in closes]
    run.figures = {
        "requests": len(closes),
        "failed": failed,
        "reached": len(reached),
        "cancelled": len(delays),
        "not_cancelled": len(closes) - len(delays),
        "released": released,
        "seconds": round(seconds, 3),
    }
    if delays:
        run.figures |= {
            "delay_p50_ms": percentile(delays, 0.50),
            "delay_p99_ms": percentile(delays, 0.99),
            "delay_max_ms": max(delays),
        }
    run.ok = len(closes) > 0
    run.error = None if run.ok else f"no client got its request out ({failed} failed)"


def measure_overload(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """A wrk run (as measure_wrk) whose Lua script counts the responses by status."""
    measure_wrk(run, proc, scenario, port, args, log_dir, stem)
    if not run.ok:
        return
    output = (log_dir / f"{stem}.wrk.txt").read_text()
    result = parse_wrk(output)
    statuses = parse_statuses(output)
    if statuses is None:
        raise ValueError(f"no status counts in the wrk output ({scenario.lua})")
    ok = statuses.get(200, 0)
    total = sum(statuses.values())
    run.figures = {
        "responses": total,
        "ok": ok,
        "shed_503": statuses.get(503, 0),
        "other_status": total - ok - statuses.get(503, 0),
        "socket_errors": result.connect_errors + result.read_errors + result.write_errors,
        "timeouts": result.timeouts,
        "ok_per_s": ok / result.seconds,
        "responses_per_s": total / result.seconds,
        "shed_share": (total - ok) / total if total else 0.0,
        "latency_p50_ms": result.latency_ms["50"],
        "latency_p99_ms": result.latency_ms["99"],
    }
