"""The reports rendered from fixed results files: medians, ratios and the Markdown text.

fixtures/results.json has 2 rounds of hello and json on ferricorn and uvicorn, with figures
chosen so that the medians are round: hello 30,000/32,000 req/s on ferricorn (median
31,000) against 10,000/12,000 on uvicorn (11,000), CPU 30/34 against 90/94 us per request;
json 25,000/27,000 against 9,000/11,000, CPU 38/42 against 100/104. fixtures/all_kinds.json
has one round of the loadgen, ws, cancel and overload scenarios, with a stalled idle run and
a failed run, for the sections the first file does not reach.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness import ANALYSIS  # noqa: E402
from bench.harness.chart import write_chart  # noqa: E402
from bench.harness.report import print_tables, write_markdown  # noqa: E402
from bench.harness.results import Run, summarise  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def results() -> dict:
    return json.loads((FIXTURES / "results.json").read_text())


@pytest.fixture
def all_kinds() -> dict:
    return json.loads((FIXTURES / "all_kinds.json").read_text())


def markdown(tmp_path, data, chart=None) -> list[str]:
    out = tmp_path / "report.md"
    write_markdown(out, data, chart)
    return out.read_text().splitlines()


def section(lines: list[str], heading: str) -> list[str]:
    """The lines of one section, up to the next heading of the same or a higher level."""
    start = lines.index(heading)
    level = heading.split()[0]
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i].split()[0]) <= len(level)),
               len(lines))
    return lines[start + 1:end]


def test_medians_across_rounds(results):
    summary = summarise([Run(**r) for r in results["runs"]])
    assert set(summary) == {(s, v) for s in ("hello", "json") for v in ("ferricorn", "uvicorn")}
    hello = summary[("hello", "ferricorn")]
    assert (hello.rounds, hello.rps, hello.cpu_us_per_request) == (2, 31000.0, 32.0)
    assert hello.p50_ms == pytest.approx(3.1)
    assert hello.p99_ms == pytest.approx(5.2)
    assert hello.rss_mib == pytest.approx(30.3)
    assert hello.spread == pytest.approx(2000 / 31000)
    assert summary[("hello", "uvicorn")].errors == 2 + 3  # summed, not a median
    assert summary[("json", "uvicorn")].cpu_us_per_request == 102.0


def test_results_table(tmp_path, results):
    table = [line for line in section(markdown(tmp_path, results), "## Results")
             if line.startswith("|")]
    assert table == [
        "| scenario | server | req/s | p50 ms | p99 ms | CPU us/req | RSS MiB | rounds | spread"
        " | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        "| hello | ferricorn | 31,000 | 3.10 | 5.20 | 32.0 | 30 | 2 | 6% |  |",
        "| hello | uvicorn | 11,000 | 9.20 | 14.50 | 92.0 | 25 | 2 | 18% | 5 failed requests |",
        "| json | ferricorn | 26,000 | 3.90 | 6.20 | 40.0 | 31 | 2 | 8% |  |",
        "| json | uvicorn | 10,000 | 10.20 | 16.50 | 102.0 | 26 | 2 | 20% |  |",
    ]


def test_ratio_table(tmp_path, results):
    table = [line for line in section(markdown(tmp_path, results), "## Ratios (ferricorn / other)")
             if line.startswith("|")]
    # 31,000 / 11,000 and 32 / 92; 26,000 / 10,000 and 40 / 102.
    assert table == [
        "| scenario | req/s ferricorn/uvicorn | CPU/req ferricorn/uvicorn |",
        "| --- | ---: | ---: |",
        "| hello | 2.82x | 0.35x |",
        "| json | 2.60x | 0.39x |",
    ]


def test_app_cost_table(tmp_path, results):
    lines = section(markdown(tmp_path, results), "## Server or app: which one is the bottleneck")
    rows = [line for line in lines if line.startswith("| hello") or line.startswith("| json")]
    # hello's app costs 8 us: 25% of ferricorn's 32, 9% of uvicorn's 92.
    assert rows == [
        "| hello | 8.0 | ferricorn | 32.0 | 25% | 24.0 | 4.00x |",
        "| hello | 8.0 | uvicorn | 92.0 | 9% | 84.0 | 11.50x |",
        "| json | 10.0 | ferricorn | 40.0 | 25% | 30.0 | 4.00x |",
        "| json | 10.0 | uvicorn | 102.0 | 10% | 92.0 | 10.20x |",
    ]


def test_report_frame(tmp_path, results):
    lines = markdown(tmp_path, results)
    assert lines[0] == "# ferricorn benchmark results"
    assert results["settings"]["command"] in lines
    headings = [line for line in lines if line.startswith("#")]
    assert headings == [
        "# ferricorn benchmark results", "## Command", "## Machine and software", "## Results",
        "## Ratios (ferricorn / other)", "## Server or app: which one is the bottleneck",
        "## Scenarios",
    ]
    assert ("- Rounds: 2; measured 5.0 s per run after a 1.0 s warm-up; CPU pinning: none"
            " (scheduler's choice)") in lines
    assert lines[-2:] == [
        '- **hello**: GET, 13-byte "Hello, world!" text body; 100 connections',
        "- **json**: GET, 1 KiB pre-serialized JSON document; 100 connections",
    ]
    # bench/ANALYSIS.md goes only into bench/RESULTS.md.
    if ANALYSIS.exists():
        assert ANALYSIS.read_text().splitlines()[0] not in lines


def test_chart_link(tmp_path, results):
    lines = markdown(tmp_path, results, chart=tmp_path / "img" / "bench.png")
    assert section(lines, "## Chart") == ["", "![requests per second](img/bench.png)", ""]


def test_stdout_tables(capsys, results):
    print_tables(results)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["hello", "ferricorn", "31,000", "3.10", "5.20", "32.0", "30", "2", "6%"] in rows
    assert ["json", "uvicorn", "10,000", "10.20", "16.50", "102.0", "26", "2", "20%"] in rows
    assert ["hello", "2.82x", "0.35x"] in rows
    assert ["json", "2.60x", "0.39x"] in rows


def test_every_other_section(tmp_path, all_kinds):
    lines = markdown(tmp_path, all_kinds)
    headings = [line for line in lines if line.startswith("#")]
    assert headings == [
        "# ferricorn benchmark results", "## Command", "## Machine and software", "## Results",
        "## Ratios (ferricorn / other)", "## Streams and idle connections", "### sse-2k",
        "### idle-10k", "### Side by side (ferricorn / other)", "## Cancellation and overload",
        "### cancel", "### overload", "## Failed runs", "## Scenarios",
    ]
    assert "| ws-echo | ferricorn | 20,000 | 5.00 | 9.50 | 45.0 | 33 | 1 | - | req/s: echo round" \
        " trips (messages)/s; CPU per message |" in lines
    idle = section(lines, "### idle-10k")
    assert any(line.startswith("| granian | - | 1,100 |") and "stopped accepting at 1,100"
               " connections for 10 s in 1 of 1 round(s)" in line for line in idle)
    assert "| idle-10k: KiB per idle connection | 2.50 | 5.12 (1,100 accepted) | - | 0.49x | - |" \
        in lines
    assert "| ferricorn | `--cancel-on-disconnect` | 300 | 300 | 300 | 0 of 300 | 0.21 | 0.90" \
        " | 1.30 | 1 |" in lines
    assert "| granian | defaults | 300 | 300 | 0 | 300 of 300 | - | - | - | 1 |" in lines
    assert "| ferricorn | `--limit-concurrency 200 --limit-queue 0` | 1,990 | 12,000 | 83.0% |" \
        " 50,000 | 0 | 3 | 1 | 2.00 | 101.00 | 1 |" in lines
    assert section(lines, "## Failed runs") == [
        "", "- round 1, slow-100ms, granian: server exited with code 1 before serving", "",
    ]


def test_no_chart_without_matplotlib(tmp_path, results, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    assert write_chart(tmp_path / "bench.png", results) is False
    assert not (tmp_path / "bench.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def tls_h2_results(results: dict) -> dict:
    """One round of tls-hello and h2-hello on the four Python servers (uvicorn has no HTTP/2,
    so no h2-hello run), with round figures: ferricorn twice Granian's req/s at half its CPU."""
    figures = {
        ("tls-hello", "HTTP/1.1, TLSv1.3 TLS_AES_256_GCM_SHA384"): {
            "ferricorn": (20_000, 40.0), "granian": (10_000, 80.0), "uvicorn": (5_000, 160.0),
            "hypercorn": (2_500, 320.0)},
        ("h2-hello", "h2c"): {
            "ferricorn": (40_000, 20.0), "granian": (20_000, 40.0),
            "hypercorn": (1_000, 800.0)},
    }
    runs = [
        {"scenario": name, "server": server, "round": 1, "ok": True, "rps": float(rps),
         "requests": rps * 5, "latency_ms": {"50": 2.0, "75": 3.0, "90": 4.0, "99": 8.0},
         "cpu_us_per_request": cpu, "cpu_utilisation": 0.9, "rss_mib": 40.0, "errors": 0,
         "protocol": protocol}
        for (name, protocol), by_server in figures.items()
        for server, (rps, cpu) in by_server.items()
    ]
    settings = dict(results["settings"], scenarios=["tls-hello", "h2-hello"], rounds=1,
                    servers=["ferricorn", "granian", "uvicorn", "hypercorn"],
                    tls="self-signed ECDSA P-256 certificate for localhost and 127.0.0.1,"
                    " made by openssl at the start of the run")
    environment = dict(results["environment"], h2load="h2load nghttp2/1.52.0",
                       openssl="OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19)")
    return {"settings": settings, "environment": environment, "runs": runs, "app_costs": {}}


