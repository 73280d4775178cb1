"""The llm-sse scenarios, with no server process: their definitions and who serves them with
what command line, the request body, the check of the first answer, the app itself (called
in-process through ASGI), loadgen's new sse fields (tokens, time to first token, streams
ended) and the figures derived from them, the driver on a stand-in loadgen, and the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness import loadgen as loadgen_module  # noqa: E402
from bench.harness import servers  # noqa: E402
from bench.harness.campaign import describe  # noqa: E402
from bench.harness.loadgen import (  # noqa: E402
    SampledLoad,
    llm_command,
    llm_figures,
    measure_llm,
    parse_loadgen,
    write_llm_request,
)
from bench.harness.report import print_tables, write_markdown  # noqa: E402
from bench.harness.results import Run  # noqa: E402
from bench.harness.scenarios import (  # noqa: E402
    LLM_CHECK_TOKENS,
    LLM_PROMPT_CHARS,
    LLM_TOKEN_INTERVAL_S,
    LLM_TOKENS,
    LLM_WARMUP_TOKENS,
    LOADGEN_KINDS,
    SCENARIOS,
    expect_completion_stream,
    llm_prompt,
    llm_request,
    loadgen_scenarios,
)
from bench.harness.servers import (  # noqa: E402
    ALL_SERVERS,
    missing_requirements,
    server_command,
    serves,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LLM = ["llm-sse-1k", "llm-sse-5k"]
SSE_FIELDS = ["mode", "clients", "completed", "events", "seconds", "events_per_s",
              "delay_p50_ms", "delay_p99_ms", "delay_max_ms"]


def llm_line() -> dict:
    return parse_loadgen((FIXTURES / "loadgen_llm.txt").read_text(), "sse")


# The scenarios.


def test_the_llm_scenarios():
    assert loadgen_scenarios("llm", list(SCENARIOS)) == LLM
    assert "llm" in LOADGEN_KINDS
    for name, clients in zip(LLM, (1_000, 5_000), strict=True):
        s = SCENARIOS[name]
        assert (s.app, s.kind, s.method, s.path, s.content_type) == (
            "bench.apps.llm_sse:app", "llm", "POST", "/v1/completions", "application/json")
        assert (s.connections, s.events, s.interval_s) == (clients, LLM_TOKENS, 0.02)
        assert s.ideal_rps == clients / LLM_TOKEN_INTERVAL_S  # 50,000 and 250,000 tokens/s
        assert s.ceiling is None and not s.tls and not s.http2 and s.interface == "asgi"
        assert s.server_args == {}  # every server with its defaults
        # The readiness check asks for a few tokens only; the load for LLM_TOKENS.
        assert json.loads(s.body)["max_tokens"] == LLM_CHECK_TOKENS
    assert LLM_TOKENS == 100


def test_ferricorn_granian_and_uvicorn_serve_them():
    for name in LLM:
        assert [s for s in ALL_SERVERS if serves(s, SCENARIOS[name])] == [
            "ferricorn", "granian", "uvicorn"]
        for server in ("hypercorn", "gunicorn", "hyper"):
            assert server_command(server, SCENARIOS[name], 1, []) is None


def test_their_command_lines():
    scenario = SCENARIOS["llm-sse-5k"]
    assert server_command("ferricorn", scenario, 8080, []) == [
        sys.executable, "-m", "ferricorn", "bench.apps.llm_sse:app", "--port", "8080",
        "--no-access-log", "--log-level", "warning"]
    assert server_command("granian", scenario, 8080, []) == [
        sys.executable, "-m", "granian", "--interface", "asgi", "--port", "8080", "--workers",
        "1", "--loop", "uvloop", "--http", "1", "--no-access-log", "--log-level", "warning",
        "bench.apps.llm_sse:app"]
    assert server_command("uvicorn", scenario, 8080, []) == [
        sys.executable, "-m", "uvicorn", "bench.apps.llm_sse:app", "--port", "8080", "--loop",
        "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def test_the_request_body():
    body = llm_request(LLM_TOKENS)
    assert body == llm_request(LLM_TOKENS)  # deterministic
    assert 1_900 <= len(body) <= 2_300
    request = json.loads(body)
    assert len(llm_prompt()) == LLM_PROMPT_CHARS == 1_800
    assert request["prompt"] == llm_prompt()
    assert request["max_tokens"] == LLM_TOKENS and request["stream"] is True
    assert request["stop"] == ["\n\n", "###", "</s>"]
    assert request["metadata"]["tags"] == ["support", "summary", "batch-7"]
    assert json.loads(llm_request(7))["max_tokens"] == 7


def completion_stream(tokens: int, done: bool = True) -> bytes:
    chunks = [
        "data: " + json.dumps({"id": "cmpl-0", "choices": [{"index": 0, "text": f" t{i}"}]})
        + "\n\n"
        for i in range(tokens)
    ]
    return ("".join(chunks) + ("data: [DONE]\n\n" if done else "")).encode()


def test_the_check():
    check = expect_completion_stream(3)
    assert check(200, completion_stream(3)) is None
    assert check(422, b'{"detail":[]}') == "status 422, expected 200: b'{\"detail\":[]}'"
    assert check(200, completion_stream(2)) == "2 token events, expected 3"
    assert check(200, completion_stream(3, done=False)).startswith(
        "the stream does not end with data: [DONE]")
    assert check(200, b"data: tok0\n\ndata: tok1\n\ndata: tok2\n\ndata: [DONE]\n\n").startswith(
        "not a completion chunk: 'data: tok0'")
    assert check(200, b'data: {"choices":[{"text":1}]}\n\n' * 3 + b"data: [DONE]\n\n") \
        .startswith("choices[0].text is not a string")


# The app, called in-process (no server).


async def call_app(body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Run the app's lifespan startup, one POST /v1/completions, then its shutdown."""
    from bench.apps.llm_sse import app

    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                          "state": {}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"

    sent: list[dict] = []
    request = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if request:
            return request.pop()
        await asyncio.Event().wait()  # no disconnect: the client reads to the end
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/v1/completions",
        "raw_path": b"/v1/completions", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
    }
    await app(scope, receive, send)
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await lifespan
    start = sent[0]
    assert start["type"] == "http.response.start"
    return (start["status"], dict(start["headers"]),
            b"".join(m.get("body", b"") for m in sent[1:]))


