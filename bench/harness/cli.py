"""The command line of bench/run.py and the main sequence: check what is needed, measure (or
reload ``--from-json``), save results.json, print the tables, write the chart and the
Markdown report.

Owns ``parse_args`` (every option, its default and its help text) and ``main``. bench/run.py
calls ``main`` after re-executing itself in .venv-bench when there is one; that re-execution
stays in bench/run.py, which is the file it runs again. Must not hold measurement or
rendering logic of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from . import OUT_DIR, REPO
from .campaign import measure_app_costs, run_campaign
from .chart import write_chart
from .environment import environment_info
from .report import print_tables, write_markdown
from .scenarios import CANCEL_CONCURRENCY, CANCEL_REQUESTS, LOADGEN_KINDS, SCENARIOS
from .servers import ALL_SERVERS, missing_requirements, raise_fd_limit
from .tls import TLS_KEY_DESCRIPTION, certificates


def _csv(choices: list[str] | tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(choices)} (got {text!r})"
            )
        return list(dict.fromkeys(items))

    return parse


def _cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def parse_args(argv: list[str], description: str = "") -> argparse.Namespace:
    """The command line; ``description`` heads ``--help`` (bench/run.py passes its own)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", type=_csv(list(SCENARIOS)), default=list(SCENARIOS),
                        help=f"comma-separated, default all: {','.join(SCENARIOS)}")
    parser.add_argument("--servers", type=_csv(ALL_SERVERS), default=list(ALL_SERVERS),
                        help=f"comma-separated, default {','.join(ALL_SERVERS)}"
                        " (hyper, the ceiling, runs hello, slow-100ms and the sse-* scenarios;"
                        " hypercorn only the tls and h2 ones; uvicorn no h2 one; gunicorn only"
                        " the wsgi ones, which run on ferricorn, granian and gunicorn)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds per measured wrk, h2load or ws-echo run (default 5; the"
                        " loadgen scenarios sse-*, llm-sse-* and idle-10k have a fixed size)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of wrk (or h2load, ws-echo) warm-up before each"
                        " measured run"
                        " (default 1; 0: none; the sse and llm-sse scenarios warm up with 100"
                        " short streams, idle-10k not)")
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk (and h2load) threads (default 1)")
    parser.add_argument("--no-app-cost", dest="app_cost", action="store_false",
                        help="skip measuring each app's own cost in-process (bench/appcost.py)")
    parser.add_argument("--cancel-requests", type=int, default=CANCEL_REQUESTS,
                        help=f"requests the cancel scenario opens and abandons per run (default"
                        f" {CANCEL_REQUESTS}, {CANCEL_CONCURRENCY} at a time)")
    parser.add_argument("--baseline", default="ferricorn",
                        help="server whose ratios to the others are reported (default ferricorn)")
    parser.add_argument("--ferricorn-args", default="",
                        help="extra flags for ferricorn, one shell-quoted string")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server to CPU 0 and wrk to the other CPUs")
    parser.add_argument("--server-cpus", type=_cpus, help="CPUs for the server, e.g. 0 or 0-1")
    parser.add_argument("--wrk-cpus", type=_cpus, help="CPUs for wrk, e.g. 1")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds to pause between runs (default 0.5)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md",
                        help="Markdown report (default bench/RESULTS.md)")
    parser.add_argument("--chart", type=Path, default=REPO / "docs" / "bench.png",
                        help="chart image (default docs/bench.png); '' for none")
    parser.add_argument("--json", type=Path, default=OUT_DIR / "results.json",
                        help="raw per-run data (default bench/out/results.json)")
    parser.add_argument("--from-json", type=Path,
                        help="skip measuring: re-render the reports from a saved --json file")
    args = parser.parse_args(argv)
    args.ferricorn_args = shlex.split(args.ferricorn_args)
    if args.rounds < 1 or args.duration <= 0 or args.threads < 1 or args.cancel_requests < 1:
        parser.error("--rounds, --duration, --threads and --cancel-requests must be positive")
    if args.pin:
        usable = sorted(os.sched_getaffinity(0))
        if len(usable) < 2:
            parser.error("--pin needs at least 2 CPUs")
        args.server_cpus = args.server_cpus or {usable[0]}
        args.wrk_cpus = args.wrk_cpus or set(usable) - args.server_cpus
    if args.chart is not None and str(args.chart) in ("", "."):
        args.chart = None
    return args


def main(argv: list[str], description: str = "") -> int:
    """Measure (or reload), then print and write the reports; returns the exit status."""
    args = parse_args(argv, description)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        problems = missing_requirements(args.servers, args.scenarios)
        # Servers inherit the limit: one descriptor per connection, plus 1,024 to spare.
        loadgen_runs = [SCENARIOS[n] for n in args.scenarios
                        if SCENARIOS[n].kind in LOADGEN_KINDS]
        if loadgen_runs:
            biggest = max(loadgen_runs, key=lambda s: s.connections)
            if problem := raise_fd_limit(biggest.connections + 1024, biggest.name):
                problems.append(problem)
        if problems:
            print("cannot run the benchmark:\n  " + "\n  ".join(problems), file=sys.stderr)
            print("`make bench` sets everything up (see bench/README.md).", file=sys.stderr)
            return 2
        python = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(
            str(REPO)) else sys.executable
        settings = {
            "command": shlex.join([python, "bench/run.py", *argv]),
            "scenarios": args.scenarios,
            "servers": args.servers,
            "baseline": args.baseline,
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "threads": args.threads,
            "cancel_requests": args.cancel_requests,
            "ferricorn_args": args.ferricorn_args,
            "server_cpus": sorted(args.server_cpus or []),
            "wrk_cpus": sorted(args.wrk_cpus or []),
        }
        tls_scenarios = [n for n in args.scenarios if SCENARIOS[n].tls]
        if tls_scenarios:
            settings["tls"] = (f"self-signed {TLS_KEY_DESCRIPTION} certificate for localhost"
                               " and 127.0.0.1, made by openssl at the start of the run")
        environment = environment_info()
        print(f"ferricorn bench: {len(args.scenarios)} scenario(s) x {len(args.servers)} "
              f"server(s) x {args.rounds} round(s), {args.duration:g} s each", file=sys.stderr)
        with contextlib.ExitStack() as stack:
            # The TLS scenarios' certificate lives in a temporary directory for the campaign.
            try:
                args.tls = stack.enter_context(certificates()) if tls_scenarios else None
            except RuntimeError as err:
                print(f"cannot make the TLS certificate: {err}", file=sys.stderr)
                return 2
            runs = run_campaign(args)
        app_costs = measure_app_costs(args.scenarios) if args.app_cost else {}
        data = {"settings": settings, "environment": environment,
                "runs": [asdict(r) for r in runs], "app_costs": app_costs}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print_tables(data)
    chart = args.chart if args.chart and write_chart(args.chart, data) else None
    write_markdown(args.out, data, chart)
    print(f"wrote {args.out}" + (f" and {chart}" if chart else ""), file=sys.stderr)
    failed = sum(1 for r in data["runs"] if not r["ok"])
    if failed:
        print(f"{failed} run(s) failed: see {OUT_DIR / 'logs'}", file=sys.stderr)
    return 1 if failed else 0
