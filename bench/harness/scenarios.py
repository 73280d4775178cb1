"""The scenario table: what each benchmark scenario serves, the load put on it, and the
parameters of its measurement (sizes, delays, limits, sampling periods).

Owns ``Scenario``, ``SCENARIOS`` (its order is the reports' order), the request bodies the wrk
Lua scripts send, which scenarios run over TLS or HTTP/2 and which serve a WSGI app (with
how many threads), the checks of the first answer, and
the module-level parameters below, which the drivers, the report text and the command line's
defaults all read. Must not start processes, measure or format anything. bench/README.md
("Adding a scenario") says how to add one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Request bodies sent by the wrk Lua scripts in bench/lua/; keep both sides in sync.
BODY_4K = b"0123456789abcdef" * 256
BODY_1M = b"0123456789abcdef" * 65536
# wsgi-10k's response body, a copy of bench/apps/wsgi_apps.py's BODY_10K (10 KiB).
BODY_10K = b"0123456789abcdef" * 640
FASTAPI_ITEM = b'{"name":"widget","price":9.99,"quantity":3,"tags":["red","small","sale"]}'


Check = Callable[[int, bytes], "str | None"]


def expect_body(expected: bytes) -> Check:
    """A check that wants status 200 and exactly ``expected`` as the body."""

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}, expected 200"
        if body != expected:
            return f"body {body[:60]!r}... ({len(body)} bytes), expected {len(expected)} bytes"
        return None

    return check


def expect_length(size: int) -> Check:
    """A check that wants status 200 and a body of ``size`` bytes."""

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}, expected 200"
        return None if len(body) == size else f"{len(body)} bytes, expected {size}"

    return check


def expect_json(predicate: Callable[[object], bool], what: str) -> Check:
    """A check that wants status 200 and a JSON body satisfying ``predicate``."""

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}, expected 200: {body[:200]!r}"
        try:
            document = json.loads(body)
        except ValueError:
            return f"body is not JSON: {body[:60]!r}"
        return None if predicate(document) else f"expected {what}, got {body[:200]!r}"

    return check


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario: the app to serve and the load to put on it."""

    name: str
    app: str  # import target, "module:attribute"
    summary: str
    check: Check = field(repr=False)
    method: str = "GET"
    path: str = "/"
    connections: int = 100
    lua: str | None = None  # file name in bench/lua/
    body: bytes = field(default=b"", repr=False)
    content_type: str | None = None
    ideal_rps: float | None = None  # when the app itself bounds the throughput (events/s: sse)
    wrk_timeout_s: int = 5
    # The load generator: "wrk", "h2load", or a loadgen mode ("sse", "idle", "ws"); "llm" is
    # loadgen sse POSTing a JSON request (measure_llm); "cancel" and "overload" have drivers
    # of their own.
    kind: str = "wrk"
    tls: bool = False  # served over TLS with the run's self-signed certificate (https://)
    http2: bool = False  # HTTP/2 (h2load): h2c by prior knowledge, or ALPN h2 with ``tls``
    streams: int = 1  # h2load: streams in flight per connection (-m)
    headers: tuple[str, ...] = ()  # extra request headers wrk sends, "Name: value"
    load_path: str | None = None  # loadgen's request path, when it differs from ``path``
    hold_s: float = 0.0  # idle: seconds loadgen holds the connections once all are open
    events: int = 0  # sse: events per stream (the app's ``n``); llm: tokens (``max_tokens``)
    interval_s: float = 0.0  # sse, llm: seconds between two events (tokens) of a stream
    # The hyper ceiling's flags for this scenario (bench/hyper_hello.rs), or None where
    # there is no pure-Rust equivalent of the app to compare with.
    ceiling: tuple[str, ...] | None = None
    # "asgi", or "wsgi" for a PEP 3333 app (bench/apps/wsgi_apps.py), which ferricorn
    # (--interface wsgi), Granian (--interface wsgi) and gunicorn (gthread) serve on
    # ``wsgi_threads`` threads in their one worker; see servers.serves for who runs what.
    interface: str = "asgi"
    wsgi_threads: int = 0  # wsgi: the threads running the app (every server gets the same)
    # Extra command-line flags per server ("ferricorn", "granian", "uvicorn", "hypercorn",
    # "gunicorn"), e.g. limits.
    server_args: dict[str, tuple[str, ...]] = field(
        default_factory=dict, hash=False, compare=False, repr=False
    )


