"""loadgen (bench/loadgen.rs): the drivers of the sse, llm, ws and idle scenarios, and the
parser of loadgen's output.

Owns starting loadgen, sampling the server's RSS and descriptors while it runs, reading its
JSON result line (``parse_loadgen``) and turning it into the figures of a ``Run``
(``measure_sse``, ``measure_llm`` with ``llm_figures``, ``measure_ws``, ``measure_idle``,
including the idle stall detection), and the llm scenarios' request files.
Must not start or stop servers, nor render reports; loadgen itself is built by
``cargo build --release --example loadgen`` (bench/bench.mk), never from here.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .procstat import tree_cpu_seconds, tree_fd_count, tree_rss_mib, tree_socket_count
from .results import Run
from .scenarios import (
    FD_SAMPLE_EVERY,
    IDLE_SETTLE_S,
    IDLE_STALL_S,
    LLM_WARMUP_TOKENS,
    LOADGEN_TIMEOUT_S,
    RSS_SAMPLE_S,
    WS_MESSAGE_BYTES,
    Scenario,
    llm_request,
)
from .servers import child_setup, loadgen_binary


def start_loadgen(command: list[str], args: argparse.Namespace) -> subprocess.Popen:
    """Start loadgen (on the wrk CPUs when pinning), its stdout and stderr piped.

    Each writes a line or two, so the pipes never fill while the caller samples the server.
    """
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=child_setup(args.wrk_cpus),
    )


def watch_rss(root: int, loadgen: subprocess.Popen, seconds: float) -> float:
    """Peak RSS (MiB) of the ``root`` tree, sampled every RSS_SAMPLE_S.

    Samples until ``loadgen`` exits or ``seconds`` have passed, whichever comes first.
    """
    peak = 0.0
    end = time.monotonic() + seconds
    while loadgen.poll() is None and time.monotonic() < end:
        peak = max(peak, tree_rss_mib(root))
        time.sleep(RSS_SAMPLE_S)
    return peak


def watch_streams(root: int, loadgen: subprocess.Popen, seconds: float) -> tuple[float, int]:
    """Peak RSS (MiB) and peak number of open descriptors of the ``root`` tree while
    ``loadgen`` runs (at most ``seconds``): RSS every RSS_SAMPLE_S, descriptors every
    FD_SAMPLE_EVERY samples."""
    peak_rss, peak_fds, sample = 0.0, 0, 0
    end = time.monotonic() + seconds
    while loadgen.poll() is None and time.monotonic() < end:
        peak_rss = max(peak_rss, tree_rss_mib(root))
        if sample % FD_SAMPLE_EVERY == 0:
            peak_fds = max(peak_fds, tree_fd_count(root))
        sample += 1
        time.sleep(RSS_SAMPLE_S)
    return peak_rss, peak_fds


def finish_loadgen(
    loadgen: subprocess.Popen, proc: subprocess.Popen, mode: str, log_dir: Path, stem: str,
    timeout: float = LOADGEN_TIMEOUT_S,
) -> dict[str, float]:
    """Wait up to ``timeout`` s for loadgen (then kill it), log and parse its JSON line.

    Raises ValueError when loadgen or the server failed.
    """
    try:
        out, err = loadgen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        loadgen.kill()
        out, err = loadgen.communicate()
        (log_dir / f"{stem}.loadgen.txt").write_text(out + err)
        raise ValueError(f"loadgen {mode} did not finish in {LOADGEN_TIMEOUT_S:g} s") from None
    (log_dir / f"{stem}.loadgen.txt").write_text(out + err)
    if proc.poll() is not None:
        raise ValueError(f"server died during the run (exit code {proc.returncode})")
    if loadgen.returncode != 0:
        raise ValueError(f"loadgen exited with {loadgen.returncode}: {err.strip()[-300:]}")
    return parse_loadgen(out, mode)


def parse_loadgen(out: str, mode: str) -> dict[str, float]:
    """loadgen's result: the JSON object on the last line of its stdout, which must be of
    ``mode`` ("sse", "idle" or "ws"); raises ValueError otherwise."""
    lines = out.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise ValueError(f"unrecognised loadgen output: {out[-300:]!r}") from None
    if result.get("mode") != mode:
        raise ValueError(f"unrecognised loadgen output: {out[-300:]!r}")
    return result


@dataclass
class SampledLoad:
    """One loadgen run with the server watched: loadgen's JSON line, the server's RSS and
    open descriptors before and at their peak, its CPU seconds, and loadgen's own CPU."""

    result: dict
    rss_before: float
    rss_peak: float
    fds_before: int
    fds_peak: int
    cpu: float
    loadgen_cpu: float

    def open_peak(self, clients: int) -> int:
        """The most connections the server held at once (at most the clients)."""
        return min(clients, max(0, self.fds_peak - self.fds_before))


