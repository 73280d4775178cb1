#!/usr/bin/env python
"""Soak: a long mixed load against ferricorn with several workers, watching for leaks.

    .venv/bin/python tests/soak/soak.py                    # 1,000,000 requests, --workers 2
    .venv/bin/python tests/soak/soak.py --requests 50000 --json /tmp/soak.json
    .venv/bin/python tests/soak/soak.py --mix hello=1      # one kind of request alone
    .venv/bin/python tests/soak/soak.py --server uvicorn   # the same load on uvicorn

The load (client processes, each running asyncio connections over raw sockets, HTTP/1.1
keep-alive) is a weighted mix of:

    hello       GET /                                   200 "Hello, world!"
    echo        POST /echo, 0 B to 256 KiB, a quarter chunked     the same bytes back
    stream      GET /stream, 3-10 chunks, awaits between them      every chunk, in order
    sse         GET /sse, 3-10 events (text/event-stream)          every event, in order
    ws          a WebSocket session on a new connection: 1-5 echoed messages (text or
                binary, half the sessions with permessage-deflate), then the close handshake
    cut_body    POST /echo on a new connection declaring up to 200 KiB, part of it sent,
                then the client closes (FIN or RST)
    cut_stream  GET /stream or /sse (200 parts, 2 ms apart) on a new connection, the first
                part read, then the client closes (FIN or RST)

Every second it samples, for the supervisor and for each worker, the RSS (and its anonymous
part) and the open file descriptors (/proc/PID/status, /proc/PID/fd). The figures after the
warm-up (the first --warmup share of the requests, 10%) must not grow by more than
--max-drift (5%): the drift compares the mean of the last tenth of the samples with the mean
of the first tenth after the warm-up; the least-squares slope (bytes per request, KiB per
minute) is reported beside it; fewer than 10 samples after the warm-up is a failure too
(run more requests). File descriptors under load follow the connections open at that moment
and move between workers as the kernel hands connections out, so under load they are checked
summed over the workers, and exactly as the idle count of each process after the load
against the one before it.

After the load it checks that every request got its whole, correct answer or was cut by its
own client (anything else is counted by kind: reset, eof, timeout, status_NNN, bad_body, ...),
that the server's /metrics gauges (in-flight requests, open connections, WebSocket sessions)
are back to 0, that each worker holds as many asyncio tasks and file descriptors as before
the load (the app's /stats route: len(asyncio.all_tasks()), app calls still running, per
route counters), and that the server stops with exit code 0. It prints a summary table,
writes everything (the samples too) to --json, and exits 1 when a check fails.

The app is tests/soak/soak_app.py. The access log is on (the default a user gets) and goes to
the server's output file, which is scanned for errors and counted by status at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOAK_DIR = Path(__file__).resolve().parent
KINDS = ("hello", "echo", "stream", "sse", "ws", "cut_body", "cut_stream")
#: Kinds that end with the client closing on purpose: "cut" is their expected outcome.
CUT_KINDS = ("cut_body", "cut_stream")
DEFAULT_MIX = "hello=40,echo=20,stream=10,sse=8,ws=10,cut_body=6,cut_stream=6"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HELLO = b"Hello, world!"
#: One request may take this long before it counts as a timeout.
REQUEST_TIMEOUT = 30.0


class BadResponse(Exception):
    """The server answered, but not what the request asked for; str(self) is the kind."""


# --- the client side (runs in the client processes) -------------------------------------------


async def _bounded(coro, seconds: float):
    if hasattr(asyncio, "timeout"):  # Python 3.11+
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def _ws_frame(opcode: int, payload: bytes, rng: random.Random, rsv1: bool = False) -> bytes:
    head = bytearray([0x80 | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    key = rng.getrandbits(32).to_bytes(4, "big")
    return bytes(head) + key + _mask(payload, key)


class Client:
    """One client process: `connections` asyncio connections sharing `requests` requests."""

    def __init__(self, index: int, requests: int, port: int, mix: dict[str, int],
                 connections: int, progress, seed: int, ws_deflate: float = 0.5,
                 ws_messages: tuple[int, int] = (1, 5)) -> None:
        self.index = index
        self.ws_deflate = ws_deflate
        self.ws_messages = ws_messages
        self.remaining = requests
        self.port = port
        self.kinds = list(mix)
        self.weights = list(mix.values())
        self.connections = connections
        self.progress = progress
        self.rng = random.Random(seed * 1000 + index)
        self.outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.samples_of_errors: list[str] = []
        self.payload = self.rng.randbytes(1 << 18)
        self.text = bytes(self.rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ")
                          for _ in range(8192))
        self.host = b"127.0.0.1:%d" % port

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    @staticmethod
    def close(writer: asyncio.StreamWriter, reset: bool = False) -> None:
        if reset:
            sock = writer.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
        writer.transport.abort() if reset else writer.close()

    # HTTP/1.1 responses

    @staticmethod
    async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0][9:12])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    @staticmethod
    async def read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
        if b"content-length" in headers:
            return await reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(parts)
                data = await reader.readexactly(size + 2)
                parts.append(data[:-2])
        raise BadResponse("unframed_body")

    async def exchange(self, conn, request: bytes, expect: bytes, status: int = 200) -> None:
        reader, writer = conn
        writer.write(request)
        got, headers = await self.read_head(reader)
        body = await self.read_body(reader, headers)
        if got != status:
            raise BadResponse(f"status_{got}")
        if body != expect:
            raise BadResponse("bad_body")

    def head(self, method: bytes, target: bytes, close: bool, extra: bytes = b"") -> bytes:
        return (method + b" " + target + b" HTTP/1.1\r\nHost: " + self.host + b"\r\n" + extra
                + (b"Connection: close\r\n" if close else b"") + b"\r\n")

    async def hello(self, conn, close: bool) -> str:
        await self.exchange(conn, self.head(b"GET", b"/", close), HELLO)
        return "ok"

    async def echo(self, conn, close: bool) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.05:
            size = 0
        elif pick < 0.60:
            size = rng.randint(1, 1024)
        elif pick < 0.95:
            size = rng.randint(1025, 16384)
        else:
            size = rng.randint(65536, len(self.payload))
        start = rng.randint(0, len(self.payload) - size)
        body = self.payload[start:start + size]
        if size and rng.random() < 0.25:
            cuts = sorted(rng.sample(range(1, size), min(3, size - 1))) if size > 1 else []
            pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [size], strict=True)]
            wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            request = self.head(b"POST", b"/echo", close, b"Transfer-Encoding: chunked\r\n")
        else:
            wire = body
            request = self.head(b"POST", b"/echo", close, b"Content-Length: %d\r\n" % size)
        await self.exchange(conn, request + wire, body)
        return "ok"

    def _stream_target(self, route: bytes) -> tuple[bytes, bytes]:
        n = self.rng.randint(3, 10)
        delay = self.rng.choice((b"0", b"0", b"0.001"))
        if route == b"/stream":
            expect = b"".join(b"chunk-%04d\n" % i for i in range(n))
        else:
            expect = b"".join(b"data: token-%d\n\n" % i for i in range(n))
        return route + b"?n=%d&delay=%s" % (n, delay), expect

    async def stream(self, conn, close: bool) -> str:
        target, expect = self._stream_target(b"/stream")
        await self.exchange(conn, self.head(b"GET", target, close), expect)
        return "ok"

    async def sse(self, conn, close: bool) -> str:
        target, expect = self._stream_target(b"/sse")
        await self.exchange(conn, self.head(b"GET", target, close), expect)
        return "ok"

    # Kinds on a connection of their own

    async def ws(self) -> str:
        rng = self.rng
        reader, writer = await self.open()
        try:
            key = base64.b64encode(rng.randbytes(16))
            deflate = rng.random() < self.ws_deflate
            extra = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
                     + b"\r\nSec-WebSocket-Version: 13\r\n")
            if deflate:
                extra += b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            writer.write(self.head(b"GET", b"/ws", False, extra))
            status, headers = await self.read_head(reader)
            if status != 101:
                raise BadResponse(f"ws_status_{status}")
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            if headers.get(b"sec-websocket-accept") != accept:
                raise BadResponse("ws_bad_accept")
            ext = headers.get(b"sec-websocket-extensions", b"").lower()
            compressed = b"permessage-deflate" in ext
            if deflate != compressed and not deflate:
                raise BadResponse("ws_unasked_deflate")
            wbits = 15
            match = re.search(rb"client_max_window_bits=(\d+)", ext)
            if match:
                wbits = int(match.group(1))
            server_reset = b"server_no_context_takeover" in ext
            inflater = zlib.decompressobj(wbits=-15)
            for _ in range(rng.randint(*self.ws_messages)):
                size = rng.randint(1, 4096)
                binary = rng.random() < 0.5
                if binary:
                    start = rng.randint(0, len(self.payload) - size)
                    message = self.payload[start:start + size]
                else:
                    start = rng.randint(0, len(self.text) - size)
                    message = self.text[start:start + size]
                opcode = 2 if binary else 1
                if compressed:
                    compressor = zlib.compressobj(wbits=-max(wbits, 9))
                    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
                    writer.write(_ws_frame(opcode, data[:-4], rng, rsv1=True))
                else:
                    writer.write(_ws_frame(opcode, message, rng))
                got_opcode, got, was_compressed = await self.ws_message(reader, writer, rng)
                if was_compressed:
                    if not compressed:
                        raise BadResponse("ws_rsv1_without_deflate")
                    if server_reset:
                        inflater = zlib.decompressobj(wbits=-15)
                    got = inflater.decompress(got + b"\x00\x00\xff\xff")
                if got_opcode != opcode or got != message:
                    raise BadResponse("ws_bad_echo")
            writer.write(_ws_frame(8, struct.pack("!H", 1000), rng))
            got_opcode, got, _ = await self.ws_message(reader, writer, rng)
            if got_opcode != 8 or got[:2] != struct.pack("!H", 1000):
                raise BadResponse("ws_bad_close")
            if await reader.read(1) != b"":
                raise BadResponse("ws_data_after_close")
            return "ok"
        finally:
            self.close(writer)

    async def ws_message(self, reader, writer, rng) -> tuple[int, bytes, bool]:
        """The next data or close message (pings answered, fragments joined)."""
        parts: list[bytes] = []
        opcode = None
        rsv1 = False
        while True:
            b0, b1 = await reader.readexactly(2)
            if b1 & 0x80:
                raise BadResponse("ws_masked_server_frame")
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
            op = b0 & 0x0F
            if op == 9:
                writer.write(_ws_frame(10, payload, rng))
                continue
            if op == 10:
                continue
            if op == 8:
                return 8, payload, False
            if op != 0:
                opcode, rsv1 = op, bool(b0 & 0x40)
            parts.append(payload)
            if b0 & 0x80:
                if opcode is None:
                    raise BadResponse("ws_bad_fragments")
                return opcode, b"".join(parts), rsv1

    async def cut_body(self) -> str:
        rng = self.rng
        reader, writer = await self.open()
        reset = rng.random() < 0.5
        try:
            declared = rng.randint(2048, 200 * 1024)
            sent = rng.randint(1, declared - 1)
            writer.write(self.head(b"POST", b"/echo", False,
                                   b"Content-Length: %d\r\n" % declared))
            writer.write(self.payload[:sent])
            await writer.drain()
            if rng.random() < 0.5:
                await asyncio.sleep(rng.uniform(0.001, 0.005))
            return "cut"
        finally:
            self.close(writer, reset)

    async def cut_stream(self) -> str:
        rng = self.rng
        reader, writer = await self.open()
        reset = rng.random() < 0.5
        try:
            route = rng.choice((b"/stream", b"/sse"))
            writer.write(self.head(b"GET", route + b"?n=200&delay=0.002", False))
            status, headers = await self.read_head(reader)
            if status != 200:
                raise BadResponse(f"status_{status}")
            first = b"chunk-0000\n" if route == b"/stream" else b"data: token-0\n\n"
            seen = await reader.readuntil(first)
            if not seen.endswith(first):
                raise BadResponse("bad_body")
            return "cut"
        finally:
            self.close(writer, reset)

    # The loop of one connection

    @staticmethod
    def classify(exc: BaseException) -> str:
        if isinstance(exc, BadResponse):
            return str(exc)
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return "timeout"
        if isinstance(exc, asyncio.IncompleteReadError):
            return "eof"
        if isinstance(exc, ConnectionRefusedError):
            return "refused"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return "reset"
        if isinstance(exc, asyncio.LimitOverrunError):
            return "oversized_head"
        if isinstance(exc, OSError):
            return f"oserror_{exc.errno}"
        return type(exc).__name__

    async def connection(self) -> None:
        keep = {"hello": self.hello, "echo": self.echo, "stream": self.stream, "sse": self.sse}
        own = {"ws": self.ws, "cut_body": self.cut_body, "cut_stream": self.cut_stream}
        conn = None
        rng = self.rng
        while self.remaining > 0:
            self.remaining -= 1
            kind = rng.choices(self.kinds, self.weights)[0]
            try:
                if kind in keep:
                    if conn is None:
                        conn = await _bounded(self.open(), REQUEST_TIMEOUT)
                    close = rng.random() < 0.02
                    outcome = await _bounded(keep[kind](conn, close), REQUEST_TIMEOUT)
                    if close:
                        reader, writer = conn
                        conn = None
                        if await _bounded(reader.read(1), REQUEST_TIMEOUT) != b"":
                            raise BadResponse("data_after_close")
                        self.close(writer)
                else:
                    outcome = await _bounded(own[kind](), REQUEST_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - every failure is counted by its kind
                outcome = self.classify(exc)
                if len(self.samples_of_errors) < 20:
                    self.samples_of_errors.append(f"{kind}: {outcome}: {exc!r}")
                if conn is not None:
                    self.close(conn[1])
                    conn = None
            self.outcomes[kind][outcome] += 1
            self.progress.value += 1
        if conn is not None:
            self.close(conn[1])

    async def run(self) -> None:
        await asyncio.gather(*(self.connection() for _ in range(self.connections)))


def client_process(index: int, requests: int, port: int, mix: dict[str, int],
                   connections: int, progress, seed: int, results, ws_deflate: float,
                   ws_messages: tuple[int, int]) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    client = Client(index, requests, port, mix, connections, progress, seed, ws_deflate,
                    ws_messages)
    asyncio.run(client.run())
    results.put({"index": index,
                 "outcomes": {k: dict(v) for k, v in client.outcomes.items()},
                 "errors": client.samples_of_errors})


# --- processes and /proc ----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> dict | None:
    """RSS and its anonymous part (bytes), open fds and CPU seconds of one process."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            status = fh.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    kib = dict(re.findall(r"^(VmRSS|RssAnon):\s+(\d+) kB", status, re.M))
    return {"rss": int(kib.get("VmRSS", 0)) * 1024, "anon": int(kib.get("RssAnon", 0)) * 1024,
            "fds": fds, "cpu": (int(fields[11]) + int(fields[12])) / TICK}


