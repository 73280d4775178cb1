"""wrk: its command line, the measured run, and the parsers of what it prints.

Owns ``wrk_command`` (with https:// and extra headers for the TLS scenarios), ``measure_wrk``
(warm-up, measured run, the server's CPU and RSS around it), ``parse_wrk`` (the report of
``wrk --latency``: requests, requests/s, the 50/75/90/99% latencies in us, ms or s, socket
errors, non-2xx responses) and ``parse_statuses`` (the "statuses:" line of
bench/lua/count_status.lua). Must not start or stop servers, nor render reports.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import LUA_DIR
from .procstat import tree_cpu_seconds, tree_rss_mib
from .results import Run
from .scenarios import Scenario
from .servers import HOST, child_setup

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_RE_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_RE_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RE_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_RE_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkResult:
    """What one wrk run reported. Latencies are in milliseconds."""

    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99"
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        """Failed or timed-out requests (wrk leaves timeouts out of the latency figures)."""
        return (
            self.connect_errors + self.read_errors + self.write_errors
            + self.timeouts + self.non_2xx
        )


def parse_wrk(output: str) -> WrkResult:
    """Parse the text report of ``wrk --latency``; raises ValueError if it is not one."""
    rps = _RE_RPS.search(output)
    total = _RE_TOTAL.search(output)
    percentiles = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
                   for m in _RE_PERCENTILE.finditer(output)}
    if not rps or not total or set(percentiles) != {"50", "75", "90", "99"}:
        raise ValueError(f"unrecognised wrk output:\n{output}")
    result = WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)] / 1e3,
        rps=float(rps.group(1)),
        latency_ms=percentiles,
    )
    if socket_errors := _RE_SOCKET_ERRORS.search(output):
        connect, read, write, timeout = map(int, socket_errors.groups())
        result.connect_errors, result.read_errors = connect, read
        result.write_errors, result.timeouts = write, timeout
    if non_2xx := _RE_NON_2XX.search(output):
        result.non_2xx = int(non_2xx.group(1))
    return result


def wrk_command(scenario: Scenario, port: int, duration: float, threads: int) -> list[str]:
    """The wrk command line for one run of ``scenario``."""
    command = [
        "wrk", f"-t{min(threads, scenario.connections)}", f"-c{scenario.connections}",
        f"-d{max(1, round(duration))}s", f"--timeout={scenario.wrk_timeout_s}s", "--latency",
    ]
    for header in scenario.headers:
        command += ["-H", header]
    if scenario.lua:
        command += ["-s", str(LUA_DIR / scenario.lua)]
    # Over TLS wrk offers no ALPN (so HTTP/1.1), checks no certificate and resumes no session:
    # with "Connection: close" every request is a full handshake.
    scheme = "https" if scenario.tls else "http"
    return [*command, f"{scheme}://{HOST}:{port}{scenario.path}"]


_RE_STATUSES = re.compile(r"^statuses:(.*)$", re.MULTILINE)


def parse_statuses(output: str) -> dict[int, int] | None:
    """The response counts by status code from the line ``statuses: 200=N 503=M ...`` that
    bench/lua/count_status.lua adds to wrk's report, or None when there is no such line."""
    match = _RE_STATUSES.search(output)
    if match is None:
        return None
    return {int(code): int(n) for code, n in
            (part.split("=") for part in match.group(1).split())}


def measure_wrk(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """Warm up with wrk, then the measured wrk run; fills in ``run``."""
    if args.warmup > 0:
        subprocess.run(
            wrk_command(scenario, port, args.warmup, args.threads),
            capture_output=True, preexec_fn=child_setup(args.wrk_cpus), check=False,
        )
    wrk = wrk_command(scenario, port, args.duration, args.threads)
    run.wrk_command = shlex.join(wrk)
    cpu_before, wall_before = tree_cpu_seconds(proc.pid), time.monotonic()
    completed = subprocess.run(
        wrk, capture_output=True, text=True, check=False,
        preexec_fn=child_setup(args.wrk_cpus),
    )
    cpu_after, wall_after = tree_cpu_seconds(proc.pid), time.monotonic()
    run.rss_mib = round(tree_rss_mib(proc.pid), 1)
    (log_dir / f"{stem}.wrk.txt").write_text(completed.stdout + completed.stderr)
    if proc.poll() is not None:
        run.error = f"server died during the run (exit code {proc.returncode})"
        return
    if completed.returncode != 0:
        run.error = f"wrk exited with {completed.returncode}: {completed.stderr.strip()}"
        return
    result = parse_wrk(completed.stdout)
    cpu = cpu_after - cpu_before
    run.ok = result.requests > 0
    run.error = None if run.ok else "no request completed"
    run.rps = result.rps
    run.requests = result.requests
    run.latency_ms = result.latency_ms
    run.errors = result.errors
    run.cpu_us_per_request = cpu / result.requests * 1e6 if result.requests else None
    run.cpu_utilisation = cpu / (wall_after - wall_before)