def test_the_app_streams_the_tokens_then_done():
    pytest.importorskip("fastapi")
    status, headers, body = asyncio.run(call_app(SCENARIOS["llm-sse-1k"].body))
    assert SCENARIOS["llm-sse-1k"].check(status, body) is None
    assert headers[b"content-type"].startswith(b"text/event-stream")
    chunks = [json.loads(e[len("data: "):]) for e in body.decode().split("\n\n")[:-2]]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
    assert {c["model"] for c in chunks} == {"bench-llm-7b-instruct"}
    assert len({c["id"] for c in chunks}) == 1


def test_the_app_validates_the_request():
    pytest.importorskip("fastapi")
    bad = json.loads(llm_request(LLM_TOKENS))
    bad["max_tokens"] = 0
    status, _headers, body = asyncio.run(call_app(json.dumps(bad).encode()))
    assert status == 422
    assert b"max_tokens" in body


# loadgen's line and the figures.


def test_the_sse_line_keeps_its_fields_and_adds_the_token_ones():
    result = llm_line()
    assert list(result)[:len(SSE_FIELDS)] == SSE_FIELDS
    assert result["events"] == 101_796  # tokens + [DONE] + the last chunk, per ended stream
    assert (result["tokens"], result["tokens_per_s"]) == (99_800, 41376.5)
    assert (result["ttft_p50_ms"], result["ttft_p99_ms"], result["ttft_max_ms"]) == (
        12.34, 85.10, 140.22)
    assert (result["token_delay_p50_ms"], result["token_delay_p99_ms"]) == (20.11, 27.80)
    assert result["token_delay_max_ms"] == pytest.approx(61.5)
    assert (result["ended"], result["done"], result["status_errors"], result["failed"]) == (
        998, 998, 2, 0)
    assert (result["stream_p50_ms"], result["stream_p99_ms"]) == (2031.4, 2190.7)
    assert result["stream_max_ms"] == pytest.approx(2301.2)
    # The GET lines of before still parse (they have none of the new fields).
    old = parse_loadgen((FIXTURES / "loadgen_sse.txt").read_text(), "sse")
    assert list(old) == SSE_FIELDS


