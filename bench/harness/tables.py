"""The report's tables: headers, rows and the two ways to draw them (text and Markdown).

Owns the cell formats (``fmt_rps``, ``ratio``), each table's header and its rows from the
medians (results, ratios, app cost, sse, llm, idle, side by side, cancel, overload), and
``text_table`` / ``markdown_table``. Must not read files, measure, or write prose: the
sections around the tables are in report.
"""

from __future__ import annotations

import re
import shlex

from .results import LoadgenSummary, Summary
from .scenarios import (
    IDLE_SETTLE_S,
    IDLE_STALL_S,
    SCENARIOS,
    loadgen_scenario,
    loadgen_scenarios,
    sse_delay_target_ms,
)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` formatted like "1.23x", or "-" when either is missing."""
    return f"{a / b:.2f}x" if a and b else "-"


def comparison_columns(baseline: str, servers: list[str]) -> list[str]:
    """The servers that the baseline is compared with."""
    return [s for s in servers if s != baseline] if baseline in servers else []


def measured_servers(
    summary: dict[tuple[str, str], Summary], scenarios: list[str], servers: list[str]
) -> list[str]:
    """``servers`` less those with no result in any of ``scenarios`` (gunicorn in a run of
    ASGI scenarios, uvicorn in one of WSGI scenarios), so that no table gets a column of
    dashes for them."""
    return [s for s in servers if any((name, s) in summary for name in scenarios)]


def fmt_rps(value: float) -> str:
    """Requests/s for tables: thousands separators, no decimals."""
    return f"{value:,.0f}"


def results_rows(
    summary: dict[tuple[str, str], Summary], scenarios: list[str], servers: list[str]
) -> list[list[str]]:
    """Rows of the main table: one per (scenario, server) measured."""
    rows = []
    for name in scenarios:
        ideal = SCENARIOS[name].ideal_rps
        for server in servers:
            s = summary.get((name, server))
            if s is None:
                continue
            note = f"{s.rps / ideal:.0%} of ideal {ideal:,.0f}" if ideal else ""
            if (SCENARIOS[name].tls or SCENARIOS[name].http2) and s.protocol:
                note = s.protocol  # what was measured: HTTP version, TLS version and cipher
            if SCENARIOS[name].kind == "ws":
                note = "req/s: echo round trips (messages)/s; CPU per message"
                if s.errors:
                    note += f"; {s.errors} client(s) failed"
            elif s.errors:
                note = ", ".join(filter(None, [note, f"{s.errors} failed requests"]))
            rows.append([
                name, server, fmt_rps(s.rps), f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}",
                f"{s.cpu_us_per_request:.1f}", f"{s.rss_mib:.0f}", str(s.rounds),
                f"{s.spread:.0%}" if s.rounds > 1 else "-", note,
            ])
    return rows


RESULT_HEADER = [
    "scenario", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "RSS MiB", "rounds",
    "spread", "notes",
]


def ratio_rows(
    summary: dict[tuple[str, str], Summary], scenarios: list[str], baseline: str,
    others: list[str],
) -> list[list[str]]:
    """Rows of the ratio table: baseline req/s over each other server's, and CPU/req likewise."""
    rows = []
    for name in scenarios:
        base = summary.get((name, baseline))
        row = [name]
        for other in others:
            theirs = summary.get((name, other))
            row.append(ratio(base and base.rps, theirs and theirs.rps))
        for other in others:
            theirs = summary.get((name, other))
            row.append(
                ratio(base and base.cpu_us_per_request, theirs and theirs.cpu_us_per_request)
            )
        if any(cell != "-" for cell in row[1:]):
            rows.append(row)
    return rows


def ratio_header(baseline: str, others: list[str]) -> list[str]:
    """Header of the ratio table."""
    return (
        ["scenario"]
        + [f"req/s {baseline}/{o}" for o in others]
        + [f"CPU/req {baseline}/{o}" for o in others]
    )


APP_COST_HEADER = [
    "scenario", "app us/req in-process", "server", "server CPU us/req", "app's share",
    "server's own us/req", "best req/s ratio over it",
]


def app_cost_rows(
    summary: dict[tuple[str, str], Summary], costs: dict[str, float], servers: list[str]
) -> list[list[str]]:
    """Per scenario and Python server: its CPU per request beside the app's own cost, and the
    best ratio a server that cost nothing could reach over it (its CPU / the app's)."""
    rows = []
    for name, app_us in costs.items():
        for server in servers:
            s = summary.get((name, server))
            if s is None or server == "hyper" or not s.cpu_us_per_request:
                continue
            total = s.cpu_us_per_request
            rows.append([
                name, f"{app_us:.1f}", server, f"{total:.1f}", f"{min(app_us / total, 1):.0%}",
                f"{max(total - app_us, 0):.1f}", f"{total / app_us:.2f}x",
            ])
    return rows



def sse_header(name: str) -> list[str]:
    """Header of the table of the sse scenario ``name`` (its own delay target)."""
    return [
        "server", "events/s", "of ideal", "delay p50 ms", "delay p99 ms", "delay max ms",
        f"p99 <= {sse_delay_target_ms(SCENARIOS[name]):g} ms", "streams done", "open at once",
        "RSS before MiB", "RSS peak MiB", "KiB/stream", "CPU us/event", "rounds", "notes",
    ]


def llm_header(name: str) -> list[str]:
    """Header of the table of the llm scenario ``name`` (its own inter-token target)."""
    return [
        "server", "tokens/s", "of ideal", "TTFT p50 ms", "TTFT p99 ms", "inter-token p50 ms",
        "inter-token p99 ms", f"p99 <= {sse_delay_target_ms(SCENARIOS[name]):g} ms",
        "streams done", "stream p99 s", "open at once", "RSS before MiB", "RSS peak MiB",
        "KiB/stream", "CPU us/token", "rounds", "notes",
    ]


IDLE_HEADER = [
    "server", "open", "accepted", "open in s", "RSS before MiB", "RSS open MiB", "KiB/conn",
    "requests", "req p50 ms", "req max ms", "still open", "rounds", "notes",
]


def sse_rows(summary: LoadgenSummary, name: str, servers: list[str]) -> list[list[str]]:
    """Rows of the sse-tokens table: one per server measured."""
    ideal = SCENARIOS[name].ideal_rps
    target = sse_delay_target_ms(SCENARIOS[name])
    rows = []
    for server in servers:
        g = summary.get((name, server))
        if g is None:
            continue
        notes = []
        if g["completed"] < g["clients"]:
            notes.append(f"{g['clients'] - g['completed']:,.0f} streams incomplete")
        if g.get("open_peak") and g["open_peak"] < 0.9 * g["clients"]:
            notes.append(f"at most {g['open_peak']:,.0f} streams open at once")
        rows.append([
            server, fmt_rps(g["events_per_s"]),
            f"{g['events_per_s'] / ideal:.0%}" if ideal else "-",
            f"{g['delay_p50_ms']:.2f}", f"{g['delay_p99_ms']:.2f}", f"{g['delay_max_ms']:.2f}",
            "yes" if g["delay_p99_ms"] <= target else "no",
            f"{g['completed']:,.0f}/{g['clients']:,.0f}",
            f"{g['open_peak']:,.0f}" if "open_peak" in g else "-",
            f"{g['rss_before_mib']:.1f}", f"{g['rss_peak_mib']:.1f}",
            f"{g['kib_per_stream']:.1f}", f"{g['cpu_us_per_event']:.1f}",
            f"{g['rounds']:.0f}", ", ".join(notes),
        ])
    return rows


def llm_rows(summary: LoadgenSummary, name: str, servers: list[str]) -> list[list[str]]:
    """Rows of an llm scenario's table: one per server measured."""
    ideal = SCENARIOS[name].ideal_rps
    target = sse_delay_target_ms(SCENARIOS[name])
    rows = []
    for server in servers:
        g = summary.get((name, server))
        if g is None:
            continue
        notes = []
        if g["completed"] < g["clients"]:
            notes.append(f"{g['clients'] - g['completed']:,.0f} streams incomplete")
        if g.get("status_errors"):
            notes.append(f"{g['status_errors']:,.0f} error statuses")
        if g.get("failed"):
            notes.append(f"{g['failed']:,.0f} clients without a response")
        if g["open_peak"] < 0.9 * g["clients"]:
            notes.append(f"at most {g['open_peak']:,.0f} streams open at once")
        rows.append([
            server, fmt_rps(g["tokens_per_s"]),
            f"{g['tokens_per_s'] / ideal:.0%}" if ideal else "-",
            f"{g['ttft_p50_ms']:.1f}", f"{g['ttft_p99_ms']:.1f}",
            f"{g['token_delay_p50_ms']:.2f}", f"{g['token_delay_p99_ms']:.2f}",
            "yes" if g["token_delay_p99_ms"] <= target else "no",
            f"{g['completed']:,.0f}/{g['clients']:,.0f}", f"{g['stream_p99_ms'] / 1000:.2f}",
            f"{g['open_peak']:,.0f}", f"{g['rss_before_mib']:.1f}", f"{g['rss_peak_mib']:.1f}",
            f"{g['kib_per_stream']:.1f}", f"{g['cpu_us_per_token']:.1f}",
            f"{g['rounds']:.0f}", ", ".join(notes),
        ])
    return rows


def idle_rows(summary: LoadgenSummary, name: str, servers: list[str]) -> list[list[str]]:
    """Rows of the idle-10k table: one per server measured."""

    def cell(g: dict[str, float], figure: str, fmt: str) -> str:
        return fmt.format(g[figure]) if figure in g else "-"

    rows = []
    for server in servers:
        g = summary.get((name, server))
        if g is None:
            continue
        notes = []
        if g["stalled_rounds"]:
            notes.append(
                f"stopped accepting at {g['accepted']:,.0f} connections for"
                f" {IDLE_STALL_S:g} s in {g['stalled_rounds']:.0f} of {g['rounds']:.0f}"
                " round(s); KiB/conn over the accepted ones"
            )
        if g.get("failed"):
            notes.append(f"{g['failed']:,.0f} connects failed")
        if "connections" in g and g["accepted"] < g["connections"]:
            notes.append(f"{g['connections'] - g['accepted']:,.0f} not accepted after"
                         f" {IDLE_SETTLE_S:g} s")
        if "still_open" in g and g["still_open"] < g["connections"]:
            notes.append(f"server closed {g['connections'] - g['still_open']:,.0f} idle")
        rows.append([
            server, cell(g, "connections", "{:,.0f}"), cell(g, "accepted", "{:,.0f}"),
            cell(g, "open_s", "{:.1f}"), cell(g, "rss_before_mib", "{:.1f}"),
            cell(g, "rss_open_mib", "{:.1f}"), cell(g, "kib_per_connection", "{:.2f}"),
            cell(g, "requests", "{:.0f}"), cell(g, "latency_p50_ms", "{:.2f}"),
            cell(g, "latency_max_ms", "{:.2f}"), cell(g, "still_open", "{:,.0f}"),
            f"{g['rounds']:.0f}", ", ".join(notes),
        ])
    return rows


def loadgen_comparison(
    summary: LoadgenSummary, scenarios: list[str], servers: list[str], baseline: str
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table: the key figures of the loadgen scenarios per
    server, with the baseline's ratio to each other server where a ratio means something."""
    present = [s for s in servers if any((n, s) in summary for n in scenarios)]
    others = comparison_columns(baseline, present)
    header = ["metric", *present, *[f"{baseline}/{o}" for o in others]]
    specs = []  # (scenario, figure, label, format, ratio?)
    for sse in loadgen_scenarios("sse", scenarios):
        specs += [
            (sse, "events_per_s", f"{sse}: events/s (higher is better)", fmt_rps, True),
            (sse, "completed", f"{sse}: streams completed", "{:,.0f}".format, False),
            (sse, "delay_p99_ms", f"{sse}: p99 inter-event delay ms (target <="
             f" {sse_delay_target_ms(SCENARIOS[sse]):g})", "{:.2f}".format, False),
            (sse, "kib_per_stream", f"{sse}: KiB per open stream (peak)", "{:.1f}".format,
             True),
            (sse, "cpu_us_per_event", f"{sse}: CPU us/event", "{:.1f}".format, True),
        ]
    for llm in loadgen_scenarios("llm", scenarios):
        specs += [
            (llm, "tokens_per_s", f"{llm}: tokens/s (higher is better)", fmt_rps, True),
            (llm, "ttft_p50_ms", f"{llm}: time to first token p50 ms", "{:.1f}".format, True),
            (llm, "ttft_p99_ms", f"{llm}: time to first token p99 ms", "{:.1f}".format, True),
            (llm, "token_delay_p99_ms", f"{llm}: p99 inter-token delay ms (target <="
             f" {sse_delay_target_ms(SCENARIOS[llm]):g})", "{:.2f}".format, True),
            (llm, "completed", f"{llm}: streams completed", "{:,.0f}".format, False),
            (llm, "rss_peak_mib", f"{llm}: RSS peak MiB", "{:.1f}".format, True),
            (llm, "kib_per_stream", f"{llm}: KiB per open stream (peak)", "{:.1f}".format,
             True),
            (llm, "cpu_us_per_token", f"{llm}: CPU us/token", "{:.1f}".format, True),
        ]
    if idle := loadgen_scenario("idle", scenarios):
        specs += [
            (idle, "kib_per_connection", f"{idle}: KiB per idle connection",
             "{:.2f}".format, True),
            (idle, "latency_p50_ms", f"{idle}: request p50 ms", "{:.2f}".format, False),
            (idle, "still_open", f"{idle}: connections still open at the end",
             "{:,.0f}".format, False),
        ]
    rows = []
    for name, figure, label, fmt, with_ratio in specs:
        values = {s: summary[(name, s)][figure] for s in present
                  if figure in summary.get((name, s), {})}
        if not values:
            continue
        row = [label]
        for server in present:
            g = summary.get((name, server), {})
            cell = fmt(values[server]) if server in values else "-"
            if server in values and g.get("stalled_rounds"):
                cell += f" ({g['accepted']:,.0f} accepted)"
            row.append(cell)
        for other in others:
            row.append(ratio(values.get(baseline), values.get(other)) if with_ratio else "-")
        rows.append(row)
    return header, rows



CANCEL_HEADER = [
    "server", "flags", "requests", "reached app", "cancelled", "not cancelled",
    "delay p50 ms", "delay p99 ms", "delay max ms", "rounds",
]

OVERLOAD_HEADER = [
    "server", "flags", "200/s", "responses/s", "shed", "503s", "other status",
    "socket errors", "timeouts", "p50 ms", "p99 ms", "rounds",
]


def server_flags(name: str, server: str, code: bool) -> str:
    """The scenario's extra flags for ``server``, for the tables (``code``: in backquotes)."""
    flags = SCENARIOS[name].server_args.get(server) if name in SCENARIOS else None
    if not flags:
        return "defaults"
    return f"`{shlex.join(flags)}`" if code else shlex.join(flags)


def cancel_rows(
    summary: LoadgenSummary, name: str, servers: list[str], code: bool
) -> list[list[str]]:
    """Rows of the cancel table: one per server measured."""
    rows = []
    for server in servers:
        f = summary.get((name, server))
        if f is None:
            continue
        delays = [f"{f[k]:.2f}" if k in f else "-"
                  for k in ("delay_p50_ms", "delay_p99_ms", "delay_max_ms")]
        rows.append([
            server, server_flags(name, server, code), f"{f['requests']:,.0f}",
            f"{f['reached']:,.0f}", f"{f['cancelled']:,.0f}",
            f"{f['not_cancelled']:,.0f} of {f['requests']:,.0f}", *delays, f"{f['rounds']:.0f}",
        ])
    return rows


def overload_rows(
    summary: LoadgenSummary, name: str, servers: list[str], code: bool
) -> list[list[str]]:
    """Rows of the overload table: one per server measured."""
    rows = []
    for server in servers:
        f = summary.get((name, server))
        if f is None:
            continue
        rows.append([
            server, server_flags(name, server, code), fmt_rps(f["ok_per_s"]),
            fmt_rps(f["responses_per_s"]), f"{f['shed_share']:.1%}", f"{f['shed_503']:,.0f}",
            f"{f['other_status']:,.0f}", f"{f['socket_errors']:,.0f}", f"{f['timeouts']:,.0f}",
            f"{f['latency_p50_ms']:.2f}", f"{f['latency_p99_ms']:.2f}", f"{f['rounds']:.0f}",
        ])
    return rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table; numbers right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = bool(re.fullmatch(r"[\d.,x%-]+", cell))
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    left = ("scenario", "server", "notes", "metric", "flags")
    aligns = ["---" if h in left else "---:" for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