class Sampler(threading.Thread):
    """Every `interval` seconds: requests completed so far, and each process's usage."""

    def __init__(self, supervisor: int, supervised: bool, interval: float,
                 progress_values, ignore: set[int] = frozenset()) -> None:
        super().__init__(daemon=True)
        self.supervisor = supervisor
        self.supervised = supervised
        self.ignore = ignore  # children that are not workers
        self.interval = interval
        self.progress_values = progress_values
        self.samples: list[dict] = []
        self.worker_sets: list[list[int]] = []
        self.stopped = threading.Event()
        self.t0 = time.monotonic()

    def completed(self) -> int:
        return sum(v.value for v in self.progress_values)

    def sample(self) -> dict:
        workers = [p for p in children(self.supervisor) if p not in self.ignore] \
            if self.supervised else [self.supervisor]
        if not self.worker_sets or self.worker_sets[-1] != workers:
            self.worker_sets.append(workers)
        procs = {}
        roles = [("supervisor", self.supervisor)] if self.supervised else []
        for role, pid in roles + [("worker", p) for p in workers]:
            usage = proc_usage(pid)
            if usage is not None:
                procs[str(pid)] = dict(usage, role=role)
        return {"t": round(time.monotonic() - self.t0, 3), "completed": self.completed(),
                "procs": procs}

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopped.is_set():
            self.samples.append(self.sample())
            next_at += self.interval
            self.stopped.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