def test_the_figures_of_a_run():
    load = SampledLoad(result=llm_line(), rss_before=30.0, rss_peak=50.0, fds_before=10,
                       fds_peak=1010, cpu=1.2, loadgen_cpu=0.9)
    g = llm_figures(load)
    assert (g["clients"], g["completed"], g["ended"], g["tokens"]) == (1000, 998, 998, 99_800)
    assert g["tokens_per_s"] == pytest.approx(99_800 / 2.412)  # not loadgen's rounded figure
    assert g["cpu_us_per_token"] == pytest.approx(1.2 / 99_800 * 1e6)
    assert g["open_peak"] == 1000
    assert g["kib_per_stream"] == pytest.approx(20 * 1024 / 1000)
    assert g["cpu_utilisation"] == pytest.approx(1.2 / 2.412)
    assert g["loadgen_cpu_utilisation"] == pytest.approx(0.9 / 2.412)
    assert (g["ttft_p50_ms"], g["ttft_p99_ms"], g["token_delay_p99_ms"]) == (12.34, 85.1, 27.8)
    assert (g["status_errors"], g["failed"], g["stream_p99_ms"]) == (2, 0, 2190.7)
    # A server that held fewer streams at once: KiB per stream open at once.
    capped = llm_figures(SampledLoad(llm_line(), 30.0, 50.0, 10, 522, 1.2, 0.9))
    assert capped["open_peak"] == 512
    assert capped["kib_per_stream"] == pytest.approx(40.0)
    # No token: no CPU per token, rather than a division by zero.
    empty = dict(llm_line(), tokens=0, seconds=0.0)
    assert llm_figures(SampledLoad(empty, 30.0, 30.0, 10, 10, 0.1, 0.1))["cpu_us_per_token"] == 0


def test_the_loadgen_command_and_request_file(tmp_path):
    scenario = SCENARIOS["llm-sse-1k"]
    path = write_llm_request(tmp_path, scenario.name, LLM_TOKENS)
    assert path == tmp_path / "llm-sse-1k.request-100.json"
    assert path.read_bytes() == llm_request(LLM_TOKENS)
    assert llm_command("/x/loadgen", 4321, scenario, path, scenario.connections) == [
        "/x/loadgen", "sse", "--port", "4321", "--path", "/v1/completions", "--clients", "1000",
        "--method", "POST", "--body-file", str(path), "--content-type", "application/json"]


class Server:
    """Stands in for the server's Popen: this process is sampled, and it never exits."""

    pid = os.getpid()
    returncode = None

    def poll(self) -> int | None:
        return None


