"""bench/run.py end to end on a saved results file (``--from-json``), and its command line.

Runs the real entry point in a subprocess, from another directory, with
FERRICORN_BENCH_NO_VENV set so that it stays on this interpreter even where .venv-bench
exists. Nothing is measured: no server, no wrk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness.cli import parse_args  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OPTIONS = [
    "--scenarios", "--servers", "--rounds", "--duration", "--warmup", "--threads",
    "--no-app-cost", "--cancel-requests", "--baseline", "--ferricorn-args", "--pin",
    "--server-cpus", "--wrk-cpus", "--pause", "--out", "--chart", "--json", "--from-json",
]


def run_py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FERRICORN_BENCH_NO_VENV="1", COLUMNS="100")
    return subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_from_json_writes_the_report(tmp_path):
    out = tmp_path / "x.md"
    done = run_py("--from-json", str(FIXTURES / "results.json"), "--out", str(out),
                  "--chart", "", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"wrote {out}"
    text = out.read_text()
    assert "| hello | ferricorn | 31,000 | 3.10 | 5.20 | 32.0 | 30 | 2 | 6% |  |" in text
    assert "| hello | 2.82x | 0.35x |" in text
    assert "## Chart" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["x.md"]  # no chart, no results.json
    assert ["hello", "2.82x", "0.35x"] in [line.split() for line in done.stdout.splitlines()]


def test_from_json_with_a_failed_run_exits_1(tmp_path):
    out = tmp_path / "x.md"
    done = run_py("--from-json", str(FIXTURES / "all_kinds.json"), "--out", str(out),
                  "--chart", "", cwd=tmp_path)
    assert done.returncode == 1
    assert "1 run(s) failed: see" in done.stderr
    assert "## Cancellation and overload" in out.read_text()


def test_help_lists_every_option(tmp_path):
    done = run_py("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: run.py [-h]")
    assert ("Benchmark orchestrator: ferricorn against uvicorn, Granian, Hypercorn and a"
            " pure-Rust hyper\nceiling.") in done.stdout
    for option in OPTIONS:
        assert f"  {option}" in done.stdout, option


def test_parse_args():
    args = parse_args(["--scenarios", "json,hello,json", "--chart", "", "--ferricorn-args",
                       "--limit-concurrency 5", "--server-cpus", "0-1,3"])
    assert args.scenarios == ["json", "hello"]
    assert args.chart is None
    assert args.ferricorn_args == ["--limit-concurrency", "5"]
    assert args.server_cpus == {0, 1, 3}
    assert args.json == REPO / "bench" / "out" / "results.json"
    assert args.out == REPO / "bench" / "RESULTS.md"


@pytest.mark.parametrize("argv", [["--scenarios", "nope"], ["--rounds", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2


def test_app_cost_measured_once_per_app(monkeypatch):
    from bench.harness import campaign

    calls = []

    def fake_run(command, **_kwargs):
        calls.append(command[2])
        return subprocess.CompletedProcess(command, 0, stdout='{"us_per_request": 6.5}\n',
                                           stderr="")

    monkeypatch.setattr(campaign.subprocess, "run", fake_run)
    costs = campaign.measure_app_costs(["hello", "tls-hello", "h2-hello", "h2-stream",
                                        "slow-100ms"])
    # hello, tls-hello and h2-hello serve the same app and request; slow-100ms sleeps.
    assert calls == ["bench.apps.hello:app", "bench.apps.stream_10:app"]
    assert costs == {"hello": 6.5, "tls-hello": 6.5, "h2-hello": 6.5, "h2-stream": 6.5}