# h2-hello and h2-stream: h2load's connections and the streams in flight on each (-c, -m);
# 100 streams is the default limit of ferricorn (--h2-max-concurrent-streams) and Hypercorn.
H2_CONNECTIONS = 10
H2_STREAMS = 100
# sse-tokens: what each of the 1,000 streams carries (bench/apps/sse_tokens.py).
SSE_EVENTS = 200
SSE_INTERVAL_S = 0.01
# sse-2k and sse-10k: 2,000 and 10,000 streams on one worker, each 40 events 50 ms apart (2 s
# per stream).
SSE_2K_STREAMS = 2_000
SSE_10K_STREAMS = 10_000
SSE_10K_EVENTS = 40
SSE_10K_INTERVAL_S = 0.05
# llm-sse-1k and llm-sse-5k: an OpenAI-style completions endpoint (bench/apps/llm_sse.py,
# FastAPI) with this many clients at once; each POSTs a ~2 KB JSON request (llm_request) and
# reads LLM_TOKENS tokens LLM_TOKEN_INTERVAL_S apart (the app's TOKEN_INTERVAL_S), then
# `data: [DONE]`. The readiness check asks for LLM_CHECK_TOKENS tokens, the warm-up's 100
# streams for LLM_WARMUP_TOKENS.
LLM_1K_STREAMS = 1_000
LLM_5K_STREAMS = 5_000
LLM_TOKENS = 100
LLM_TOKEN_INTERVAL_S = 0.02
LLM_PROMPT_CHARS = 1_800
LLM_CHECK_TOKENS = 3
LLM_WARMUP_TOKENS = 10
# ws-echo: the WebSocket clients, each doing sequential echo round trips of a message this big.
WS_CLIENTS = 100
WS_MESSAGE_BYTES = 32
# idle-10k: RSS is read this long after loadgen reports all connections open.
IDLE_SETTLE_S = 1.0
# idle-10k: loadgen connects one at a time without a timeout, so a server that stops accepting
# (Granian at its --backpressure, which defaults to its --backlog, 1024) stalls it in SYN
# retries. The run is cut short when the server's socket count has not grown for this long.
IDLE_STALL_S = 10.0
RSS_SAMPLE_S = 0.05  # RSS sampling period while loadgen runs
# sse and ws: the server's open descriptors are counted every this many RSS samples (0.5 s),
# since listing 10,000 of them takes a few milliseconds.
FD_SAMPLE_EVERY = 10
LOADGEN_TIMEOUT_S = 180.0  # a loadgen run taking longer than this is killed and marked failed
# cancel: the client sends GET /work?id=N, waits CANCEL_HOLD_S and closes the connection, with
# CANCEL_CONCURRENCY such clients at a time; CANCEL_SETTLE_S after the last close the harness
# collects the app's cancel times. --cancel-requests sets N (default CANCEL_REQUESTS).
CANCEL_REQUESTS = 300
CANCEL_CONCURRENCY = 20
CANCEL_HOLD_S = 0.05
CANCEL_SETTLE_S = 1.0
# overload: the 100 ms app with OVERLOAD_CONNECTIONS wrk connections, twice the OVERLOAD_LIMIT
# requests that ferricorn (and uvicorn, counting connections) let in at once.
OVERLOAD_LIMIT = 200
OVERLOAD_CONNECTIONS = 2 * OVERLOAD_LIMIT
# The WSGI scenarios: every server runs the app on this many threads in its one worker
# (ferricorn --wsgi-threads, Granian --blocking-threads, gunicorn -k gthread --threads). The
# one place to change it; results.json keeps each run's command line.
WSGI_THREADS = 8
# wsgi-slow-100ms: the app blocks its thread this long, under this many connections; with
# fewer threads than connections the requests queue, and the ideal is threads / delay.
WSGI_SLOW_DELAY_S = 0.1
WSGI_SLOW_CONNECTIONS = 64


