"""The WSGI scenarios, with no server process: their definitions, which server runs them and
with what command line, the apps themselves (called directly, under wsgiref's PEP 3333
validator), the app-cost measurement in WSGI mode, and the ratio columns of a report with
WSGI results (ferricorn/granian, ferricorn/gunicorn).
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.apps import wsgi_apps  # noqa: E402
from bench.harness import campaign  # noqa: E402
from bench.harness.report import print_tables, write_markdown  # noqa: E402
from bench.harness.scenarios import (  # noqa: E402
    BODY_1M,
    SCENARIOS,
    WSGI_SLOW_CONNECTIONS,
    WSGI_SLOW_DELAY_S,
    WSGI_THREADS,
)
from bench.harness.servers import (  # noqa: E402
    ALL_SERVERS,
    WSGI_SERVERS,
    missing_requirements,
    server_command,
    serves,
)
from bench.harness.wrk import wrk_command  # noqa: E402

WSGI = ["wsgi-hello", "wsgi-10k", "wsgi-echo-1m", "wsgi-slow-100ms"]
T = str(WSGI_THREADS)


def test_the_wsgi_scenarios():
    assert [n for n in SCENARIOS if SCENARIOS[n].interface == "wsgi"] == WSGI
    apps = {n: SCENARIOS[n].app for n in WSGI}
    assert apps == {
        "wsgi-hello": "bench.apps.wsgi_apps:hello",
        "wsgi-10k": "bench.apps.wsgi_apps:body10k",
        "wsgi-echo-1m": "bench.apps.wsgi_apps:echo",
        "wsgi-slow-100ms": "bench.apps.wsgi_apps:slow",
    }
    for name in WSGI:
        scenario = SCENARIOS[name]
        assert scenario.kind == "wrk" and not scenario.tls and not scenario.http2
        assert scenario.wsgi_threads == WSGI_THREADS
        assert scenario.ceiling is None
        assert scenario.summary.startswith(f"WSGI, {WSGI_THREADS} threads: ")
    # Every ASGI scenario keeps its interface and has no threads of this kind.
    assert all(s.wsgi_threads == 0 for s in SCENARIOS.values() if s.interface == "asgi")
    assert {s.interface for s in SCENARIOS.values()} == {"asgi", "wsgi"}


def test_the_echo_scenario_posts_1_mib_like_upload_1m():
    echo, upload = SCENARIOS["wsgi-echo-1m"], SCENARIOS["upload-1m"]
    assert (echo.method, echo.lua, echo.content_type) == (
        "POST", "post_1m.lua", "application/octet-stream")
    assert echo.body == upload.body == BODY_1M and len(BODY_1M) == 1024 * 1024
    assert echo.wrk_timeout_s == 10
    # The Lua script sends the same bytes as the harness's copy.
    lua = (REPO / "bench" / "lua" / "post_1m.lua").read_text()
    piece, times = re.search(r'string\.rep\("(\w+)", (\d+)\)', lua).groups()
    assert piece.encode() * int(times) == BODY_1M
    assert echo.check(200, BODY_1M) is None
    assert echo.check(200, BODY_1M[:-1]) is not None
    command = wrk_command(echo, 40123, duration=5.0, threads=1)
    assert command[:6] == ["wrk", "-t1", "-c100", "-d5s", "--timeout=10s", "--latency"]
    assert command[6] == "-s" and command[7].endswith("bench/lua/post_1m.lua")


def test_the_slow_scenario_queues_64_connections_on_the_threads():
    slow = SCENARIOS["wsgi-slow-100ms"]
    assert slow.connections == WSGI_SLOW_CONNECTIONS == 64
    assert slow.ideal_rps == pytest.approx(min(64, WSGI_THREADS) / WSGI_SLOW_DELAY_S)
    assert wrk_command(slow, 1, duration=5.0, threads=1)[2] == "-c64"
    # The sleeping app has no app-cost figure, the CPU-bound ones have.
    assert campaign.app_cost_scenarios(WSGI) == ["wsgi-hello", "wsgi-10k", "wsgi-echo-1m"]


def test_the_checks_want_the_apps_bodies():
    assert SCENARIOS["wsgi-hello"].check(200, b"Hello, world!") is None
    assert SCENARIOS["wsgi-10k"].check(200, wsgi_apps.BODY_10K) is None
    assert len(wsgi_apps.BODY_10K) == 10 * 1024
    assert SCENARIOS["wsgi-slow-100ms"].check(200, b"Hello, world!") is None
    assert SCENARIOS["wsgi-10k"].check(500, wsgi_apps.BODY_10K) == "status 500, expected 200"


def test_which_server_runs_the_wsgi_scenarios():
    assert WSGI_SERVERS == ("ferricorn", "granian", "gunicorn")
    assert "gunicorn" in ALL_SERVERS
    for name in WSGI:
        assert [s for s in ALL_SERVERS if serves(s, SCENARIOS[name])] == [
            "ferricorn", "granian", "gunicorn"]
        for server in ("uvicorn", "hypercorn", "hyper"):
            assert server_command(server, SCENARIOS[name], 1, []) is None
    # gunicorn runs no ASGI scenario.
    assert not any(serves("gunicorn", s) for s in SCENARIOS.values() if s.interface == "asgi")
    with pytest.raises(ValueError, match="unknown server"):
        serves("waitress", SCENARIOS["wsgi-hello"])


def test_ferricorn_command_line():
    command = server_command("ferricorn", SCENARIOS["wsgi-hello"], 8080, ["--x"])
    assert command == [
        sys.executable, "-m", "ferricorn", "bench.apps.wsgi_apps:hello", "--port", "8080",
        "--no-access-log", "--log-level", "warning", "--interface", "wsgi", "--wsgi-threads",
        T, "--x"]
    # The ASGI scenarios get no interface flag.
    hello = server_command("ferricorn", SCENARIOS["hello"], 8080, [])
    assert "--interface" not in hello and "--wsgi-threads" not in hello


def test_granian_command_line():
    command = server_command("granian", SCENARIOS["wsgi-echo-1m"], 8080, [])
    assert command == [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--port", "8080", "--workers",
        "1", "--blocking-threads", T, "--http", "1", "--no-access-log", "--log-level",
        "warning", "bench.apps.wsgi_apps:echo"]
    # ASGI: the same as before, with uvloop and no blocking threads.
    hello = server_command("granian", SCENARIOS["hello"], 8080, [])
    assert hello[hello.index("--interface") + 1] == "asgi"
    assert hello[hello.index("--loop") + 1] == "uvloop"
    assert "--blocking-threads" not in hello


def test_gunicorn_command_line():
    command = server_command("gunicorn", SCENARIOS["wsgi-slow-100ms"], 8080, ["--ignored"])
    assert command == [
        sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:8080", "--workers", "1",
        "--worker-class", "gthread", "--threads", T, "--log-level", "warning",
        "--no-control-socket", "bench.apps.wsgi_apps:slow"]


def test_every_server_gets_the_same_thread_count():
    for name in WSGI:
        counts = set()
        for server, flag in (("ferricorn", "--wsgi-threads"), ("granian", "--blocking-threads"),
                             ("gunicorn", "--threads")):
            command = server_command(server, SCENARIOS[name], 1, [])
            counts.add(command[command.index(flag) + 1])
        assert counts == {T}


def test_requirements_of_the_wsgi_scenarios(monkeypatch):
    real = importlib.util.find_spec
    missing = {"gunicorn", "uvloop"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name in missing else real(name))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    problems = missing_requirements(["ferricorn", "granian", "gunicorn"], ["wsgi-hello"])
    assert f"gunicorn is not installed in {sys.prefix}" in problems
    # No event loop runs a WSGI app: uvloop is needed only for Granian's ASGI runs.
    assert not any(p.startswith("uvloop") for p in problems)
    assert f"uvloop is not installed in {sys.prefix}" in missing_requirements(
        ["granian"], ["wsgi-hello", "hello"])
    # gunicorn is only looked for when a WSGI scenario is selected.
    assert not any("gunicorn" in p for p in missing_requirements(["gunicorn"], ["hello"]))


def call(app, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call a WSGI app under wsgiref's PEP 3333 validator; return status, headers, body."""
    environ.setdefault("QUERY_STRING", "")  # else the validator warns
    setup_testing_defaults(environ)
    seen: dict[str, object] = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return lambda _data: None

    result = validator(app)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize(("app", "body", "content_type"), [
    (wsgi_apps.hello, b"Hello, world!", "text/plain"),
    (wsgi_apps.body10k, wsgi_apps.BODY_10K, "application/octet-stream"),
])
def test_the_get_apps(app, body, content_type):
    status, headers, got = call(app, {})
    assert (status, got) == ("200 OK", body)
    assert headers == [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    # Each response gets its own list, which PEP 3333 lets the server change.
    headers.append(("X-Server", "changed"))
    assert call(app, {})[1] == [("Content-Type", content_type),
                                ("Content-Length", str(len(body)))]


def test_the_slow_app_sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(wsgi_apps.time, "sleep", slept.append)
    assert call(wsgi_apps.slow, {})[::2] == ("200 OK", b"Hello, world!")
    assert slept == [WSGI_SLOW_DELAY_S] == [0.1]  # the scenario's ideal assumes it


class CountingInput(io.BytesIO):
    """A wsgi.input that records the size of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, size=-1):
        self.sizes.append(size)
        return super().read(size)


def test_echo_reads_the_body_in_64k_pieces():
    stream = CountingInput(BODY_1M + b"next request")
    status, headers, body = call(wsgi_apps.echo, {
        "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(BODY_1M)),
        "CONTENT_TYPE": "application/octet-stream", "wsgi.input": stream})
    assert (status, body) == ("200 OK", BODY_1M)
    assert ("Content-Length", str(len(BODY_1M))) in headers
    # 16 reads of 64 KiB and never past CONTENT_LENGTH (the validator wraps the stream, so
    # look at what reached it).
    assert stream.sizes == [65536] * 16


def test_echo_stops_at_content_length_on_a_short_body():
    stream = CountingInput(b"x" * 100_000)
    body = call(wsgi_apps.echo, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "70000",
                                 "wsgi.input": stream})[2]
    assert body == b"x" * 70000 and stream.sizes == [65536, 70000 - 65536]


def test_echo_without_content_length():
    # A chunked request: read to the end only where the server says it is safe.
    data = b"y" * 70000
    body = wsgi_apps.read_input({"wsgi.input": io.BytesIO(data), "wsgi.input_terminated": True})
    assert body == data
    assert wsgi_apps.read_input({"wsgi.input": io.BytesIO(data)}) == b""
    assert call(wsgi_apps.echo, {"REQUEST_METHOD": "POST"})[2] == b""


def test_app_cost_calls_the_wsgi_apps_as_wsgi(monkeypatch):
    commands = []

    def fake_run(command, **_kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, stdout='{"us_per_request": 1.5}\n',
                                           stderr="")

    monkeypatch.setattr(campaign.subprocess, "run", fake_run)
    costs = campaign.measure_app_costs(["hello", *WSGI])
    assert [c[2] for c in commands] == [
        "bench.apps.hello:app", "bench.apps.wsgi_apps:hello", "bench.apps.wsgi_apps:body10k",
        "bench.apps.wsgi_apps:echo"]
    assert "--interface" not in commands[0]
    assert all(c[c.index("--interface") + 1] == "wsgi" for c in commands[1:])
    assert costs == {"hello": 1.5, "wsgi-hello": 1.5, "wsgi-10k": 1.5, "wsgi-echo-1m": 1.5}


def test_appcost_runs_a_wsgi_app():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "appcost.py"), "bench.apps.wsgi_apps:hello",
         "--interface", "wsgi", "--seconds", "0.05"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["interface"] == "wsgi"
    assert result["calls"] >= 1000 and result["us_per_request"] > 0


def wsgi_results(scenarios: list[str], servers: list[str]) -> dict:
    """One round on the given servers with round figures: ferricorn at 12,000 req/s and
    20 us/req, Granian at 6,000 and 40, gunicorn at 3,000 and 80, uvicorn (hello only) at
    4,000 and 60; wsgi-slow-100ms at 78, 76 and 72 req/s."""
    figures = {"ferricorn": (12_000, 20.0), "granian": (6_000, 40.0),
               "gunicorn": (3_000, 80.0), "uvicorn": (4_000, 60.0)}
    slow = {"ferricorn": 78.0, "granian": 76.0, "gunicorn": 72.0}
    runs = []
    for name in scenarios:
        for server in servers:
            if not serves(server, SCENARIOS[name]):
                continue
            rps, cpu = figures[server]
            if name == "wsgi-slow-100ms":
                rps = slow[server]
            runs.append({
                "scenario": name, "server": server, "round": 1, "ok": True, "rps": float(rps),
                "requests": int(rps * 5), "latency_ms": {"50": 2.0, "75": 3.0, "90": 4.0,
                                                         "99": 8.0},
                "cpu_us_per_request": cpu, "cpu_utilisation": 0.9, "rss_mib": 40.0,
                "errors": 0, "protocol": "HTTP/1.1"})
    fixture = json.loads((Path(__file__).parent / "fixtures" / "results.json").read_text())
    settings = dict(fixture["settings"], scenarios=scenarios, servers=servers, rounds=1)
    return {"settings": settings, "environment": fixture["environment"], "runs": runs,
            "app_costs": {}}


def ratio_table(tmp_path, data: dict) -> list[str]:
    out = tmp_path / "report.md"
    write_markdown(out, data, None)
    lines = out.read_text().splitlines()
    start = lines.index("## Ratios (ferricorn / other)")
    return [line for line in lines[start:] if line.startswith("| ")][:20]


def test_ratios_to_granian_and_gunicorn(tmp_path, capsys):
    # The default server list: uvicorn, hypercorn and hyper run no WSGI scenario, so they get
    # no column.
    data = wsgi_results(WSGI, list(ALL_SERVERS))
    table = ratio_table(tmp_path, data)
    assert table[0] == ("| scenario | req/s ferricorn/granian | req/s ferricorn/gunicorn"
                        " | CPU/req ferricorn/granian | CPU/req ferricorn/gunicorn |")
    assert table[2:6] == [
        "| wsgi-hello | 2.00x | 4.00x | 0.50x | 0.25x |",
        "| wsgi-10k | 2.00x | 4.00x | 0.50x | 0.25x |",
        "| wsgi-echo-1m | 2.00x | 4.00x | 0.50x | 0.25x |",
        "| wsgi-slow-100ms | 1.03x | 1.08x | 0.50x | 0.25x |",
    ]
    print_tables(data)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["wsgi-hello", "2.00x", "4.00x", "0.50x", "0.25x"] in rows
    assert ["wsgi-slow-100ms", "ferricorn", "78", "2.00", "8.00", "20.0", "40", "1", "-",
            "98%", "of", "ideal", "80"] in rows


def test_ratios_of_a_mixed_run(tmp_path):
    data = wsgi_results(["hello", "wsgi-hello"], ["ferricorn", "granian", "uvicorn",
                                                   "gunicorn"])
    table = ratio_table(tmp_path, data)
    assert table[0] == (
        "| scenario | req/s ferricorn/granian | req/s ferricorn/uvicorn | req/s"
        " ferricorn/gunicorn | CPU/req ferricorn/granian | CPU/req ferricorn/uvicorn |"
        " CPU/req ferricorn/gunicorn |")
    assert table[2:4] == [
        "| hello | 2.00x | 3.00x | - | 0.50x | 0.33x | - |",
        "| wsgi-hello | 2.00x | - | 4.00x | 0.50x | - | 0.25x |",
    ]


def test_the_report_says_how_the_wsgi_servers_ran(tmp_path):
    out = tmp_path / "report.md"
    write_markdown(out, wsgi_results(WSGI, list(ALL_SERVERS)), None)
    text = out.read_text()
    assert (f"with `--interface wsgi --wsgi-threads {T}`, Granian with `--interface wsgi"
            f" --blocking-threads {T}`, gunicorn with `--worker-class gthread --threads {T}"
            " --workers 1`") in " ".join(text.split())
    assert "| wsgi-slow-100ms | gunicorn | 72 |" in text
    assert f"- **wsgi-hello**: WSGI, {T} threads: GET, 13-byte" in text
    # No paragraph about WSGI in a report without WSGI scenarios.
    write_markdown(out, wsgi_results(["hello"], ["ferricorn", "granian"]), None)
    assert "WSGI" not in out.read_text()