def test_tls_and_h2_scenarios(tmp_path, results):
    lines = markdown(tmp_path, tls_h2_results(results))
    rows = [line for line in section(lines, "## Results") if line.startswith("| ")]
    assert rows[2:] == [
        "| tls-hello | ferricorn | 20,000 | 2.00 | 8.00 | 40.0 | 40 | 1 | - | HTTP/1.1, TLSv1.3"
        " TLS_AES_256_GCM_SHA384 |",
        "| tls-hello | granian | 10,000 | 2.00 | 8.00 | 80.0 | 40 | 1 | - | HTTP/1.1, TLSv1.3"
        " TLS_AES_256_GCM_SHA384 |",
        "| tls-hello | uvicorn | 5,000 | 2.00 | 8.00 | 160.0 | 40 | 1 | - | HTTP/1.1, TLSv1.3"
        " TLS_AES_256_GCM_SHA384 |",
        "| tls-hello | hypercorn | 2,500 | 2.00 | 8.00 | 320.0 | 40 | 1 | - | HTTP/1.1, TLSv1.3"
        " TLS_AES_256_GCM_SHA384 |",
        "| h2-hello | ferricorn | 40,000 | 2.00 | 8.00 | 20.0 | 40 | 1 | - | h2c |",
        "| h2-hello | granian | 20,000 | 2.00 | 8.00 | 40.0 | 40 | 1 | - | h2c |",
        "| h2-hello | hypercorn | 1,000 | 2.00 | 8.00 | 800.0 | 40 | 1 | - | h2c |",
    ]
    prose = " ".join(section(lines, "## Results"))
    assert "tls-hello is served over TLS with a self-signed ECDSA P-256 certificate" in prose
    assert "h2-hello is measured with h2load rather than wrk" in prose
    ratios = [line for line in section(lines, "## Ratios (ferricorn / other)")
              if line.startswith("| ")]
    assert ratios[0] == (
        "| scenario | req/s ferricorn/granian | req/s ferricorn/uvicorn | req/s"
        " ferricorn/hypercorn | CPU/req ferricorn/granian | CPU/req ferricorn/uvicorn | CPU/req"
        " ferricorn/hypercorn |")
    assert ratios[2:] == [
        "| tls-hello | 2.00x | 4.00x | 8.00x | 0.50x | 0.25x | 0.12x |",
        "| h2-hello | 2.00x | - | 40.00x | 0.50x | - | 0.03x |",  # no uvicorn over HTTP/2
    ]
    assert ("- Load generator: wrk 4.1.0 [epoll], 1 thread(s); h2load nghttp2/1.52.0, 1"
            " thread(s), for h2-hello") in lines
    assert ("- TLS: self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, made by"
            " openssl at the start of the run; OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL"
            " 3.0.19) on the client side (wrk, h2load)") in lines
    assert lines[-1] == ('- **h2-hello**: GET over HTTP/2 (h2c, prior knowledge) with h2load,'
                         ' 13-byte "Hello, world!" body; 10 connections x 100 streams in flight')