def sse_delay_target_ms(scenario: Scenario) -> float:
    """The p99 inter-event delay an sse scenario should stay under: twice the app's interval."""
    return 2 * scenario.interval_s * 1000


def _stream_body() -> bytes:
    chunks = [f"chunk {i:02d} ".ljust(127, ".").encode() + b"\n" for i in range(10)]
    return b"".join(chunks)


def token_streams(
    name: str, streams: int, events: int, interval_s: float, summary: str | None = None
) -> Scenario:
    """An sse scenario: ``streams`` loadgen clients at once, each reading one stream of
    ``events`` small events ``interval_s`` apart from bench/apps/sse_tokens.py."""
    ideal = streams / interval_s
    return Scenario(
        name=name,
        app="bench.apps.sse_tokens:app",
        summary=summary or f"{streams:,} concurrent text/event-stream streams on one worker,"
        f" each {events} `data:` events {interval_s * 1000:g} ms apart, measured with loadgen;"
        f" ideal {ideal:,.0f} events/s, target p99 inter-event delay"
        f" <= {2 * interval_s * 1000:g} ms; RSS per open stream",
        kind="sse",
        path="/?n=3&interval=0",  # the readiness check; the load uses load_path
        load_path=f"/?n={events}&interval={interval_s}",
        connections=streams,
        events=events,
        interval_s=interval_s,
        ideal_rps=ideal,
        check=expect_body(b"data: tok0\n\ndata: tok1\n\ndata: tok2\n\n"),
        ceiling=(),
    )


def llm_prompt() -> str:
    """The completion requests' prompt: LLM_PROMPT_CHARS characters of fixed text."""
    tickets = " ".join(
        f"Ticket {i:03d}: after the nightly backup the export job stalls at 80%, the"
        " dashboard shows no error and a restart of the worker clears it until the next night."
        for i in range(1, 40)
    )
    return ("Summarise the support tickets below in two sentences, keeping the product names."
            f"\n\n{tickets}")[:LLM_PROMPT_CHARS]


def llm_request(max_tokens: int) -> bytes:
    """The JSON body every llm-sse client POSTs (about 2 KB, the same bytes every time)."""
    request = {
        "model": "bench-llm-7b-instruct",
        "prompt": llm_prompt(),
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "top_p": 0.95,
        "stop": ["\n\n", "###", "</s>"],
        "stream": True,
        "stream_options": {"include_usage": False},
        "logit_bias": {"50256": -100.0, "198": -2.5},
        "metadata": {"user": "bench-user-0001", "session": "7f3c2a9e-5b1d-4e8f-9a6c-0d2b4e6f8a1c",
                     "tags": ["support", "summary", "batch-7"]},
    }
    return json.dumps(request, separators=(",", ":")).encode()


def expect_completion_stream(tokens: int) -> Check:
    """A check that wants status 200 and a completion event stream: ``tokens`` events
    ``data: {json}`` with ``choices[0].text``, then ``data: [DONE]``."""

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}, expected 200: {body[:200]!r}"
        events = [e for e in body.decode(errors="replace").split("\n\n") if e]
        if events[-1:] != ["data: [DONE]"]:
            return f"the stream does not end with data: [DONE]: {body[-80:]!r}"
        if len(events) - 1 != tokens:
            return f"{len(events) - 1} token events, expected {tokens}"
        for event in events[:-1]:
            try:
                if not event.startswith("data: "):
                    raise ValueError(event)
                text = json.loads(event[len("data: "):])["choices"][0]["text"]
            except (ValueError, KeyError, IndexError, TypeError):
                return f"not a completion chunk: {event[:120]!r}"
            if not isinstance(text, str):
                return f"choices[0].text is not a string: {event[:120]!r}"
        return None

    return check


