"""h2load (nghttp2-client): the driver of the HTTP/2 scenarios and the parsers of what it
prints.

Owns ``h2load_command``, ``measure_h2load`` (warm-up, measured run, the server's CPU and RSS
around it), ``parse_h2load`` (h2load's summary: requests, requests/s, failures, status
classes, the protocol and TLS parameters it used) and ``parse_h2load_log`` with
``latency_percentiles`` (its per-request ``--log-file``: h2load's summary gives only the
min, max, mean and sd of the request times, so the 50/75/90/99% latencies come from the
log). Must not start or stop servers, nor render reports.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .procstat import tree_cpu_seconds, tree_rss_mib
from .results import Run
from .scenarios import Scenario
from .servers import HOST, child_setup

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_RE_FINISHED = re.compile(
    r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.MULTILINE)
_RE_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed,"
    r" (\d+) errored, (\d+) timeout", re.MULTILINE)
_RE_STATUSES = re.compile(
    r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_RE_REQUEST_TIME = re.compile(
    r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)",
    re.MULTILINE)
_RE_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.MULTILINE)
_RE_TLS = re.compile(r"^TLS Protocol: (\S+)", re.MULTILINE)
_RE_CIPHER = re.compile(r"^Cipher: (\S+)", re.MULTILINE)


@dataclass
class H2loadResult:
    """What one timed h2load run (``-D``) reported. Times are in milliseconds.

    The request counts are those of the measured duration; h2load's "status codes" line
    also counts the responses of its warm-up and of the streams cut off at the end, so it
    is kept only to tell the kinds of failure apart.
    """

    requests: int  # done: responses completed, whatever their status, and failed streams
    succeeded: int  # responses with a 2xx or 3xx status
    failed: int  # h2load's "failed": the rest (error statuses, reset streams, lost connections)
    errored: int  # failed other than by an HTTP status
    timeouts: int
    seconds: float
    rps: float
    statuses: dict[str, int]  # "2xx", "3xx", "4xx", "5xx"
    request_ms: dict[str, float]  # "min", "max", "mean" of the request times
    protocol: str | None = None  # "h2c" (prior knowledge: h2load assumes it) or "h2" (ALPN)
    tls_version: str | None = None
    cipher: str | None = None

    @property
    def errors(self) -> int:
        """Failed requests: h2load counts errored and timed-out streams among its failures."""
        return self.failed

    def describe_protocol(self) -> str | None:
        """"h2c", or "h2, TLSv1.3 TLS_AES_128_GCM_SHA256" over TLS (as readiness reports it)."""
        if self.protocol and self.tls_version:
            return f"{self.protocol}, {self.tls_version} {self.cipher or '?'}"
        return self.protocol


def parse_h2load(output: str) -> H2loadResult:
    """Parse h2load's summary; raises ValueError if ``output`` holds none."""
    finished = _RE_FINISHED.search(output)
    requests = _RE_REQUESTS.search(output)
    statuses = _RE_STATUSES.search(output)
    request_time = _RE_REQUEST_TIME.search(output)
    if not finished or not requests or not statuses or not request_time:
        raise ValueError(f"unrecognised h2load output:\n{output[-2000:]}")
    _total, _started, done, succeeded, failed, errored, timeouts = map(int, requests.groups())
    times = request_time.groups()
    protocol, tls, cipher = (_RE_PROTOCOL.search(output), _RE_TLS.search(output),
                             _RE_CIPHER.search(output))
    return H2loadResult(
        requests=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeouts=timeouts,
        seconds=float(finished.group(1)) * _UNITS[finished.group(2)] / 1e3,
        rps=float(finished.group(3)),
        statuses=dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, statuses.groups()),
                          strict=True)),
        request_ms={name: float(times[2 * i]) * _UNITS[times[2 * i + 1]]
                    for i, name in enumerate(("min", "max", "mean"))},
        protocol=protocol.group(1) if protocol else None,
        tls_version=tls.group(1) if tls else None,
        cipher=cipher.group(1) if cipher else None,
    )


