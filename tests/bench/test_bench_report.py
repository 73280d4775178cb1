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