# --- talking to the server --------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head[9:12])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, body


def worker_stats(port: int, workers: list[int], collect: bool = False,
                 attempts: int = 200, path: str | None = None) -> dict[int, dict]:
    """/stats from every worker (new connections until each pid has answered)."""
    found: dict[int, dict] = {}
    path = path or ("/stats?collect=1" if collect else "/stats")
    for _ in range(attempts):
        status, body = http_get(port, path)
        if status == 200:
            stats = json.loads(body)
            found.setdefault(stats["pid"], stats)
        if set(workers) <= set(found):
            break
    return found


def scrape_metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(args, port: int, metrics_port: int | None) -> list[str]:
    if args.server == "ferricorn":
        cmd = [args.python or str(REPO / ".venv/bin/python"), "-m", "ferricorn",
               "soak_app:app", "--app-dir", str(SOAK_DIR), "--port", str(port),
               "--workers", str(args.workers)]
        if metrics_port:
            cmd += ["--metrics-port", str(metrics_port)]
    else:
        cmd = [args.python or str(REPO / ".venv-bench/bin/python"), "-m", "uvicorn",
               "soak_app:app", "--app-dir", str(SOAK_DIR), "--port", str(port),
               "--workers", str(args.workers)]
    if not args.access_log:
        cmd.append("--no-access-log")
    return cmd + list(args.server_arg)