def run_sampled_loadgen(
    command: list[str], mode: str, proc: subprocess.Popen, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> SampledLoad:
    """Runs loadgen while sampling the server (see ``watch_streams``)."""
    rss_before = tree_rss_mib(proc.pid)
    fds_before = tree_fd_count(proc.pid)
    cpu_before = tree_cpu_seconds(proc.pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen = start_loadgen(command, args)
    rss_peak, fds_peak = watch_streams(proc.pid, loadgen, LOADGEN_TIMEOUT_S)
    cpu = tree_cpu_seconds(proc.pid) - cpu_before
    result = finish_loadgen(loadgen, proc, mode, log_dir, stem, timeout=5.0)
    # Only loadgen is reaped in between: this is its own CPU time (client-side load).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen_cpu = (children.ru_utime + children.ru_stime
                   - children_before.ru_utime - children_before.ru_stime)
    return SampledLoad(result, rss_before, max(rss_before, rss_peak), fds_before, fds_peak,
                       cpu, loadgen_cpu)


def measure_sse(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """``scenario.connections`` concurrent event streams with ``loadgen sse``.

    The server's RSS is sampled every RSS_SAMPLE_S while loadgen runs, and its open
    descriptors every FD_SAMPLE_EVERY samples: the peak RSS minus the RSS before, divided by
    the most streams open at once (descriptors at the peak minus before, at most the clients),
    gives the memory per open stream. A server that caps its connections (Granian's
    --backpressure) holds fewer streams open than there are clients.
    """
    binary = str(loadgen_binary())
    if args.warmup > 0:  # 100 short streams of 10 events, discarded
        warm = [binary, "sse", "--port", str(port), "--clients", "100",
                "--path", f"/?n=10&interval={scenario.interval_s:g}"]
        finish_loadgen(start_loadgen(warm, args), proc, "sse", log_dir, f"{stem}.warmup")
    command = [binary, "sse", "--port", str(port), "--path", scenario.load_path or scenario.path,
               "--clients", str(scenario.connections)]
    run.loadgen_command = shlex.join(command)
    load = run_sampled_loadgen(command, "sse", proc, args, log_dir, stem)
    result, rss_before, rss_peak, cpu = load.result, load.rss_before, load.rss_peak, load.cpu
    run.loadgen_output = result
    completed, clients, seconds = result["completed"], result["clients"], result["seconds"]
    # loadgen also counts each completed stream's final chunk ("0\r\n\r\n") as an event.
    events = result["events"] - completed
    open_peak = load.open_peak(clients)
    run.loadgen = {
        "clients": clients,
        "completed": completed,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds if seconds else 0.0,
        "delay_p50_ms": result["delay_p50_ms"],
        "delay_p99_ms": result["delay_p99_ms"],
        "delay_max_ms": result["delay_max_ms"],
        "rss_before_mib": round(rss_before, 2),
        "rss_peak_mib": round(rss_peak, 2),
        "open_peak": open_peak,
        "kib_per_stream": (rss_peak - rss_before) * 1024 / (open_peak or clients),
        "cpu_us_per_event": cpu / events * 1e6 if events else 0.0,
        "cpu_utilisation": cpu / seconds if seconds else 0.0,
        "loadgen_cpu_utilisation": load.loadgen_cpu / seconds if seconds else 0.0,
    }
    run.rss_mib = round(rss_peak, 1)
    run.ok = events > 0
    run.error = None if run.ok else "no event delivered"


def llm_command(binary: str, port: int, scenario: Scenario, body_file: Path,
                clients: int) -> list[str]:
    """``loadgen sse`` POSTing ``body_file`` (JSON) to the llm scenario's path."""
    return [binary, "sse", "--port", str(port), "--path", scenario.load_path or scenario.path,
            "--clients", str(clients), "--method", scenario.method, "--body-file", str(body_file),
            "--content-type", scenario.content_type or "application/json"]


def write_llm_request(log_dir: Path, name: str, max_tokens: int) -> Path:
    """Write the llm request asking for ``max_tokens`` tokens to ``log_dir``; return its path.

    The content is fixed (scenarios.llm_request), so rewriting it for every run is harmless.
    """
    path = log_dir / f"{name}.request-{max_tokens}.json"
    path.write_bytes(llm_request(max_tokens))
    return path


def llm_figures(load: SampledLoad) -> dict[str, float]:
    """The figures of an llm run from ``loadgen sse``'s line and the server's samples.

    Tokens are loadgen's ``tokens``: the events with a ``data:`` field in the decoded bodies,
    less the ``data: [DONE]`` ones (loadgen's raw ``events`` also counts [DONE] and the last
    chunk of every stream, and is not used here). A stream completed when it ended with
    status 200 after its ``[DONE]`` (``done``).
    """
    result = load.result
    clients, seconds, tokens = result["clients"], result["seconds"], result["tokens"]
    open_peak = load.open_peak(clients)
    return {
        "clients": clients,
        "completed": result["done"],
        "ended": result["ended"],
        "status_errors": result["status_errors"],
        "failed": result["failed"],
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "ttft_p50_ms": result["ttft_p50_ms"],
        "ttft_p99_ms": result["ttft_p99_ms"],
        "ttft_max_ms": result["ttft_max_ms"],
        "token_delay_p50_ms": result["token_delay_p50_ms"],
        "token_delay_p99_ms": result["token_delay_p99_ms"],
        "token_delay_max_ms": result["token_delay_max_ms"],
        "stream_p50_ms": result["stream_p50_ms"],
        "stream_p99_ms": result["stream_p99_ms"],
        "rss_before_mib": round(load.rss_before, 2),
        "rss_peak_mib": round(load.rss_peak, 2),
        "open_peak": open_peak,
        "kib_per_stream": (load.rss_peak - load.rss_before) * 1024 / (open_peak or clients),
        "cpu_us_per_token": load.cpu / tokens * 1e6 if tokens else 0.0,
        "cpu_utilisation": load.cpu / seconds if seconds else 0.0,
        "loadgen_cpu_utilisation": load.loadgen_cpu / seconds if seconds else 0.0,
    }


def measure_llm(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """``scenario.connections`` clients POST an LLM completion request at once, each reading
    the streamed tokens to the end (``loadgen sse --method POST --body-file ...``), after a
    warm-up of 100 streams of LLM_WARMUP_TOKENS tokens. The request files are written to
    ``log_dir``. The server is sampled as in ``measure_sse``."""
    binary = str(loadgen_binary())
    if args.warmup > 0:
        warm_body = write_llm_request(log_dir, scenario.name, LLM_WARMUP_TOKENS)
        warm = llm_command(binary, port, scenario, warm_body, 100)
        finish_loadgen(start_loadgen(warm, args), proc, "sse", log_dir, f"{stem}.warmup")
    body = write_llm_request(log_dir, scenario.name, scenario.events)
    command = llm_command(binary, port, scenario, body, scenario.connections)
    run.loadgen_command = shlex.join(command)
    load = run_sampled_loadgen(command, "sse", proc, args, log_dir, stem)
    run.loadgen_output = load.result
    run.loadgen = llm_figures(load)
    run.rss_mib = round(load.rss_peak, 1)
    run.ok = run.loadgen["tokens"] > 0
    if not run.ok:
        run.error = (f"no token delivered ({run.loadgen['status_errors']:.0f} error statuses,"
                     f" {run.loadgen['failed']:.0f} clients without a response)")


def measure_ws(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """WebSocket echo with ``loadgen ws``: ``scenario.connections`` clients, each doing echo
    round trips of one WS_MESSAGE_BYTES text message for ``--duration`` seconds, after a
    ``--warmup`` run of the same kind (discarded).

    The figures fill the wrk fields too (messages/s as rps, round-trip p50/p99, the server's
    CPU per message), so that ws-echo joins the main results and ratio tables.
    """
    binary = str(loadgen_binary())

    def command(seconds: float) -> list[str]:
        return [binary, "ws", "--port", str(port), "--path", scenario.load_path or scenario.path,
                "--clients", str(scenario.connections), "--hold", f"{seconds:g}",
                "--size", str(WS_MESSAGE_BYTES)]

    if args.warmup > 0:
        finish_loadgen(start_loadgen(command(args.warmup), args), proc, "ws", log_dir,
                       f"{stem}.warmup")
    measured = command(args.duration)
    run.loadgen_command = shlex.join(measured)
    load = run_sampled_loadgen(measured, "ws", proc, args, log_dir, stem)
    result, rss_before, rss_peak, cpu = load.result, load.rss_before, load.rss_peak, load.cpu
    run.loadgen_output = result
    messages, seconds = result["messages"], result["seconds"]
    clients, failed = result["clients"], result["failed"]
    run.loadgen = {
        "clients": clients,
        "failed": failed,
        "open_peak": load.open_peak(clients),
        "messages": messages,
        "seconds": seconds,
        "messages_per_s": result["messages_per_s"],
        "latency_p50_ms": result["latency_p50_ms"],
        "latency_p99_ms": result["latency_p99_ms"],
        "rss_before_mib": round(rss_before, 2),
        "rss_peak_mib": round(rss_peak, 2),
        "cpu_us_per_message": cpu / messages * 1e6 if messages else 0.0,
        "cpu_utilisation": cpu / seconds if seconds else 0.0,
        "loadgen_cpu_utilisation": load.loadgen_cpu / seconds if seconds else 0.0,
    }
    run.rps = result["messages_per_s"]
    run.requests = messages
    run.latency_ms = {"50": result["latency_p50_ms"], "99": result["latency_p99_ms"]}
    run.errors = failed
    run.cpu_us_per_request = cpu / messages * 1e6 if messages else None
    run.cpu_utilisation = cpu / seconds if seconds else None
    run.rss_mib = round(rss_peak, 1)
    run.ok = messages > 0
    run.error = None if run.ok else (
        f"no echo completed: {failed} of {clients} clients failed (handshake or echo)")


def wait_for_open(
    loadgen: subprocess.Popen, root: int, sockets_before: int
) -> tuple[bool, int]:
    """Wait for loadgen's "open N" line on stderr while watching the server accept.

    Returns (True, _) once loadgen reports its connections open, (False, accepted) when the
    server's socket count has not grown for IDLE_STALL_S, when loadgen exits first or after
    LOADGEN_TIMEOUT_S.
    """
    deadline = time.monotonic() + LOADGEN_TIMEOUT_S
    accepted, last_growth = 0, time.monotonic()
    while time.monotonic() < deadline:
        readable, _, _ = select.select([loadgen.stderr], [], [], 0.5)
        if readable:
            line = loadgen.stderr.readline()
            if line.startswith("open "):
                return True, accepted
            if not line:  # loadgen exited
                break
            continue
        now_accepted = tree_socket_count(root) - sockets_before
        if now_accepted > accepted:
            accepted, last_growth = now_accepted, time.monotonic()
        elif time.monotonic() - last_growth > IDLE_STALL_S:
            break
    return False, tree_socket_count(root) - sockets_before


def measure_idle(
    run: Run, proc: subprocess.Popen, scenario: Scenario, port: int, args: argparse.Namespace,
    log_dir: Path, stem: str,
) -> None:
    """``scenario.connections`` idle connections with ``loadgen idle``.

    RSS is read IDLE_SETTLE_S after loadgen reports all connections open; (that - RSS before)
    / connections is the memory per idle connection. The server's socket count at that moment
    tells how many it had accepted. loadgen times a request every 100 ms meanwhile, and
    reports at the end how many of its connections the server has not closed.

    When the server stops accepting before all are open (see IDLE_STALL_S), loadgen is stopped
    and the run records a stall: how many connections the server accepted, and the memory
    per accepted connection; the request latencies and still-open count are then unknown.
    """
    command = [str(loadgen_binary()), "idle", "--port", str(port), "--path", scenario.path,
               "--connections", str(scenario.connections), "--hold", f"{scenario.hold_s:g}"]
    run.loadgen_command = shlex.join(command)
    rss_before = tree_rss_mib(proc.pid)
    sockets_before = tree_socket_count(proc.pid)
    started = time.monotonic()
    loadgen = start_loadgen(command, args)
    opened, accepted = wait_for_open(loadgen, proc.pid, sockets_before)
    if not opened:
        rss_stalled = tree_rss_mib(proc.pid)
        exited = loadgen.poll() is not None
        if not exited:
            loadgen.kill()
        out, err = loadgen.communicate()
        (log_dir / f"{stem}.loadgen.txt").write_text(out + err)
        if proc.poll() is not None:
            raise ValueError(f"server died during the run (exit code {proc.returncode})")
        if exited or accepted <= 0:
            raise ValueError(
                f"loadgen never reported its connections open (exit code {loadgen.returncode}"
                f"{': ' + err.strip()[-200:] if err.strip() else ''})"
            )
        # The server stopped accepting: a result about the server, not a harness failure.
        run.loadgen = {
            "stalled": 1,
            "accepted": accepted,
            "rss_before_mib": round(rss_before, 2),
            "rss_open_mib": round(rss_stalled, 2),
            "kib_per_connection": (rss_stalled - rss_before) * 1024 / accepted,
        }
        run.rss_mib = round(rss_stalled, 1)
        run.ok = True
        return
    open_s = time.monotonic() - started
    rss_peak = watch_rss(proc.pid, loadgen, IDLE_SETTLE_S)
    rss_open = tree_rss_mib(proc.pid)
    accepted = tree_socket_count(proc.pid) - sockets_before
    rss_peak = max(rss_peak, rss_open, watch_rss(proc.pid, loadgen, LOADGEN_TIMEOUT_S))
    result = finish_loadgen(loadgen, proc, "idle", log_dir, stem, timeout=5.0)
    run.loadgen_output = result
    connections = result["connections"]
    run.loadgen = {
        "stalled": 0,
        "connections": connections,
        "failed": result["failed"],
        "open_s": round(open_s, 3),
        "accepted": accepted,
        "rss_before_mib": round(rss_before, 2),
        "rss_open_mib": round(rss_open, 2),
        "rss_peak_mib": round(rss_peak, 2),
        "kib_per_connection": (rss_open - rss_before) * 1024 / connections if connections else 0,
        "requests": result["requests"],
        "latency_p50_ms": result["latency_p50_ms"],
        "latency_max_ms": result["latency_max_ms"],
        "still_open": result["still_open"],
    }
    run.rss_mib = round(rss_open, 1)
    run.ok = connections > 0
    run.error = None if run.ok else "no connection opened"
