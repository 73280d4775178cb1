"""The campaign: one measurement of one server on one scenario, all the rounds, and the
apps' own cost.

Owns ``measure`` (start the server with its log in bench/out/logs/, check its first answer,
hand it to the scenario's driver, stop it), ``run_campaign`` (rounds x scenarios x servers,
the server order rotating every round), the progress line of each run (``describe``) and
``measure_app_costs`` (bench/appcost.py per CPU-bound scenario). Must not parse a load
generator's output nor render reports: the drivers and the report modules do.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from . import OUT_DIR, REPO
from .h2load import measure_h2load
from .loadgen import measure_idle, measure_llm, measure_sse, measure_ws
from .results import Run
from .robustness import measure_cancel, measure_overload
from .scenarios import IDLE_STALL_S, SCENARIOS, Scenario
from .servers import (
    child_setup,
    free_port,
    server_command,
    serves,
    stop_server,
    wait_until_serving,
)
from .wrk import measure_wrk


def measure(scenario: Scenario, server: str, round_no: int, args: argparse.Namespace) -> Run:
    """Start ``server`` on ``scenario``, check its answer, measure it, stop it."""
    port = free_port()
    tls = getattr(args, "tls", None)  # the run's certificate, when a scenario needs TLS
    command = server_command(server, scenario, port, args.ferricorn_args, tls)
    assert command is not None
    run = Run(scenario.name, server, round_no, ok=False, command=shlex.join(command))
    log_dir = OUT_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"r{round_no}-{scenario.name}-{server}"
    # The apps are imported as bench.apps.X from the repo root, whatever the server's sys.path.
    pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath))
    with open(log_dir / f"{stem}.server.log", "wb") as server_log:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=server_log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=child_setup(args.server_cpus),
        )
        try:
            problem, run.protocol = wait_until_serving(proc, scenario, port, tls=tls)
            if problem:
                server_log.flush()
                tail = (log_dir / f"{stem}.server.log").read_text(errors="replace")
                tail = " | ".join(tail.strip().splitlines()[-3:])
                run.error = f"{problem}" + (f" (log: {tail})" if tail else "")
                return run
            measurer = {"wrk": measure_wrk, "h2load": measure_h2load, "sse": measure_sse,
                        "llm": measure_llm, "idle": measure_idle, "ws": measure_ws,
                        "cancel": measure_cancel, "overload": measure_overload}
            measurer[scenario.kind](run, proc, scenario, port, args, log_dir, stem)
        except ValueError as err:
            run.error = str(err)
        finally:
            stop_server(proc)
    return run


def describe(run: Run) -> str:
    """One progress line."""
    head = f"[round {run.round}] {run.scenario:<14} {run.server:<9}"
    if not run.ok:
        return f"{head} FAILED: {run.error}"
    f = run.figures
    if f is not None and "cancelled" in f:
        delays = (f" delay p50 {f['delay_p50_ms']:.2f} p99 {f['delay_p99_ms']:.2f}"
                  f" max {f['delay_max_ms']:.2f} ms" if f["cancelled"] else "")
        return (f"{head} cancelled {f['cancelled']:.0f} of {f['requests']:.0f}"
                f" (reached the app {f['reached']:.0f}){delays}")
    if f is not None:
        return (
            f"{head} {f['ok_per_s']:>8,.0f} x200/s of {f['responses_per_s']:,.0f} responses/s"
            f"  shed {f['shed_share']:.1%}  p50 {f['latency_p50_ms']:.2f}"
            f" p99 {f['latency_p99_ms']:.2f} ms  socket errors {f['socket_errors']:.0f},"
            f" timeouts {f['timeouts']:.0f}"
        )
    g = run.loadgen
    if g is not None and "messages_per_s" in g:
        return (
            f"{head} {g['messages_per_s']:>10,.0f} msg/s  p50 {g['latency_p50_ms']:7.2f} ms"
            f"  p99 {g['latency_p99_ms']:7.2f} ms  cpu {run.cpu_us_per_request or 0:6.1f}"
            f" us/msg  clients failed {g['failed']:.0f}/{g['clients']:.0f}"
            f"  RSS peak {g['rss_peak_mib']:.1f} MiB  cores: server"
            f" {g['cpu_utilisation']:.2f}, loadgen {g['loadgen_cpu_utilisation']:.2f}"
        )
    if g is not None and "tokens_per_s" in g:
        return (
            f"{head} {g['tokens_per_s']:>10,.0f} tokens/s  TTFT p50 {g['ttft_p50_ms']:.1f}"
            f" p99 {g['ttft_p99_ms']:.1f} ms  inter-token p99 {g['token_delay_p99_ms']:.2f} ms"
            f"  streams {g['completed']:.0f}/{g['clients']:.0f}"
            f" (open at once {g['open_peak']:.0f})"
            f"  RSS {g['rss_before_mib']:.1f} -> peak {g['rss_peak_mib']:.1f} MiB"
            f" ({g['kib_per_stream']:.1f} KiB/stream)  cpu {g['cpu_us_per_token']:.1f} us/token"
            f"  cores: server {g['cpu_utilisation']:.2f}, loadgen"
            f" {g['loadgen_cpu_utilisation']:.2f}"
        )
    if g is not None and "events_per_s" in g:
        return (
            f"{head} {g['events_per_s']:>10,.0f} events/s  delay p50 {g['delay_p50_ms']:.2f}"
            f" p99 {g['delay_p99_ms']:.2f} max {g['delay_max_ms']:.2f} ms"
            f"  streams {g['completed']:.0f}/{g['clients']:.0f}"
            + (f" (open at once {g['open_peak']:.0f})" if "open_peak" in g else "")
            + f"  RSS {g['rss_before_mib']:.1f} -> peak {g['rss_peak_mib']:.1f} MiB"
            f" ({g['kib_per_stream']:.1f} KiB/stream)  cores: server"
            f" {g['cpu_utilisation']:.2f}, loadgen {g['loadgen_cpu_utilisation']:.2f}"
        )
    if g is not None and g.get("stalled"):
        return (
            f"{head} STALLED: the server stopped accepting at {g['accepted']:.0f} connections"
            f" (no new one for {IDLE_STALL_S:g} s)  RSS {g['rss_before_mib']:.1f} ->"
            f" {g['rss_open_mib']:.1f} MiB ({g['kib_per_connection']:.2f} KiB/accepted conn)"
        )
    if g is not None:
        return (
            f"{head} {g['connections']:.0f} open in {g['open_s']:.1f} s"
            f" ({g['accepted']:.0f} accepted)"
            f"  RSS {g['rss_before_mib']:.1f} -> {g['rss_open_mib']:.1f} MiB"
            f" ({g['kib_per_connection']:.2f} KiB/conn)  {g['requests']:.0f} requests"
            f" p50 {g['latency_p50_ms']:.2f} max {g['latency_max_ms']:.2f} ms"
            f"  still open {g['still_open']:.0f}"
        )
    lat = run.latency_ms or {}
    return (
        f"{head} {run.rps:>10,.0f} req/s  p50 {lat['50']:7.2f} ms  p99 {lat['99']:7.2f} ms  "
        f"cpu {run.cpu_us_per_request:6.1f} us/req ({run.cpu_utilisation:.2f} cores)"
        + (f"  errors {run.errors}" if run.errors else "")
        + (f"  [{run.protocol}]" if run.protocol and run.protocol != "HTTP/1.1" else "")
    )


def run_campaign(args: argparse.Namespace) -> list[Run]:
    """All rounds x scenarios x servers, alternating servers; the server order rotates."""
    runs = []
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(args.servers)
        order = args.servers[shift:] + args.servers[:shift]
        for name in args.scenarios:
            scenario = SCENARIOS[name]
            for server in order:
                if not serves(server, scenario):
                    continue
                run = measure(scenario, server, round_no, args)
                print(describe(run), file=sys.stderr, flush=True)
                runs.append(run)
                time.sleep(args.pause)
    return runs


def app_cost_scenarios(scenarios: list[str]) -> list[str]:
    """The scenarios whose app's own cost is measured: the CPU-bound wrk and h2load ones (not
    the ones that sleep, where the ideal bounds the throughput)."""
    return [n for n in scenarios
            if SCENARIOS[n].kind in ("wrk", "h2load") and not SCENARIOS[n].ideal_rps]


def measure_app_costs(scenarios: list[str]) -> dict[str, float]:
    """Per scenario, the app's CPU us per request called in-process (bench/appcost.py);
    measured once per app and request (hello serves hello, tls-hello, h2-hello, ...)."""
    costs: dict[str, float] = {}
    measured: dict[tuple, str] = {}  # (app, method, path, body) -> the scenario measured
    for name in app_cost_scenarios(scenarios):
        scenario = SCENARIOS[name]
        request = (scenario.app, scenario.method, scenario.path, scenario.body)
        if request in measured:
            if measured[request] in costs:
                costs[name] = costs[measured[request]]
            continue
        measured[request] = name
        with tempfile.NamedTemporaryFile(suffix=".body") as body:
            body.write(scenario.body)
            body.flush()
            command = [sys.executable, str(REPO / "bench" / "appcost.py"), scenario.app,
                       "--method", scenario.method, "--path", scenario.path]
            if scenario.body:
                command += ["--body-file", body.name]
            if scenario.content_type:
                command += ["--content-type", scenario.content_type]
            if scenario.interface != "asgi":
                command += ["--interface", scenario.interface]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                                  check=False, timeout=120)
        if done.returncode != 0:
            print(f"[app cost] {name}: failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
            continue
        costs[name] = json.loads(done.stdout.strip().splitlines()[-1])["us_per_request"]
        print(f"[app cost] {name:<11} {costs[name]:6.1f} us/req in-process", file=sys.stderr)
    return costs
