"""The reports: the Markdown file (``--out``) and the tables on stdout, from the results JSON.

Owns the sections (results and ratios, app cost, streams and idle connections, cancellation
and overload, failed runs, scenarios) with their explanations, ``write_markdown`` and
``print_tables``. Everything comes from the results data (``--from-json`` re-renders a saved
run), and bench/ANALYSIS.md is appended to bench/RESULTS.md. Must not measure or start
processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import ANALYSIS, REPO
from .results import Run, Summary, summarise, summarise_loadgen
from .scenarios import (
    CANCEL_CONCURRENCY,
    CANCEL_HOLD_S,
    CANCEL_REQUESTS,
    CANCEL_SETTLE_S,
    FD_SAMPLE_EVERY,
    IDLE_SETTLE_S,
    IDLE_STALL_S,
    LLM_PROMPT_CHARS,
    LOADGEN_KINDS,
    OVERLOAD_LIMIT,
    RSS_SAMPLE_S,
    SCENARIOS,
    WS_MESSAGE_BYTES,
    llm_request,
    loadgen_scenario,
    loadgen_scenarios,
    sse_delay_target_ms,
)
from .tables import (
    APP_COST_HEADER,
    CANCEL_HEADER,
    IDLE_HEADER,
    OVERLOAD_HEADER,
    RESULT_HEADER,
    app_cost_rows,
    cancel_rows,
    comparison_columns,
    idle_rows,
    llm_header,
    llm_rows,
    loadgen_comparison,
    markdown_table,
    measured_servers,
    overload_rows,
    ratio_header,
    ratio_rows,
    results_rows,
    sse_header,
    sse_rows,
    text_table,
)
from .tls import TLS_KEY_DESCRIPTION


def protocol_notes(scenarios: list[str], summary: dict[tuple[str, str], Summary]) -> list[str]:
    """The paragraphs under the results table on the TLS and HTTP/2 scenarios measured."""
    measured = {name for name, _server in summary}
    tls = [n for n in scenarios if n in measured and SCENARIOS[n].tls]
    h2 = [n for n in scenarios if n in measured and SCENARIOS[n].http2]
    closing = [n for n in tls if any(h.lower().replace(" ", "") == "connection:close"
                                     for h in SCENARIOS[n].headers)]
    lines = []
    if tls:
        text = (
            f"{', '.join(tls)} {'is' if len(tls) == 1 else 'are'} served over TLS with a"
            f" self-signed {TLS_KEY_DESCRIPTION} certificate made at the start of the run: each"
            " server gets it with its own flags and keeps its defaults otherwise (protocol"
            " versions, cipher suites). The notes give what the readiness check negotiated"
            " (a Python client, whose TLS offer is OpenSSL's default, as wrk's is)."
        )
        if any(SCENARIOS[n].kind == "wrk" for n in tls):
            text += (" wrk offers no ALPN (so HTTP/1.1), checks no certificate and resumes no"
                     " session.")
        if closing:
            text += (
                f" {', '.join(closing)} sends `Connection: close`: every request is a new"
                " connection and a full handshake, so req/s is handshakes per second, and"
                " wrk's latencies, which start once the connection is set up, leave the"
                " handshake out."
            )
        lines += [text, ""]
    if h2:
        lines += [
            f"{', '.join(h2)} {'is' if len(h2) == 1 else 'are'} measured with h2load rather"
            " than wrk: a few connections with many streams in flight on each (see the"
            " scenarios at the end), for the same duration after a warm-up run of the same"
            " kind. Over plain TCP h2load speaks h2c by prior knowledge (the HTTP/2 preface at"
            " once, no Upgrade); Granian runs with `--http 2`, ferricorn and Hypercorn serve"
            " HTTP/1.1 and h2c on the same port, and uvicorn, which has no HTTP/2, is left"
            " out. p50 and p99 come from h2load's per-request log (its summary has only the"
            " mean); failed requests are h2load's \"failed\" (error statuses, reset streams,"
            " lost connections).",
            "",
        ]
    return lines


def wsgi_notes(scenarios: list[str], summary: dict[tuple[str, str], Summary]) -> list[str]:
    """The paragraph under the results table on the WSGI scenarios measured."""
    measured = {name for name, _server in summary}
    wsgi = [n for n in scenarios if n in measured and SCENARIOS[n].interface == "wsgi"]
    if not wsgi:
        return []
    threads = sorted({SCENARIOS[n].wsgi_threads for n in wsgi})
    count = " or ".join(str(t) for t in threads)
    return [
        f"{', '.join(wsgi)} {'serves' if len(wsgi) == 1 else 'serve'} a WSGI app"
        " (`bench/apps/wsgi_apps.py`, plain PEP 3333 callables) with one worker running it"
        f" on {count} threads: ferricorn with `--interface wsgi --wsgi-threads {count}`,"
        f" Granian with `--interface wsgi --blocking-threads {count}`, gunicorn with"
        f" `--worker-class gthread --threads {count} --workers 1`. uvicorn is left out (its"
        " WSGI shim is deprecated), and so are Hypercorn and the hyper ceiling.",
        "",
    ]


def app_cost_section(data: dict, table: Callable, prose: bool) -> list[str]:
    """The "Server or app: which one is the bottleneck" section (empty without figures)."""
    costs = data.get("app_costs") or {}
    summary = summarise([Run(**r) for r in data["runs"]])
    rows = app_cost_rows(summary, costs, data["settings"]["servers"])
    if not rows:
        return []
    lines = ["## Server or app: which one is the bottleneck", ""]
    if prose:
        lines += [
            "`bench/appcost.py` calls each app in-process, with no server and no socket: a"
            " Task per call, a scope dict per call, a `receive()` that returns the whole body"
            " and a `send()` that does nothing, on uvloop. That CPU time per request is a floor"
            " under every server: the rest of a server's CPU per request (from the tables"
            " above) is its own. Where the app's share is high, the app is the bottleneck and"
            " no server can be much faster; \"best req/s ratio over it\" is what a server"
            " that cost nothing at all would reach against that server (its CPU per request"
            " over the app's).",
            "",
        ]
        if any(SCENARIOS[n].interface == "wsgi" for n in costs if n in SCENARIOS):
            lines += [
                "The WSGI apps are called the same way with no event loop: an environ dict per"
                " call with the body in an `io.BytesIO` as `wsgi.input`, a `start_response`"
                " that keeps nothing, the returned iterable read to its end.",
                "",
            ]
    return [*lines, table(APP_COST_HEADER, rows), ""]


def loadgen_sections(data: dict, table: Callable, prose: bool) -> list[str]:
    """The "Streams and idle connections" section: a table per loadgen scenario and the
    side-by-side comparison. ``table`` renders (header, rows); ``prose`` adds the
    explanations (Markdown)."""
    settings = data["settings"]
    scenarios, servers = settings["scenarios"], settings["servers"]
    summary = summarise_loadgen([Run(**r) for r in data["runs"]])
    sses, idle = loadgen_scenarios("sse", scenarios), loadgen_scenario("idle", scenarios)
    llms = loadgen_scenarios("llm", scenarios)
    if not any(k[0] in (*sses, *llms, idle) for k in summary):
        return []
    lines = ["## Streams and idle connections", ""]
    if prose:
        lines += [
            "Measured with `loadgen` (`bench/loadgen.rs`, built by `cargo build --release"
            " --example loadgen`) instead of wrk: one run per round and server, medians across"
            " rounds. RSS is that of the server's whole process tree.",
            "",
        ]
    for sse in sses:
        if not (rows := sse_rows(summary, sse, servers)):
            continue
        scenario = SCENARIOS[sse]
        interval_ms = scenario.interval_s * 1000
        lines += [f"### {sse}", ""]
        if prose:
            lines += [
                f"{scenario.connections:,} concurrent clients each read one stream of"
                f" {scenario.events} `data:` events {interval_ms:g} ms apart"
                f" (`bench/apps/sse_tokens.py`, `{scenario.load_path}`), so the ideal is"
                f" {scenario.ideal_rps:,.0f} events/s. events/s counts the events delivered"
                " (loadgen's count minus the final chunk it also counts once per stream) over"
                " loadgen's wall time, connection set-up included. The delays are the gaps"
                " between consecutive events of a stream as the client reads them: the app"
                f" sleeps {interval_ms:g} ms between events, so anything above that is lag"
                " (a delay near 0 means events arrived together, after a lag); the target is"
                f" a p99 of at most {sse_delay_target_ms(scenario):g} ms. RSS is sampled every"
                f" {RSS_SAMPLE_S * 1000:g} ms while loadgen runs and the server's open"
                f" descriptors every {RSS_SAMPLE_S * FD_SAMPLE_EVERY:g} s; open at once is the"
                " most descriptors it held beyond those before the run (at most the clients),"
                " and KiB/stream is (RSS peak - RSS before) / open at once. A server that caps"
                " its connections (Granian's `--backpressure`, by default its `--backlog`,"
                " 1,024) holds fewer streams than there are clients and serves the rest"
                " later. CPU us/event is the server's CPU time during the run per event"
                " delivered.",
                "",
            ]
        lines += [table(sse_header(sse), rows), ""]
    for llm in llms:
        if not (rows := llm_rows(summary, llm, servers)):
            continue
        scenario = SCENARIOS[llm]
        interval_ms = scenario.interval_s * 1000
        lines += [f"### {llm}", ""]
        if prose:
            lines += [
                f"{scenario.connections:,} concurrent clients each POST a"
                f" {len(llm_request(scenario.events)):,}-byte JSON completion request (OpenAI"
                f" style, a {LLM_PROMPT_CHARS:,}-character prompt) to `bench/apps/llm_sse.py`,"
                " a FastAPI app that"
                " validates it with pydantic and streams the answer through starlette's"
                f" `StreamingResponse`: {scenario.events} `data: {{...}}` completion chunks"
                f" {interval_ms:g} ms apart, then `data: [DONE]`. The ideal is"
                f" {scenario.ideal_rps:,.0f} tokens/s. tokens/s counts the token events"
                " loadgen parsed from the decoded bodies (not `[DONE]`, not the chunked"
                " encoding's last chunk) over loadgen's wall time, connection set-up included."
                " TTFT (time to first token) runs from just before the client's connect to the"
                " read that ends its first token event, so connecting, sending the request and"
                " the app's parsing and validation are in it. The inter-token delays are the"
                " gaps between consecutive tokens of a stream as the client reads them; the"
                f" target is a p99 of at most {sse_delay_target_ms(scenario):g} ms. streams"
                " done: streams that ended with status 200 after their `[DONE]`; stream p99:"
                " from the connect to the end of the body. RSS, open at once and KiB/stream are"
                " measured as for the sse scenarios; CPU us/token is the server's CPU time"
                " during the run per token delivered. Every server keeps its defaults, so"
                " Granian holds at most 1,024 streams at once (its `--backpressure`).",
                "",
            ]
        lines += [table(llm_header(llm), rows), ""]
    if idle and (rows := idle_rows(summary, idle, servers)):
        scenario = SCENARIOS[idle]
        lines += [f"### {idle}", ""]
        if prose:
            lines += [
                f"loadgen opens {scenario.connections:,} connections one after another and"
                f" sends nothing on them, then holds them {scenario.hold_s:g} s while it times"
                f" one `GET {scenario.path}` (hello app) on a fresh connection every 100 ms."
                " open in s: until all connects returned. accepted: how many more sockets the"
                f" server held {IDLE_SETTLE_S:g} s later; RSS open is read at that moment, and"
                " KiB/conn is (RSS open - RSS before) / connections. still open: connections"
                " the server had not closed when the hold ended (every server runs with its"
                " default timeouts). loadgen connects one at a time, so a server that stops"
                " accepting stalls it: when the server's socket count has not grown for"
                f" {IDLE_STALL_S:g} s the run is cut short, and the row shows how many"
                " connections it accepted and the KiB per accepted connection.",
                "",
            ]
        lines += [table(IDLE_HEADER, rows), ""]
    header, rows = loadgen_comparison(summary, scenarios, servers, settings["baseline"])
    if rows:
        lines += [f"### Side by side ({settings['baseline']} / other)", ""]
        if prose:
            lines += [
                "Ratios only where they mean something: events/s and tokens/s above 1, times"
                f" (TTFT, delays), RSS, KiB and CPU below 1 favour {settings['baseline']}.",
                "",
            ]
        lines += [table(header, rows), ""]
    return lines


def robustness_sections(data: dict, table: Callable, prose: bool) -> list[str]:
    """The "Cancellation and overload" section: a table for each of the two scenarios."""
    settings = data["settings"]
    scenarios, servers = settings["scenarios"], settings["servers"]
    summary = summarise_loadgen([Run(**r) for r in data["runs"]], attribute="figures")
    cancel, overload = loadgen_scenario("cancel", scenarios), loadgen_scenario(
        "overload", scenarios)
    lines: list[str] = []
    if cancel and (rows := cancel_rows(summary, cancel, servers, prose)):
        lines += [f"### {cancel}", ""]
        if prose:
            requests = settings.get("cancel_requests", CANCEL_REQUESTS)
            lines += [
                f"{requests} clients, {CANCEL_CONCURRENCY} at a time (asyncio sockets in the"
                f" harness), each sends `GET /work?id=N` to `bench/apps/cancel_probe.py`, whose"
                " task then sleeps 60 s without calling `receive()`; the client closes its"
                f" connection {CANCEL_HOLD_S * 1000:g} ms later. The delay is from just before"
                " the client's close to the `CancelledError` in the app's task (both"
                " `time.monotonic()` on the same host); reached app: requests the app saw"
                " start. A server that only reports a disconnect through `receive()` never"
                " cancels such a task: it shows as not cancelled (the sleeps are released"
                f" {CANCEL_SETTLE_S:g} s after the last close, and not counted as cancels).",
                "",
            ]
        lines += [table(CANCEL_HEADER, rows), ""]
    if overload and (rows := overload_rows(summary, overload, servers, prose)):
        scenario = SCENARIOS[overload]
        lines += [f"### {overload}", ""]
        if prose:
            lines += [
                f"wrk with {scenario.connections} connections (`{scenario.lua}` counts the"
                " responses by status) against the 100 ms app (`bench/apps/slow_100ms.py`)."
                f" With {OVERLOAD_LIMIT} requests let in at once, a server answers at most"
                f" {OVERLOAD_LIMIT * 10:,} requests/s with 200, so the load is twice what the"
                " limit allows; the excess should be shed fast (503) rather than queued."
                " 200/s: responses with status 200 per second; shed: share of the responses"
                " that were not 200; the latencies are wrk's, over all responses (shed ones"
                " included). wrk keeps every connection busy, so a connection that gets a fast"
                " 503 asks again at once: the shed share mostly counts how fast the 503s are,"
                " and 200/s is the figure to compare. Granian has no limit on requests in"
                " flight, so it serves all"
                f" {scenario.connections} connections; uvicorn's --limit-concurrency counts"
                " connections as well as requests.",
                "",
            ]
        lines += [table(OVERLOAD_HEADER, rows), ""]
    return ["## Cancellation and overload", "", *lines] if lines else []


def write_markdown(path: Path, data: dict, chart: Path | None) -> None:
    """Write the Markdown report: command, machine, versions, tables, chart."""
    settings = data["settings"]
    env = data["environment"]
    runs = [Run(**r) for r in data["runs"]]
    summary = summarise(runs)
    scenarios, servers = settings["scenarios"], settings["servers"]
    baseline = settings["baseline"]
    others = comparison_columns(baseline, measured_servers(summary, scenarios, servers))
    pin = (
        f"server on CPUs {settings['server_cpus']}, wrk on CPUs {settings['wrk_cpus']}"
        if settings["server_cpus"] else "none (scheduler's choice)"
    )
    loadgen_used = [n for n in scenarios if SCENARIOS[n].kind in LOADGEN_KINDS]
    wrk_used = [n for n in scenarios if SCENARIOS[n].kind in ("wrk", "overload")]
    h2load_used = [n for n in scenarios if SCENARIOS[n].kind == "h2load"]
    timed = wrk_used + h2load_used + [n for n in scenarios if SCENARIOS[n].kind == "ws"]
    generator = f"{env['wrk']}, {settings['threads']} thread(s)" if wrk_used else ""
    if h2load_used:
        generator += ("; " if generator else "") + (
            f"{env.get('h2load', 'h2load')}, {settings['threads']} thread(s), for "
            + ", ".join(h2load_used)
        )
    if loadgen_used:
        generator += ("; " if generator else "") + (
            "`target/release/examples/loadgen` (bench/loadgen.rs) for "
            + ", ".join(loadgen_used)
        )
    wrk_rows = results_rows(summary, scenarios, servers)
    wrk_ratio_rows = ratio_rows(summary, scenarios, baseline, others)
    lines = [
        "# ferricorn benchmark results",
        "",
        "Generated by `bench/run.py` (see"
        f" [bench/README.md]({os.path.relpath(REPO / 'bench' / 'README.md', path.parent)})"
        " for what each scenario"
        " measures and how to run it). Medians across rounds; each server runs one worker on"
        " the same machine, with the same app and the same"
        + (" wrk load" if not loadgen_used else " load (wrk, or loadgen where stated)")
        + ", servers alternating.",
        "",
        "## Command",
        "",
        "```sh",
        settings["command"],
        "```",
        "",
        "## Machine and software",
        "",
        f"- Date: {env['date']}",
        f"- `uname -a`: `{env['uname']}`",
        f"- `nproc`: {env['nproc']} (usable: {env['cpus_usable']}); CPU: {env['cpu_model']};"
        f" memory: {env['memory_gib']} GiB",
        f"- Load average (1, 5, 15 min) when the run started: {env.get('load_average', '?')}",
        f"- Python: {env['python']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        *([f"- ferricorn engine: `{env['ferricorn_engine']}`"]
          if "ferricorn_engine" in env else []),
        f"- Load generator: {generator}",
        *([f"- TLS: {settings['tls']}; {env.get('openssl', 'openssl')} on the client side"
           " (wrk, h2load)"] if settings.get("tls") else []),
        f"- Repository: {env['git']}",
        f"- Rounds: {settings['rounds']}; "
        + (f"measured {settings['duration']} s per run after a {settings['warmup']} s"
           " warm-up; " if timed else "")
        + f"CPU pinning: {pin}",
        "",
    ]
    if wrk_rows:
        lines += [
            "## Results",
            "",
            markdown_table(RESULT_HEADER, wrk_rows),
            "",
            "CPU us/req is the server's user+system CPU time (whole process tree, from /proc)"
            " during the measured run divided by the requests completed: lower is better, and"
            " it is steadier than req/s on a loaded 2-core machine where wrk competes for the"
            " CPU.",
            "",
        ]
        lines += protocol_notes(scenarios, summary)
        lines += wsgi_notes(scenarios, summary)
        ws_names = [n for n in scenarios if SCENARIOS[n].kind == "ws"
                    and any(k[0] == n for k in summary)]
        for name in ws_names:
            scenario = SCENARIOS[name]
            lines += [
                f"{name} is measured with `loadgen ws` rather than wrk: {scenario.connections}"
                f" WebSocket clients on `{scenario.load_path}` (`bench/apps/ws_echo.py`), each"
                f" sending a {WS_MESSAGE_BYTES}-byte text message and waiting for its echo"
                " before the next. Its req/s is echo round trips per second (over loadgen's"
                " wall time, handshakes included), p50/p99 the round-trip times, CPU us/req the"
                " server's CPU time per message, RSS MiB the peak during the run.",
                "",
            ]
    if others and wrk_ratio_rows:
        lines += [
            f"## Ratios ({baseline} / other)",
            "",
            "req/s ratios above 1 and CPU/req ratios below 1 favour " + baseline + ".",
            "",
            markdown_table(ratio_header(baseline, others), wrk_ratio_rows),
            "",
        ]
    lines += app_cost_section(data, markdown_table, prose=True)
    lines += loadgen_sections(data, markdown_table, prose=True)
    lines += robustness_sections(data, markdown_table, prose=True)
    failures = [r for r in runs if not r.ok]
    if failures:
        lines += ["## Failed runs", ""]
        lines += [f"- round {r.round}, {r.scenario}, {r.server}: {r.error}" for r in failures]
        lines.append("")
    # What the tables cannot say (profiles, ceilings, manual runs) is written by hand in
    # bench/ANALYSIS.md, so that a new run does not erase it; it names the run it refers to.
    if ANALYSIS.exists() and path.resolve() == (REPO / "bench" / "RESULTS.md").resolve():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    if chart is not None:
        rel = os.path.relpath(chart, path.parent)
        lines += ["## Chart", "", f"![requests per second]({rel})", ""]
    lines += ["## Scenarios", ""]
    lines += [
        f"- **{name}**: {SCENARIOS[name].summary}"
        + (f"; {SCENARIOS[name].connections} connections"
           if SCENARIOS[name].kind in ("wrk", "ws") else "")
        + (f"; {SCENARIOS[name].connections} connections x {SCENARIOS[name].streams}"
           " streams in flight" if SCENARIOS[name].kind == "h2load" else "")
        for name in scenarios
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def print_tables(data: dict) -> None:
    """The summary tables on stdout."""
    settings = data["settings"]
    summary = summarise([Run(**r) for r in data["runs"]])
    scenarios, servers, baseline = settings["scenarios"], settings["servers"], settings["baseline"]
    rows = results_rows(summary, scenarios, servers)
    if rows:
        print()
        print(text_table(RESULT_HEADER, rows))
    others = comparison_columns(baseline, measured_servers(summary, scenarios, servers))
    rows = ratio_rows(summary, scenarios, baseline, others)
    if others and rows:
        print()
        print(text_table(ratio_header(baseline, others), rows))
    print()
    for line in app_cost_section(data, text_table, prose=False):
        print(line)
    for line in loadgen_sections(data, text_table, prose=False):
        print(line)
    for line in robustness_sections(data, text_table, prose=False):
        print(line)
