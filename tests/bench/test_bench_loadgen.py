"""loadgen's result line (bench/loadgen.rs prints one JSON object on stdout), parsed from
samples, and ``finish_loadgen`` on a stand-in process that prints such a line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness.loadgen import (  # noqa: E402
    SampledLoad,
    finish_loadgen,
    parse_loadgen,
    start_loadgen,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def sample(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_sse_line():
    result = parse_loadgen(sample("loadgen_sse.txt"), "sse")
    assert result == {
        "mode": "sse", "clients": 1000, "completed": 1000, "events": 201000, "seconds": 2.215,
        "events_per_s": 90744.9, "delay_p50_ms": 10.08, "delay_p99_ms": 14.93,
        "delay_max_ms": 61.2,
    }


def test_idle_line():
    result = parse_loadgen(sample("loadgen_idle.txt"), "idle")
    assert result["connections"] == 10000
    assert result["still_open"] == 10000
    assert result["requests"] == 29
    assert result["latency_p50_ms"] == pytest.approx(0.41)
    assert result["latency_max_ms"] == pytest.approx(2.87)


def test_ws_line():
    result = parse_loadgen(sample("loadgen_ws.txt"), "ws")
    assert result["messages"] == 104217
    assert result["messages_per_s"] == pytest.approx(20793.5)
    assert (result["latency_p50_ms"], result["latency_p99_ms"]) == (4.612, 9.873)
    assert result["failed"] == 0


def test_only_the_last_line_counts():
    out = "thread 'main' warning: something\n" + sample("loadgen_ws.txt") + "\n\n"
    assert parse_loadgen(out, "ws")["clients"] == 100


@pytest.mark.parametrize(
    ("out", "mode"),
    [
        (sample("loadgen_sse.txt"), "idle"),  # another mode's line
        ("", "sse"),
        ("usage: loadgen sse|idle|ws --port P\n", "sse"),
        ('{"clients": 3}\n', "ws"),  # no mode
    ],
    ids=["wrong-mode", "empty", "not-json", "no-mode"],
)
def test_anything_else_is_rejected(out, mode):
    with pytest.raises(ValueError, match="unrecognised loadgen output"):
        parse_loadgen(out, mode)


class Server:
    """Stands in for the server's Popen: only ``poll`` and ``returncode`` are read."""

    def __init__(self, returncode: int | None = None):
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


def fake_loadgen(stdout: str, stderr: str = "", code: int = 0) -> list[str]:
    script = (f"import sys; sys.stdout.write({stdout!r}); sys.stderr.write({stderr!r});"
              f" sys.exit({code})")
    return [sys.executable, "-c", script]


def test_finish_logs_and_parses(tmp_path):
    line = sample("loadgen_idle.txt")
    loadgen = start_loadgen(fake_loadgen(line, "open 10000\n"), argparse.Namespace(wrk_cpus=None))
    result = finish_loadgen(loadgen, Server(), "idle", tmp_path, "r1-idle-10k-ferricorn")
    assert result["connections"] == 10000
    assert (tmp_path / "r1-idle-10k-ferricorn.loadgen.txt").read_text() == line + "open 10000\n"


def test_finish_reports_a_failed_loadgen(tmp_path):
    loadgen = start_loadgen(fake_loadgen("", "connection refused\n", code=3),
                            argparse.Namespace(wrk_cpus=None))
    with pytest.raises(ValueError, match="loadgen exited with 3: connection refused"):
        finish_loadgen(loadgen, Server(), "sse", tmp_path, "stem")


def test_finish_reports_a_dead_server(tmp_path):
    loadgen = start_loadgen(fake_loadgen(sample("loadgen_sse.txt")),
                            argparse.Namespace(wrk_cpus=None))
    with pytest.raises(ValueError, match=r"server died during the run \(exit code -9\)"):
        finish_loadgen(loadgen, Server(returncode=-9), "sse", tmp_path, "stem")


def test_open_peak_is_capped_by_the_clients():
    load = SampledLoad(result={}, rss_before=30.0, rss_peak=40.0, fds_before=12, fds_peak=1036,
                       cpu=1.0, loadgen_cpu=0.5)
    assert load.open_peak(2000) == 1024
    assert load.open_peak(1000) == 1000
    assert SampledLoad({}, 30.0, 30.0, 12, 5, 0.0, 0.0).open_peak(10) == 0
