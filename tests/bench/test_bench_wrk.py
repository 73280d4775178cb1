"""wrk's text report (``wrk --latency``) and the overload status line, parsed from samples.

The samples in fixtures/ follow what wrk 4 prints: latencies in us, ms or s, the socket
error line and the non-2xx line only when there are some, and the "statuses:" line that
bench/lua/count_status.lua adds at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness.scenarios import SCENARIOS  # noqa: E402
from bench.harness.wrk import parse_statuses, parse_wrk, wrk_command  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def sample(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_plain_run_with_us_and_ms_latencies():
    result = parse_wrk(sample("wrk_hello.txt"))
    assert result.requests == 157839
    assert result.seconds == pytest.approx(5.0)
    assert result.rps == pytest.approx(31553.79)
    assert result.latency_ms == pytest.approx({"50": 0.812, "75": 3.25, "90": 3.52, "99": 4.61})
    assert (result.connect_errors, result.read_errors, result.write_errors) == (0, 0, 0)
    assert (result.timeouts, result.non_2xx, result.errors) == (0, 0, 0)


def test_socket_errors_timeouts_and_non_2xx_count_as_errors():
    result = parse_wrk(sample("wrk_upload_errors.txt"))
    assert result.requests == 1540
    assert result.seconds == pytest.approx(5.01)
    assert result.rps == pytest.approx(307.39)
    # Latencies in seconds become milliseconds.
    assert result.latency_ms == pytest.approx(
        {"50": 150.2, "75": 402.75, "90": 1100.0, "99": 3050.0}
    )
    assert result.connect_errors == 0
    assert result.read_errors == 4
    assert result.write_errors == 2
    assert result.timeouts == 37
    assert result.non_2xx == 11
    assert result.errors == 4 + 2 + 37 + 11


def test_overload_run_and_its_status_counts():
    output = sample("wrk_overload.txt")
    result = parse_wrk(output)
    assert result.requests == 60123
    assert result.non_2xx == 50100
    assert result.timeouts == 0
    assert result.latency_ms["50"] == pytest.approx(2.04)
    assert result.latency_ms["99"] == pytest.approx(104.37)
    assert parse_statuses(output) == {200: 10023, 503: 50100}


def test_no_status_line_without_the_lua_script():
    assert parse_statuses(sample("wrk_hello.txt")) is None


def test_duration_in_minutes():
    output = sample("wrk_hello.txt").replace("requests in 5.00s", "requests in 1.00m")
    assert parse_wrk(output).seconds == pytest.approx(60.0)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "unable to connect to 127.0.0.1:40123 Connection refused\n",
        # wrk without --latency: no distribution.
        "\n".join(line for line in sample("wrk_hello.txt").splitlines() if "%  " not in line),
        sample("wrk_hello.txt").replace("Requests/sec:", "Requests/s:"),
    ],
    ids=["empty", "refused", "no-distribution", "no-rate"],
)
def test_anything_else_is_rejected(output):
    with pytest.raises(ValueError, match="unrecognised wrk output"):
        parse_wrk(output)


def test_command_line():
    command = wrk_command(SCENARIOS["echo-4k"], 40123, duration=5.0, threads=2)
    assert command[:6] == ["wrk", "-t2", "-c100", "-d5s", "--timeout=5s", "--latency"]
    assert command[6] == "-s" and command[7].endswith("bench/lua/post_4k.lua")
    assert command[-1] == "http://127.0.0.1:40123/"
    # Threads never exceed connections; durations round to whole seconds, at least 1.
    hello = wrk_command(SCENARIOS["hello"], 1, duration=0.4, threads=500)
    assert hello[1:4] == ["-t100", "-c100", "-d1s"]