def llm_streams(name: str, streams: int) -> Scenario:
    """An llm scenario: ``streams`` loadgen clients at once, each POSTing llm_request to
    bench/apps/llm_sse.py and reading LLM_TOKENS tokens LLM_TOKEN_INTERVAL_S apart.

    No hyper ceiling (``ceiling`` None), no TLS or HTTP/2: servers.serves runs it on
    ferricorn, Granian and uvicorn."""
    ideal = streams / LLM_TOKEN_INTERVAL_S
    return Scenario(
        name=name,
        app="bench.apps.llm_sse:app",
        summary=f"FastAPI `POST /v1/completions`: {streams:,} concurrent clients each POST a"
        f" {len(llm_request(LLM_TOKENS)):,}-byte JSON request (pydantic) and read a"
        f" text/event-stream of {LLM_TOKENS} OpenAI-style completion chunks"
        f" {LLM_TOKEN_INTERVAL_S * 1000:g} ms apart, then `data: [DONE]` (loadgen sse --method"
        f" POST); ideal {ideal:,.0f} tokens/s, target p99 inter-token delay"
        f" <= {2 * LLM_TOKEN_INTERVAL_S * 1000:g} ms; time to first token, RSS per stream",
        kind="llm",
        method="POST",
        path="/v1/completions",
        # The readiness check's request; the load's (LLM_TOKENS tokens) is written to a file
        # at run time (loadgen.measure_llm).
        body=llm_request(LLM_CHECK_TOKENS),
        content_type="application/json",
        connections=streams,
        events=LLM_TOKENS,
        interval_s=LLM_TOKEN_INTERVAL_S,
        ideal_rps=ideal,
        check=expect_completion_stream(LLM_CHECK_TOKENS),
    )


