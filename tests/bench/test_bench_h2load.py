"""h2load's summary and per-request log, parsed from samples, and its command line.

The samples in fixtures/ are what h2load 1.52 (Debian 12's nghttp2-client) printed in timed
mode (``-D``): h2load_h2c.txt against Granian --http 2 on the stream-10 app, h2load_tls.txt
over TLS with a --warm-up-time against Hypercorn (TLS lines, and the "SSL connection is
closed" lines it prints at the end, cut to four), h2load_refused.txt with nothing listening.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness.h2load import (  # noqa: E402
    h2load_command,
    latency_percentiles,
    parse_h2load,
    parse_h2load_log,
)
from bench.harness.scenarios import H2_CONNECTIONS, H2_STREAMS, SCENARIOS  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def sample(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_h2c_run():
    result = parse_h2load(sample("h2load_h2c.txt"))
    # The measured duration's counts, not the "started" ones nor the status line's (which
    # also counts the warm-up's responses).
    assert (result.requests, result.succeeded, result.failed) == (14515, 14515, 0)
    assert (result.errored, result.timeouts, result.errors) == (0, 0, 0)
    assert result.rps == pytest.approx(7257.50)
    assert result.seconds == pytest.approx(2.01)
    assert result.statuses == {"2xx": 15100, "3xx": 0, "4xx": 0, "5xx": 0}
    assert result.request_ms == pytest.approx({"min": 47.92, "max": 291.34, "mean": 132.75})
    assert (result.protocol, result.tls_version, result.cipher) == ("h2c", None, None)
    assert result.describe_protocol() == "h2c"


def test_tls_run_with_warm_up_and_noise_at_the_end():
    result = parse_h2load(sample("h2load_tls.txt"))
    assert (result.requests, result.succeeded, result.failed) == (2500, 2500, 0)
    assert result.rps == pytest.approx(1250.0)
    # Latencies of a second or more are in s; "finished in" includes the warm-up.
    assert result.request_ms["min"] == pytest.approx(756.69)
    assert result.seconds == pytest.approx(3.0)
    assert (result.protocol, result.tls_version, result.cipher) == (
        "h2", "TLSv1.3", "TLS_AES_128_GCM_SHA256")
    assert result.describe_protocol() == "h2, TLSv1.3 TLS_AES_128_GCM_SHA256"


def test_nothing_listening_parses_as_no_request():
    result = parse_h2load(sample("h2load_refused.txt"))
    assert (result.requests, result.rps, result.protocol) == (0, 0.0, None)
    assert result.request_ms == {"min": 0.0, "max": 0.0, "mean": 0.0}


def test_failures_and_units():
    output = sample("h2load_h2c.txt").replace(
        "14515 succeeded, 0 failed, 0 errored, 0 timeout",
        "14000 succeeded, 515 failed, 15 errored, 3 timeout",
    ).replace("request:    47.92ms    291.34ms", "request:      950us       1.50s")
    result = parse_h2load(output)
    assert (result.succeeded, result.failed, result.errored, result.timeouts) == (
        14000, 515, 15, 3)
    assert result.errors == 515  # "failed" already counts the errored and timed-out streams
    assert result.request_ms["min"] == pytest.approx(0.95)
    assert result.request_ms["max"] == pytest.approx(1500.0)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "starting benchmark...\n",
        "\n".join(line for line in sample("h2load_h2c.txt").splitlines()
                  if not line.startswith("requests:")),
        sample("h2load_h2c.txt").replace("finished in", "done in"),
    ],
    ids=["empty", "no-summary", "no-requests-line", "no-finished-line"],
)
def test_anything_else_is_rejected(output):
    with pytest.raises(ValueError, match="unrecognised h2load output"):
        parse_h2load(output)


def test_log_file_and_percentiles():
    # As h2load --log-file writes it: start (us since the epoch), status, us to the end.
    lines = [f"{1796299537122767 + i}\t200\t{(i + 1) * 1000}" for i in range(200)]
    times = parse_h2load_log("\n".join(lines) + "\n")
    assert len(times) == 200
    assert times[:2] == [1.0, 2.0]
    # Nearest rank over 1..200 ms: the 100th, 150th, 180th and 198th values.
    assert latency_percentiles(times) == {"50": 100.0, "75": 150.0, "90": 180.0, "99": 198.0}
    assert latency_percentiles([7.5]) == {"50": 7.5, "75": 7.5, "90": 7.5, "99": 7.5}
    # More columns may come in later versions; blank lines are skipped.
    assert parse_h2load_log("1\t200\t2500\textra\n\n") == [2.5]


def test_bad_log_lines_and_no_times():
    with pytest.raises(ValueError, match="line 2"):
        parse_h2load_log("1\t200\t2500\n1\t200\n")
    with pytest.raises(ValueError, match="no request times"):
        latency_percentiles([])


def test_command_line(tmp_path):
    log = tmp_path / "r1.tsv"
    command = h2load_command(SCENARIOS["h2-hello"], 40123, duration=5.0, threads=1,
                             log_file=log)
    assert command == [
        "h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", "-D5", f"--log-file={log}",
        "http://127.0.0.1:40123/",
    ]
    # The warm-up: no log; threads never exceed connections; whole seconds, at least 1.
    warm = h2load_command(SCENARIOS["h2-stream"], 1, duration=0.4, threads=64)
    assert warm[1:5] == [f"-t{H2_CONNECTIONS}", f"-c{H2_CONNECTIONS}", "-m100", "-D1"]
    assert not any(part.startswith("--log-file") for part in warm)