def parse_h2load_log(text: str) -> list[float]:
    """The request times (ms) in an h2load ``--log-file``: one line per request, tab-separated
    start time (us since the epoch), status and microseconds until the end of the response
    (more columns may follow). Raises ValueError on a line that is not one."""
    times = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            times.append(int(fields[2]) / 1e3)
        except (IndexError, ValueError):
            raise ValueError(f"unrecognised h2load log line {number}: {line!r}") from None
    return times


def latency_percentiles(times_ms: list[float]) -> dict[str, float]:
    """The nearest-rank 50/75/90/99% of ``times_ms``, keyed like wrk's ("50", ...)."""
    if not times_ms:
        raise ValueError("no request times to take percentiles of")
    ordered = sorted(times_ms)
    return {str(q): ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]
            for q in (50, 75, 90, 99)}


def h2load_command(
    scenario: Scenario, port: int, duration: float, threads: int, log_file: Path | None = None,
) -> list[str]:
    """The h2load command line for one timed run of ``scenario``: ``scenario.connections``
    connections with ``scenario.streams`` streams in flight on each, for ``duration`` s.

    An http:// URL makes h2load speak h2c by prior knowledge (its default, ``-p h2c``); an
    https:// one offers h2 by ALPN.
    """
    command = [
        "h2load", f"-t{min(threads, scenario.connections)}", f"-c{scenario.connections}",
        f"-m{scenario.streams}", f"-D{max(1, round(duration))}",
    ]
    if log_file is not None:
        command.append(f"--log-file={log_file}")
    scheme = "https" if scenario.tls else "http"
    return [*command, f"{scheme}://{HOST}:{port}{scenario.path}"]


def measure_h2load(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """Warm up with h2load, then the measured h2load run; fills in ``run`` as measure_wrk
    does (req/s, latency percentiles from the per-request log, failures, CPU per request)."""
    if args.warmup > 0:  # a run of its own, so that the CPU measured is the measured run's
        subprocess.run(
            h2load_command(scenario, port, args.warmup, args.threads),
            capture_output=True, preexec_fn=child_setup(args.wrk_cpus), check=False,
        )
    log_file = log_dir / f"{stem}.h2load.tsv"
    command = h2load_command(scenario, port, args.duration, args.threads, log_file)
    run.wrk_command = shlex.join(command)
    cpu_before, wall_before = tree_cpu_seconds(proc.pid), time.monotonic()
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False,
        preexec_fn=child_setup(args.wrk_cpus),
    )
    cpu_after, wall_after = tree_cpu_seconds(proc.pid), time.monotonic()
    run.rss_mib = round(tree_rss_mib(proc.pid), 1)
    # The summary without the progress lines, which say nothing once the run is over.
    kept = [line for line in (completed.stdout + completed.stderr).splitlines()
            if not line.startswith("progress: ")]
    (log_dir / f"{stem}.h2load.txt").write_text("\n".join(kept) + "\n")
    try:
        # One line per request: megabytes per run. Only the percentiles are kept.
        times = parse_h2load_log(log_file.read_text()) if log_file.exists() else []
    finally:
        with contextlib.suppress(OSError):
            log_file.unlink()
    if proc.poll() is not None:
        run.error = f"server died during the run (exit code {proc.returncode})"
        return
    if completed.returncode != 0:
        run.error = f"h2load exited with {completed.returncode}: {completed.stderr.strip()}"
        return
    result = parse_h2load(completed.stdout)
    cpu = cpu_after - cpu_before
    run.protocol = result.describe_protocol() or run.protocol
    run.ok = result.requests > 0 and bool(times)
    run.error = None if run.ok else (
        f"no request completed ({result.errored} errored, {result.timeouts} timed out)"
        if result.requests == 0 else "h2load wrote no per-request log")
    run.rps = result.rps
    run.requests = result.requests
    run.latency_ms = latency_percentiles(times) if times else None
    run.errors = result.errors
    run.cpu_us_per_request = cpu / result.requests * 1e6 if result.requests else None
    run.cpu_utilisation = cpu / (wall_after - wall_before)