def wsgi_scenario(name: str, app: str, summary: str, **fields: Any) -> Scenario:
    """A WSGI scenario: ``app`` is a callable of bench/apps/wsgi_apps.py, served on
    WSGI_THREADS threads by every server that runs it."""
    return Scenario(
        name=name, app=f"bench.apps.wsgi_apps:{app}",
        summary=f"WSGI, {WSGI_THREADS} threads: {summary}", interface="wsgi",
        wsgi_threads=WSGI_THREADS, **fields,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            name="hello",
            app="bench.apps.hello:app",
            summary='GET, 13-byte "Hello, world!" text body',
            ceiling=(),
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="json",
            app="bench.apps.json_1k:app",
            summary="GET, 1 KiB pre-serialized JSON document",
            check=expect_json(lambda d: isinstance(d, dict) and len(d["users"]) == 8, "8 users"),
        ),
        Scenario(
            name="echo-4k",
            app="bench.apps.echo_4k:app",
            summary="POST 4 KiB, read with receive() and echoed back",
            method="POST",
            lua="post_4k.lua",
            body=BODY_4K,
            content_type="application/octet-stream",
            check=expect_body(BODY_4K),
        ),
        Scenario(
            name="upload-1m",
            app="bench.apps.upload_1m:app",
            summary="POST 1 MiB, counted chunk by chunk, reply is the byte count",
            method="POST",
            lua="post_1m.lua",
            body=BODY_1M,
            content_type="application/octet-stream",
            check=expect_body(str(len(BODY_1M)).encode()),
            wrk_timeout_s=10,
        ),
        Scenario(
            name="stream-10",
            app="bench.apps.stream_10:app",
            summary="GET, 10 x 128-byte more_body chunks (chunked encoding)",
            check=expect_body(_stream_body()),
        ),
        Scenario(
            name="stream-10-yield",
            app="bench.apps.stream_10_yield:app",
            summary="GET, stream-10 with the app awaiting asyncio.sleep(0) between sends",
            check=expect_body(_stream_body()),
        ),
        Scenario(
            name="pathsend-100m",
            app="bench.apps.pathsend_100m:app",
            summary="GET, a 100 MiB file: http.response.pathsend where the server offers it"
            " (ferricorn, Granian), else read and sent in 1 MiB chunks; 4 connections",
            connections=4,
            wrk_timeout_s=30,
            check=expect_length(100 * 1024 * 1024),
        ),
        Scenario(
            name="slow-100ms",
            app="bench.apps.slow_100ms:app",
            summary="GET, app awaits asyncio.sleep(0.1); 1,000 connections, ideal 10,000 req/s",
            connections=1000,
            ideal_rps=10_000.0,
            ceiling=("--delay-ms", "100"),
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="fastapi",
            app="bench.apps.fastapi_items:app",
            summary="FastAPI POST /items with a pydantic body, JSON reply",
            method="POST",
            path="/items",
            lua="fastapi_item.lua",
            body=FASTAPI_ITEM,
            content_type="application/json",
            check=expect_json(
                lambda d: d == {"name": "widget", "total": 29.97, "tag_count": 3},
                '{"name":"widget","total":29.97,"tag_count":3}',
            ),
        ),
        # The WSGI scenarios run on ferricorn, Granian and gunicorn only (servers.serves).
        wsgi_scenario(
            "wsgi-hello", "hello", 'GET, 13-byte "Hello, world!" body with Content-Length',
            check=expect_body(b"Hello, world!"),
        ),
        wsgi_scenario(
            "wsgi-10k", "body10k", "GET, a fixed 10 KiB body with Content-Length",
            check=expect_body(BODY_10K),
        ),
        wsgi_scenario(
            "wsgi-echo-1m", "echo", "POST 1 MiB, read from wsgi.input in read(65536) pieces"
            " and echoed back",
            method="POST",
            lua="post_1m.lua",
            body=BODY_1M,
            content_type="application/octet-stream",
            check=expect_body(BODY_1M),
            wrk_timeout_s=10,
        ),
        wsgi_scenario(
            "wsgi-slow-100ms", "slow",
            f"GET, the app blocks its thread in time.sleep({WSGI_SLOW_DELAY_S:g});"
            f" {WSGI_SLOW_CONNECTIONS} connections queue for the {WSGI_THREADS} threads, ideal"
            f" {min(WSGI_SLOW_CONNECTIONS, WSGI_THREADS) / WSGI_SLOW_DELAY_S:,.0f} req/s",
            connections=WSGI_SLOW_CONNECTIONS,
            ideal_rps=min(WSGI_SLOW_CONNECTIONS, WSGI_THREADS) / WSGI_SLOW_DELAY_S,
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="tls-hello",
            app="bench.apps.hello:app",
            summary="GET hello over HTTPS with keep-alive (the run's self-signed ECDSA P-256"
            " certificate): hello plus the cost of TLS records",
            tls=True,
            check=expect_body(b"Hello, world!"),
            ceiling=(),
        ),
        Scenario(
            name="tls-handshakes",
            app="bench.apps.hello:app",
            summary="hello over HTTPS with `Connection: close`: every request on a new"
            " connection, so req/s is full TLS handshakes per second (wrk resumes no session)",
            tls=True,
            headers=("Connection: close",),
            check=expect_body(b"Hello, world!"),
            ceiling=(),
        ),
        Scenario(
            name="h2-hello",
            app="bench.apps.hello:app",
            summary='GET over HTTP/2 (h2c, prior knowledge) with h2load, 13-byte "Hello,'
            ' world!" body',
            kind="h2load",
            http2=True,
            connections=H2_CONNECTIONS,
            streams=H2_STREAMS,
            check=expect_body(b"Hello, world!"),
            ceiling=("--h2",),
        ),
        Scenario(
            name="h2-stream",
            app="bench.apps.stream_10:app",
            summary="GET over HTTP/2 (h2c, prior knowledge) with h2load, the stream-10 app's"
            " 10 x 128-byte more_body chunks (a DATA frame each)",
            kind="h2load",
            http2=True,
            connections=H2_CONNECTIONS,
            streams=H2_STREAMS,
            check=expect_body(_stream_body()),
        ),
        token_streams(
            "sse-tokens", 1000, SSE_EVENTS, SSE_INTERVAL_S,
            summary=f"1,000 concurrent GET text/event-stream streams of {SSE_EVENTS} small"
            f" `data:` events {SSE_INTERVAL_S * 1000:g} ms apart (LLM-style token streaming),"
            " measured with loadgen; ideal 100,000 events/s, target p99 inter-event delay"
            f" <= {2 * SSE_INTERVAL_S * 1000:g} ms",
        ),
        token_streams("sse-2k", SSE_2K_STREAMS, SSE_10K_EVENTS, SSE_10K_INTERVAL_S),
        token_streams("sse-10k", SSE_10K_STREAMS, SSE_10K_EVENTS, SSE_10K_INTERVAL_S),
        llm_streams("llm-sse-1k", LLM_1K_STREAMS),
        llm_streams("llm-sse-5k", LLM_5K_STREAMS),
        Scenario(
            name="ws-echo",
            app="bench.apps.ws_echo:app",
            summary=f"WebSocket echo: {WS_CLIENTS} clients, each sends a {WS_MESSAGE_BYTES}-byte"
            " text message and waits for the echo, over and over (loadgen ws); throughput is"
            " echo round trips (messages) per second, latency the round trip",
            kind="ws",
            path="/",  # the readiness check (plain HTTP); the WebSocket load uses load_path
            load_path="/ws",
            connections=WS_CLIENTS,
            check=expect_body(b"ws-echo"),
        ),
        Scenario(
            name="idle-10k",
            app="bench.apps.hello:app",
            summary="10,000 idle connections (nothing sent) held open 3 s while loadgen times"
            " one GET / on a fresh connection every 100 ms; measures RSS per connection",
            kind="idle",
            connections=10_000,
            hold_s=3.0,
            check=expect_body(b"Hello, world!"),
        ),
        Scenario(
            name="cancel",
            app="bench.apps.cancel_probe:app",
            summary="GET /work?id=N (the app sleeps 60 s), client closes the connection after"
            f" {CANCEL_HOLD_S * 1000:g} ms; delay from the close to CancelledError in the app's"
            f" task, {CANCEL_CONCURRENCY} clients at a time (asyncio sockets in the harness);"
            " ferricorn with --cancel-on-disconnect, the others with their defaults",
            kind="cancel",
            path="/results",  # the readiness check
            check=expect_json(lambda d: isinstance(d, dict) and "cancels" in d, "results"),
            server_args={"ferricorn": ("--cancel-on-disconnect",)},
        ),
        Scenario(
            name="overload",
            app="bench.apps.slow_100ms:app",
            summary=f"the 100 ms app under {OVERLOAD_CONNECTIONS} wrk connections, twice the"
            f" {OVERLOAD_LIMIT} requests ferricorn lets in at once (--limit-concurrency"
            f" {OVERLOAD_LIMIT} --limit-queue 0: the rest get 503 at once); uvicorn with"
            f" --limit-concurrency {OVERLOAD_LIMIT} (counts connections), Granian has no such"
            " limit (defaults); responses counted by status (bench/lua/count_status.lua)",
            kind="overload",
            connections=OVERLOAD_CONNECTIONS,
            lua="count_status.lua",
            check=expect_body(b"Hello, world!"),
            server_args={
                "ferricorn": ("--limit-concurrency", str(OVERLOAD_LIMIT), "--limit-queue", "0"),
                "uvicorn": ("--limit-concurrency", str(OVERLOAD_LIMIT)),
            },
        ),
    ]
}


# The kinds measured with loadgen (bench/loadgen.rs), which needs building and many descriptors.
LOADGEN_KINDS = frozenset({"sse", "llm", "idle", "ws"})


def loadgen_scenario(kind: str, scenarios: list[str]) -> str | None:
    """The (first) selected scenario measured with loadgen mode ``kind``."""
    return next((n for n in scenarios if SCENARIOS[n].kind == kind), None)


def loadgen_scenarios(kind: str, scenarios: list[str]) -> list[str]:
    """All the selected scenarios measured with loadgen mode ``kind``."""
    return [n for n in scenarios if n in SCENARIOS and SCENARIOS[n].kind == kind]
