"""What a campaign records, and the medians across rounds.

Owns ``Run`` (one measured run of one server on one scenario: the entries of results.json's
"runs", which ``--from-json`` reads back with ``Run(**entry)``), ``summarise`` (medians of the
wrk and ws runs) and ``summarise_loadgen`` (medians of the loadgen figures, or of the cancel
and overload ones). Must not measure nor format: renaming a field of ``Run`` breaks the
saved results files.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Run:
    """One measured run of one server on one scenario."""

    scenario: str
    server: str
    round: int
    ok: bool
    error: str | None = None
    rps: float | None = None
    requests: int | None = None
    latency_ms: dict[str, float] | None = None
    cpu_us_per_request: float | None = None
    cpu_utilisation: float | None = None  # server CPU seconds per wall second
    rss_mib: float | None = None
    errors: int | None = None
    command: str | None = None
    wrk_command: str | None = None  # or h2load's, for the HTTP/2 scenarios
    # What the readiness check (or h2load) went over: "HTTP/1.1", "HTTP/1.1, TLSv1.3
    # TLS_AES_256_GCM_SHA384", "h2c", "h2, TLSv1.3 ..."; None in files from before it.
    protocol: str | None = None
    # loadgen scenarios (sse, idle, ws): the figures derived for the report (see measure_sse,
    # measure_idle and measure_ws), loadgen's own JSON line, and its command line. ws runs
    # also fill in rps, latency_ms and the CPU figures, so that they join the wrk tables.
    loadgen: dict[str, float] | None = None
    loadgen_output: dict[str, float] | None = None
    loadgen_command: str | None = None
    # cancel and overload: the figures for their report section (see measure_cancel and
    # measure_overload).
    figures: dict[str, float] | None = None


@dataclass
class Summary:
    """Medians across the successful rounds of one (scenario, server)."""

    scenario: str
    server: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    rss_mib: float
    errors: int
    spread: float  # (max - min) / median of req/s across rounds
    protocol: str | None = None  # the last round's (they all run the same flags)


def summarise(runs: list[Run]) -> dict[tuple[str, str], Summary]:
    """Group the successful wrk, h2load and ws runs by (scenario, server); take medians."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        # wrk and ws runs have an rps; overload runs (wrk too) have their own section.
        if run.ok and run.rps is not None and run.figures is None:
            groups.setdefault((run.scenario, run.server), []).append(run)
    return {
        key: Summary(
            scenario=key[0],
            server=key[1],
            rounds=len(group),
            rps=statistics.median(r.rps for r in group),
            p50_ms=statistics.median(r.latency_ms["50"] for r in group),
            p99_ms=statistics.median(r.latency_ms["99"] for r in group),
            cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in group),
            rss_mib=statistics.median(r.rss_mib or 0.0 for r in group),
            errors=sum(r.errors or 0 for r in group),
            spread=(max(r.rps for r in group) - min(r.rps for r in group))
            / statistics.median(r.rps for r in group),
            protocol=group[-1].protocol,
        )
        for key, group in groups.items()
    }


LoadgenSummary = dict[tuple[str, str], dict[str, float]]


def summarise_loadgen(runs: list[Run], attribute: str = "loadgen") -> LoadgenSummary:
    """Per (scenario, server): the median of each loadgen figure (or of each of the figures
    in ``attribute``) across the successful rounds, plus "rounds"."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in runs:
        if run.ok and getattr(run, attribute) is not None:
            groups.setdefault((run.scenario, run.server), []).append(getattr(run, attribute))
    summary: LoadgenSummary = {}
    for key, group in groups.items():
        names = dict.fromkeys(name for g in group for name in g)
        summary[key] = {
            name: statistics.median(g[name] for g in group if name in g) for name in names
        } | {"rounds": len(group), "stalled_rounds": sum(g.get("stalled", 0) for g in group)}
    return summary
