"""A/B of two ferricorn builds in instructions per request, counted by valgrind (callgrind).

    python bench/ab_instructions.py --a /tmp/old/python --b python --scenario hello

On a machine whose speed drifts from one minute to the next (and without hardware counters
for `perf stat`), CPU time cannot resolve a few percent; instruction counts can: they are the
same for the same binary and the same requests, whatever else the machine is doing. Each
build serves `--small` and then `--large` requests (keep-alive, `--connections` clients
taking turns, one request in flight each) under callgrind; the difference of the two totals
divided by the difference of the counts is the cost of one request, start-up and shutdown
cancelled out. Counts the whole server process (engine, bridge, Python, the app).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCENARIOS = {
    "hello": ("bench.apps.hello:app", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
    "echo-4k": ("bench.apps.echo_4k:app",
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n" + b"x" * 4096),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_response(sock: socket.socket, buf: bytes) -> bytes:
    """Reads one Content-Length response; returns what is left over."""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    return rest[length:]


def drive(port: int, request: bytes, count: int, connections: int) -> None:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    bufs = [b""] * connections
    for i in range(count):
        k = i % connections
        socks[k].sendall(request)
        bufs[k] = read_response(socks[k], bufs[k])
    for s in socks:
        s.close()


def instructions(build: str, scenario: str, count: int, connections: int) -> int:
    app, request = SCENARIOS[scenario]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([build, str(BENCH.parent)]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-m", "ferricorn", app, "--port", str(port), "--no-access-log",
             "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr = proc.stderr.read().decode()
                    raise SystemExit(f"server did not start: {stderr}") from None
                time.sleep(0.5)
        drive(port, request, count, connections)
        proc.send_signal(signal.SIGINT)
        proc.wait(300)
        text = out.read_text(errors="replace")
    return int(re.search(r"^summary: (\d+)", text, re.M).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="package directory of build A")
    parser.add_argument("--b", required=True, help="package directory of build B")
    parser.add_argument("--scenario", default="hello", choices=sorted(SCENARIOS))
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    for side, build in (("A", args.a), ("B", args.b)):
        build = str(Path(build).resolve())
        small = instructions(build, args.scenario, args.small, args.connections)
        large = instructions(build, args.scenario, args.large, args.connections)
        per_request = (large - small) / (args.large - args.small)
        print(f"{args.scenario} {side}: {per_request:,.0f} instructions per request "
              f"({small:,} for {args.small}, {large:,} for {args.large})", flush=True)


if __name__ == "__main__":
    main()