def software(python: str, server: str) -> dict:
    """The server's version, where its engine was loaded from and when it was built, and
    the repository's commit (the figures belong to that build)."""
    probe = ("import json, os, sys\n"
             f"import {server} as s\n"
             "out = {'version': getattr(s, '__version__', '?'), 'python': sys.version.split()[0]}\n"
             + ("import ferricorn._ferricorn as e\n"
                "out['engine'] = e.__file__\n"
                "out['engine_built'] = os.path.getmtime(e.__file__)\n"
                if server == "ferricorn" else "")
             + "print(json.dumps(out))\n")
    try:
        found = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True,
                                          timeout=30, check=True).stdout)
    except (subprocess.SubprocessError, ValueError, OSError) as exc:
        found = {"error": repr(exc)}
    if "engine_built" in found:
        found["engine_built"] = time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                              time.gmtime(found["engine_built"]))
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        commit = "?"
    found["commit"] = commit
    return found


def wait_serving(proc: subprocess.Popen, port: int, workers: int, log: Path) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()}")
        # Workers are the children that answer (uvicorn's multiprocessing may add a helper
        # process of its own).
        pids = children(proc.pid) if workers > 1 else [proc.pid]
        if len(pids) >= workers:
            try:
                stats = worker_stats(port, pids, attempts=50)
            except OSError:
                stats = {}
            serving = sorted(set(pids) & set(stats))
            if len(serving) == workers:
                return serving
        time.sleep(0.2)
    raise SystemExit(f"server not serving with {workers} workers after 60 s:\n{log.read_text()}")


