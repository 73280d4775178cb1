#!/usr/bin/env python3
"""Benchmark orchestrator: ferricorn against uvicorn, Granian, Hypercorn and a pure-Rust hyper
ceiling.

For each round, each scenario and each server in turn (the server order rotates every round),
it starts the server as a subprocess on a free loopback port with one worker, checks that the
app answers correctly, runs a short wrk warm-up and then a measured ``wrk --latency`` run, and
stops the server (SIGINT, then SIGKILL). Per run it records requests/s, the 50/75/90/99%
latencies and the server's CPU time per request (utime+stime of the whole process tree from
/proc, which is steadier than requests/s on a small, noisy machine). It reports the medians
across rounds with the ratios of the baseline server (ferricorn) to each other server, as a
table on stdout, as Markdown (``--out``, default bench/RESULTS.md) and as a chart (``--chart``,
default docs/bench.png). Raw per-run data and logs go to bench/out/.

Five scenarios are measured with ``target/release/examples/loadgen`` (bench/loadgen.rs)
instead of wrk, because wrk can neither time the events inside a response, hold connections
idle nor speak WebSocket: ``sse-tokens`` (1,000 concurrent token streams: events/s, inter-event
delays, peak RSS per open stream), ``sse-2k`` and ``sse-10k`` (the same with 2,000 and 10,000
streams of 40 events 50 ms apart) and ``idle-10k`` (10,000 idle connections: RSS per
connection, latency of the requests served meanwhile, connections still open at the end) get
their own report section;
``ws-echo`` (100 WebSocket clients doing echo round trips for ``--duration`` seconds) joins the
wrk tables, with messages/s in place of requests/s.

Four run over TLS or HTTP/2 and join the wrk tables: ``tls-hello`` (hello over HTTPS with
keep-alive) and ``tls-handshakes`` (a new TLS connection per request: handshakes/s) with wrk and
a self-signed certificate made by openssl at the start of the run; ``h2-hello`` and
``h2-stream`` with h2load (nghttp2-client) over h2c, 10 connections x 100 streams. Hypercorn
runs only these four; uvicorn, which has no HTTP/2, not the h2 ones.

Two more get the "Cancellation and overload" section: ``cancel`` (asyncio clients in this
process abandon requests whose app task sleeps; the delay from each close to the
``CancelledError`` in the app, bench/apps/cancel_probe.py) and ``overload`` (the 100 ms app
under twice the load its concurrency limit admits, wrk counting the responses by status with
bench/lua/count_status.lua). Scenarios can pass their own flags to each server
(``Scenario.server_args``), e.g. ferricorn's ``--cancel-on-disconnect``.

Four serve a WSGI app (bench/apps/wsgi_apps.py) and join the wrk tables: ``wsgi-hello``,
``wsgi-10k``, ``wsgi-echo-1m`` (1 MiB POST echoed) and ``wsgi-slow-100ms`` (the app blocks its
thread 100 ms), on ferricorn (``--interface wsgi --wsgi-threads N``), Granian (``--interface
wsgi --blocking-threads N``) and gunicorn (``-k gthread --threads N``), the same N for all
(``WSGI_THREADS`` in bench/harness/scenarios.py). gunicorn runs nothing else; uvicorn, whose
WSGI shim is deprecated, none of them.

Run it from anywhere; when ``.venv-bench`` exists in the repo root and this is not already its
interpreter, the script re-executes itself with it. ``make bench`` (bench/bench.mk) sets up
that venv. Only the standard library is needed, plus matplotlib for the chart.

This file is only the entry point: it re-executes itself in ``.venv-bench`` when needed and
hands the command line to the harness in bench/harness/, whose ``__init__`` lists the modules
(scenarios, servers, the wrk and loadgen drivers, report and chart) and what each one owns.

Examples::

    python bench/run.py
    python bench/run.py --servers granian,uvicorn --scenarios hello,echo-4k --rounds 1
    python bench/run.py --from-json bench/out/results.json   # re-render reports only
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-bench"


def _maybe_reexec_in_venv() -> None:
    """Re-run this script with .venv-bench's interpreter when it exists and isn't ours."""
    venv_python = VENV / "bin" / "python"
    if os.environ.get("FERRICORN_BENCH_NO_VENV") or not venv_python.exists():
        return
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    os.execv(venv_python, [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    """Run the harness; from the shell (``argv`` None), in .venv-bench when there is one."""
    if argv is None:
        _maybe_reexec_in_venv()
        argv = sys.argv[1:]
    # The harness imports as bench.harness from the repo root, as the apps do (bench.apps.X).
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.harness.cli import main as run_harness

    return run_harness(argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