def test_measure_llm_on_a_stand_in_loadgen(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "loadgen"
    line = (FIXTURES / "loadgen_llm.txt").read_text()
    fake.write_text(f"#!{sys.executable}\nimport sys\n"
                    f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                    f"sys.stdout.write({line!r})\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(loadgen_module, "loadgen_binary", lambda: fake)
    run = Run("llm-sse-1k", "ferricorn", 1, ok=False)
    args = argparse.Namespace(warmup=1.0, wrk_cpus=None)
    measure_llm(run, Server(), SCENARIOS["llm-sse-1k"], 4321, args, tmp_path, "r1-llm")
    warm, measured = calls.read_text().splitlines()
    assert warm.startswith("sse --port 4321 --path /v1/completions --clients 100 --method POST")
    assert f"--body-file {tmp_path / 'llm-sse-1k.request-10.json'}" in warm
    assert json.loads((tmp_path / "llm-sse-1k.request-10.json").read_bytes())["max_tokens"] \
        == LLM_WARMUP_TOKENS
    assert measured == (f"sse --port 4321 --path /v1/completions --clients 1000 --method POST"
                        f" --body-file {tmp_path / 'llm-sse-1k.request-100.json'}"
                        " --content-type application/json")
    assert run.loadgen_command == f"{fake} {measured}"
    assert run.ok and run.error is None
    assert run.loadgen["tokens"] == 99_800 and run.loadgen["completed"] == 998
    assert run.loadgen_output == llm_line()
    assert (tmp_path / "r1-llm.loadgen.txt").read_text() == line
    assert (tmp_path / "r1-llm.warmup.loadgen.txt").exists()


def test_loadgen_is_required(monkeypatch, tmp_path):
    monkeypatch.setattr(servers, "loadgen_binary", lambda: tmp_path / "nowhere")
    problems = missing_requirements(["ferricorn"], ["llm-sse-1k"])
    assert f"{tmp_path / 'nowhere'} is missing (cargo build --release --example loadgen)" \
        in problems


# The report.


def llm_results() -> dict:
    """One round of llm-sse-1k on the three servers, with round figures: ferricorn at 40,000
    tokens/s, Granian at 20,000, uvicorn at 10,000 (99,800 tokens), CPU 1, 2 and 4 s, RSS peak
    50, 70 and 90 MiB from 30."""
    figures = {"ferricorn": (2.495, 1.0, 50.0, 12.34), "granian": (4.99, 2.0, 70.0, 24.68),
               "uvicorn": (9.98, 4.0, 90.0, 49.36)}
    runs = []
    for server, (seconds, cpu, rss_peak, ttft) in figures.items():
        result = dict(llm_line(), seconds=seconds, ttft_p50_ms=ttft, ttft_p99_ms=ttft * 2)
        load = SampledLoad(result, 30.0, rss_peak, 10, 1010, cpu, 0.9)
        runs.append({"scenario": "llm-sse-1k", "server": server, "round": 1, "ok": True,
                     "rss_mib": rss_peak, "loadgen": llm_figures(load), "loadgen_output": result})
    fixture = json.loads((FIXTURES / "results.json").read_text())
    settings = dict(fixture["settings"], scenarios=["llm-sse-1k"], rounds=1,
                    servers=["ferricorn", "granian", "uvicorn"])
    return {"settings": settings, "environment": fixture["environment"], "runs": runs,
            "app_costs": {}}


def test_the_report_section(tmp_path):
    out = tmp_path / "report.md"
    write_markdown(out, llm_results(), None)
    lines = out.read_text().splitlines()
    assert [line for line in lines if line.startswith("#")] == [
        "# ferricorn benchmark results", "## Command", "## Machine and software",
        "## Streams and idle connections", "### llm-sse-1k",
        "### Side by side (ferricorn / other)", "## Scenarios",
    ]
    assert ("| server | tokens/s | of ideal | TTFT p50 ms | TTFT p99 ms | inter-token p50 ms |"
            " inter-token p99 ms | p99 <= 40 ms | streams done | stream p99 s | open at once |"
            " RSS before MiB | RSS peak MiB | KiB/stream | CPU us/token | rounds | notes |"
            ) in lines
    assert ("| ferricorn | 40,000 | 80% | 12.3 | 24.7 | 20.11 | 27.80 | yes | 998/1,000 | 2.19 |"
            " 1,000 | 30.0 | 50.0 | 20.5 | 10.0 | 1 | 2 streams incomplete, 2 error statuses |"
            ) in lines
    assert "| uvicorn | 10,000 | 20% | 49.4 | 98.7 |" in " ".join(lines)
    assert ("| metric | ferricorn | granian | uvicorn | ferricorn/granian | ferricorn/uvicorn |"
            in lines)
    assert "| llm-sse-1k: tokens/s (higher is better) | 40,000 | 20,000 | 10,000 | 2.00x |" \
        " 4.00x |" in lines
    assert "| llm-sse-1k: time to first token p50 ms | 12.3 | 24.7 | 49.4 | 0.50x | 0.25x |" \
        in lines
    assert "| llm-sse-1k: CPU us/token | 10.0 | 20.0 | 40.1 | 0.50x | 0.25x |" in lines
    assert "| llm-sse-1k: streams completed | 998 | 998 | 998 | - | - |" in lines
    assert "| llm-sse-1k: RSS peak MiB | 50.0 | 70.0 | 90.0 | 0.71x | 0.56x |" in lines
    prose = " ".join(lines)
    assert "1,000 concurrent clients each POST a 2,146-byte JSON completion request" in prose
    assert "- Load generator: `target/release/examples/loadgen` (bench/loadgen.rs) for" \
        " llm-sse-1k" in lines


def test_the_tables_on_stdout(capsys):
    print_tables(llm_results())
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["granian", "20,000", "40%", "24.7", "49.4", "20.11", "27.80", "yes", "998/1,000",
            "2.19", "1,000", "30.0", "70.0", "41.0", "20.0", "1", "2", "streams", "incomplete,",
            "2", "error", "statuses"] in rows


def test_the_progress_line():
    run = Run(**llm_results()["runs"][0])
    line = describe(run)
    assert line.startswith("[round 1] llm-sse-1k     ferricorn     40,000 tokens/s  TTFT p50"
                           " 12.3 p99 24.7 ms  inter-token p99 27.80 ms")
    assert "streams 998/1000 (open at once 1000)" in line
    assert "cpu 10.0 us/token" in line