# --- figures ----------------------------------------------------------------------------------


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def drift_figures(samples: list[dict], warm: int, key, label: str) -> dict:
    """Drift of `key(sample)` over the samples after the warm-up: the mean of the last
    tenth (at least 3 samples) against the mean of the first tenth, and the slopes."""
    after = [s for s in samples if s["completed"] >= warm]
    values = [(s, key(s)) for s in after]
    values = [(s, v) for s, v in values if v is not None]
    if len(values) < 4:
        return {"what": label, "samples": len(values), "drift": None}
    k = max(3, len(values) // 10)
    first = statistics.fmean(v for _, v in values[:k])
    last = statistics.fmean(v for _, v in values[-k:])
    xs_req = [s["completed"] for s, _ in values]
    xs_t = [s["t"] for s, _ in values]
    ys = [v for _, v in values]
    return {
        "what": label, "samples": len(values), "window": k,
        "first": first, "last": last, "min": min(ys), "max": max(ys),
        "drift": (last - first) / first if first else 0.0,
        "per_request": slope(xs_req, ys), "per_minute": slope(xs_t, ys) * 60,
    }


def fmt_bytes(n: float) -> str:
    return f"{n / 1048576:.2f} MiB"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


# --- the run ----------------------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise SystemExit(f"--mix: unknown kind {name!r} (kinds: {', '.join(KINDS)})")
        mix[name] = int(weight or 1)
    return mix


def scan_log(path: Path) -> dict:
    statuses: Counter = Counter()
    problems: list[str] = []
    levels: Counter = Counter()
    status_re = re.compile(rb'" (\d{3})( |$)')
    with open(path, "rb") as fh:
        for line in fh:
            m = status_re.search(line)
            if m and b"HTTP/" in line:
                statuses[m.group(1).decode()] += 1
                continue
            for level in (b"CRITICAL", b"ERROR", b"WARNING", b"Traceback"):
                if level in line:
                    levels[level.decode()] += 1
                    if len(problems) < 30:
                        problems.append(line.decode("utf-8", "replace").rstrip())
                    break
    return {"access_statuses": dict(statuses), "levels": dict(levels), "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"kind=weight,... ({DEFAULT_MIX})")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent connections per client process (32)")
    parser.add_argument("--server", choices=("ferricorn", "uvicorn"), default="ferricorn")
    parser.add_argument("--python", help="the server's interpreter (.venv, or .venv-bench "
                        "for uvicorn)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="one more argument for the server command (repeatable)")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument("--warmup", type=float, default=0.10,
                        help="share of the requests before the drift is measured (0.10)")
    parser.add_argument("--max-drift", type=float, default=0.05)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ws-deflate", type=float, default=0.5,
                        help="share of the WebSocket sessions that offer permessage-deflate")
    parser.add_argument("--ws-messages", type=lambda t: tuple(int(x) for x in t.split("-")),
                        default=(1, 5), help="messages per WebSocket session, MIN-MAX (1-5)")
    parser.add_argument("--json", type=Path, help="write every figure and sample here")
    parser.add_argument("--log", type=Path, help="the server's output (default: a temporary "
                        "file, removed when every check passed)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="run tracemalloc in the workers; the top allocation sites go "
                        "into the JSON")
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)

    port = free_port()
    metrics_port = free_port() if args.server == "ferricorn" else None
    cmd = server_command(args, port, metrics_port)
    log = args.log or Path(tempfile.mkstemp(prefix="soak-server-", suffix=".log")[1])
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
    env = {k: v for k, v in env.items() if not k.startswith("FERRICORN_")}
    if args.tracemalloc:
        env["SOAK_TRACEMALLOC"] = "1"
    print("server:", " ".join(cmd), flush=True)
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env)
    report: dict = {"command": " ".join([sys.executable] + sys.argv), "server_command": cmd,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "software": software(cmd[0], args.server),
                    "settings": {k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in vars(args).items()},
                    "mix": mix, "log": str(log)}
    checks: list[tuple[str, bool, str]] = []
    try:
        workers = wait_serving(server, port, args.workers, log)
        time.sleep(1.0)
        before_stats = worker_stats(port, workers, collect=True)
        time.sleep(0.5)
        before = {str(p): proc_usage(p) for p in {server.pid, *workers}}
        report["before"] = {"usage": before, "stats": before_stats}

        ctx = mp.get_context("spawn")
        progress = [ctx.RawValue("q", 0) for _ in range(args.clients)]
        results = ctx.Queue()
        share = [args.requests // args.clients + (1 if i < args.requests % args.clients else 0)
                 for i in range(args.clients)]
        procs = [ctx.Process(target=client_process,
                             args=(i, share[i], port, mix, args.connections, progress[i],
                                   args.seed, results, args.ws_deflate, args.ws_messages),
                             daemon=True)
                 for i in range(args.clients)]
        helpers = set(children(server.pid)) - set(workers) if args.workers > 1 else set()
        sampler = Sampler(server.pid, args.workers > 1, args.interval, progress, helpers)
        started = time.monotonic()
        for p in procs:
            p.start()
        sampler.start()
        last_print = 0.0
        outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
        error_samples: list[str] = []
        got = 0
        while got < len(procs):
            try:
                result = results.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty
                result = None
            if result is not None:
                got += 1
                for kind, counts in result["outcomes"].items():
                    outcomes[kind].update(counts)
                error_samples += result["errors"]
            now = time.monotonic()
            if now - last_print >= 10:
                last_print = now
                done = sampler.completed()
                sample = sampler.samples[-1] if sampler.samples else None
                rss = (sum(v["rss"] for v in sample["procs"].values() if v["role"] == "worker")
                       if sample else 0)
                print(f"  {now - started:6.0f} s  {done:>9,} requests  "
                      f"{done / max(now - started, 1e-9):8,.0f}/s  workers' RSS "
                      f"{fmt_bytes(rss)}", flush=True)
            if result is None and all(not p.is_alive() for p in procs) and results.empty():
                break
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode} during the load")
        for p in procs:
            p.join(10)
        elapsed = time.monotonic() - started
        sampler.stop()
        samples = sampler.samples
        total_done = sampler.completed()

        # After the load: gauges, tasks, fds back where they were.
        time.sleep(2.5)  # worker gauges are copied on each 1 s heartbeat
        after_stats = worker_stats(port, workers, collect=True)
        metrics = {}
        if metrics_port:
            deadline = time.monotonic() + 10
            while True:
                metrics = scrape_metrics(metrics_port)
                idle = all(metrics.get(g) == 0 for g in (
                    "ferricorn_http_requests_in_flight", "ferricorn_connections_open",
                    "ferricorn_websocket_sessions_open"))
                if idle or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        time.sleep(0.5)
        after = {str(p): proc_usage(p) for p in {server.pid, *workers}}
        if args.tracemalloc:
            report["tracemalloc"] = {
                str(pid): {"traced": st.get("traced"), "top": st.get("top")}
                for pid, st in worker_stats(port, workers, path="/stats?collect=1&top=25").items()}
        worker_sets = sampler.worker_sets
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
            code = f"killed after 60 s (no exit on SIGTERM): {code}"
    log_scan = scan_log(log)

    # --- checks and figures
    expected = {k: ("cut" if k in CUT_KINDS else "ok") for k in KINDS}
    errors: Counter = Counter()
    for kind, counts in outcomes.items():
        for outcome, n in counts.items():
            if outcome != expected[kind]:
                errors[f"{kind}:{outcome}"] += n
    answered = sum(sum(c.values()) for c in outcomes.values())
    checks.append(("every request answered or cut by its client", not errors and
                   answered == args.requests,
                   f"{answered:,} of {args.requests:,} ran; errors: {dict(errors) or 'none'}"))
    checks.append(("same worker processes throughout", len(worker_sets) == 1,
                   f"{worker_sets}"))

    warm = int(args.requests * args.warmup)
    drifts = []

    def total(field: str):
        return lambda s: sum(v[field] for v in s["procs"].values() if v["role"] == "worker")

    def one(pid: str, field: str):
        return lambda s: s["procs"][pid][field] if pid in s["procs"] else None

    roles = {str(server.pid): "supervisor"} if args.workers > 1 else {}
    roles.update({str(p): f"worker {i + 1}" for i, p in enumerate(workers)})
    for field in ("rss", "anon", "fds"):
        drifts.append(dict(drift_figures(samples, warm, total(field), f"workers {field}"),
                           field=field, pid="workers"))
        for pid, role in roles.items():
            drifts.append(dict(drift_figures(samples, warm, one(pid, field), f"{role} {field}"),
                               field=field, pid=pid))
    measured = drifts[0].get("samples", 0)
    checks.append(("drift measured (10 samples or more after the warm-up)", measured >= 10,
                   f"{measured} samples (too few: run more requests)" if measured < 10
                   else f"{measured} samples"))
    for d in drifts:
        # Growth is what a leak does; fewer fds or bytes late in the run (the load's own
        # concurrency varies, an allocator gives memory back) is no failure.
        # Connections move between the workers as the kernel hands them out, so fds under
        # load are checked summed over the workers (each worker's figures are still shown).
        per_worker_fds = d["field"] == "fds" and d["pid"] not in ("workers", str(server.pid))
        if d["field"] in ("rss", "fds") and d.get("drift") is not None and not per_worker_fds:
            checks.append((f"{d['what']} grew less than {args.max_drift:.0%}",
                           d["drift"] < args.max_drift, f"{d['drift']:+.2%}"))
    for pid, role in roles.items():
        b, a = before.get(pid), after.get(pid)
        if b and a:
            checks.append((f"{role}: idle fds after the load = before", a["fds"] == b["fds"],
                           f"{b['fds']} -> {a['fds']}"))
    for pid in workers:
        b, a = before_stats.get(pid), after_stats.get(pid)
        if not (b and a):
            checks.append((f"worker {pid} answered /stats", False, "no answer"))
            continue
        checks.append((f"worker {pid}: asyncio tasks after = before", a["tasks"] == b["tasks"],
                       f"{b['tasks']} -> {a['tasks']}"))
        checks.append((f"worker {pid}: no app call left running", a["active"] == 1,
                       f"{a['active'] - 1} running besides /stats"))
        unended = {r: c for r, c in a["counters"].items() if r != "stats" and
                   c["started"] != c["finished"] + c["client_gone"] + c["failed"]}
        failed = {r: c["failed"] for r, c in a["counters"].items() if c["failed"]}
        checks.append((f"worker {pid}: every app call ended, none failed",
                       not unended and not failed, f"unended {unended}, failed {failed}"))
    if metrics_port:
        for gauge in ("ferricorn_http_requests_in_flight", "ferricorn_connections_open",
                      "ferricorn_websocket_sessions_open"):
            checks.append((f"{gauge} back to 0", metrics.get(gauge) == 0,
                           str(metrics.get(gauge))))
    checks.append(("server exit code 0 on SIGTERM", code == 0, str(code)))
    log_errors = {k: v for k, v in log_scan["levels"].items() if k != "WARNING"}
    checks.append(("no error or traceback in the server's output", not log_errors,
                   f"{log_scan['levels']}"))

    report.update({
        "requests": args.requests, "completed": total_done, "elapsed": elapsed,
        "rate": total_done / elapsed if elapsed else 0,
        "outcomes": {k: dict(v) for k, v in outcomes.items()}, "errors": dict(errors),
        "error_samples": error_samples, "workers": workers, "worker_sets": worker_sets,
        "after": {"usage": after, "stats": after_stats}, "metrics": metrics,
        "exit_code": code, "server_log": log_scan, "drift": drifts,
        "warmup_requests": warm,
        "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in checks],
        "samples": samples,
    })

    # --- the summary
    print()
    print(f"{report['date']}; {args.server} {report['software'].get('version')} "
          f"(engine built {report['software'].get('engine_built', '-')}), repository "
          f"{report['software'].get('commit')}")
    print(f"{args.server} --workers {args.workers}: {total_done:,} requests in {elapsed:.1f} s "
          f"({report['rate']:,.0f}/s), {args.clients} client processes x {args.connections} "
          "connections")
    print()
    rows = []
    for kind in KINDS:
        counts = outcomes[kind]
        n = sum(counts.values())
        if not n:
            continue
        bad = {o: c for o, c in counts.items() if o != expected[kind]}
        rows.append([kind, f"{n:,}", f"{counts.get('ok', 0):,}", f"{counts.get('cut', 0):,}",
                     ", ".join(f"{o} {c}" for o, c in bad.items()) or "0"])
    print(table(rows, ["kind", "requests", "answered", "cut by client", "errors"]))
    print()
    rows = []
    for d in drifts:
        if d.get("drift") is None:
            continue
        unit = fmt_bytes if d["field"] != "fds" else (lambda v: f"{v:.1f}")
        per = (f"{d['per_request']:+.2f} B" if d["field"] != "fds"
               else f"{d['per_request'] * 1e6:+.2f}/M")
        per_min = (f"{d['per_minute'] / 1024:+.1f} KiB" if d["field"] != "fds"
                   else f"{d['per_minute']:+.2f}")
        rows.append([d["what"], unit(d["first"]), unit(d["last"]), unit(d["max"]),
                     f"{d['drift']:+.2%}", per, per_min])
    print(f"after the warm-up ({warm:,} requests), {len(samples)} samples every "
          f"{args.interval:g} s:")
    print(table(rows, ["process", "first", "last", "max", "drift", "slope/request",
                       "slope/minute"]))
    print()
    rows = []
    for share in (0.05, 0.10, 0.25, 0.50, 0.75, 1.0):
        sample = next((s for s in samples if s["completed"] >= share * args.requests),
                      samples[-1] if samples else None)
        if sample is None:
            continue
        workers_rss = [v["rss"] for v in sample["procs"].values() if v["role"] == "worker"]
        rows.append([f"{share:.0%}", f"{sample['completed']:,}", f"{sample['t']:.0f} s",
                     fmt_bytes(sum(workers_rss)),
                     " + ".join(f"{r / 1048576:.1f}" for r in workers_rss)])
    report["growth"] = rows
    print("workers' RSS along the run:")
    print(table(rows, ["share", "requests", "time", "workers RSS", "each (MiB)"]))
    print()
    rows = []
    for pid, role in roles.items():
        b, a = before.get(pid) or {}, after.get(pid) or {}
        rows.append([role, pid, fmt_bytes(b.get("rss", 0)), fmt_bytes(a.get("rss", 0)),
                     b.get("fds", "-"), a.get("fds", "-"),
                     before_stats.get(int(pid), {}).get("tasks", "-"),
                     after_stats.get(int(pid), {}).get("tasks", "-")])
    print("idle, before and after the load:")
    print(table(rows, ["process", "pid", "RSS before", "RSS after", "fds before",
                       "fds after", "tasks before", "tasks after"]))
    if metrics:
        print()
        print("metrics after the load: " + ", ".join(
            f"{k.removeprefix('ferricorn_')} {metrics.get(k):g}" for k in (
                "ferricorn_http_requests_in_flight", "ferricorn_connections_open",
                "ferricorn_websocket_sessions_open") if k in metrics))
    print()
    print(f"server output: {log} ({log_scan['access_statuses']} in the access log; "
          f"{log_scan['levels'] or 'no warnings or errors'})")
    for line in log_scan["problems"][:10]:
        print("   ", line)
    for line in error_samples[:10]:
        print("  client error:", line)
    print()
    width = max(len(c) for c, _, _ in checks)
    for check, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {check.ljust(width)}  {detail}")
    passed = all(ok for _, ok, _ in checks)
    report["passed"] = passed
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nJSON: {args.json}")
    if passed and not args.log:
        log.unlink()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
