"""A/B of two ferricorn builds on the same load: CPU per request and requests/s.

    python bench/ab.py --a /tmp/old/python --b python --scenarios hello,echo-4k --runs 6

`--a` and `--b` are directories that hold a `ferricorn` package with its built extension
(`python/` of a checkout after `make build`, or a copy of it). The two builds take turns (A B
B A A B ...), each run a fresh server with one worker under `wrk -t1 -c100` (or, for
`ws-echo`, `loadgen ws` with 100 clients: build it with `cargo build --release --example
loadgen`), so that the machine's drift from one minute to the next falls on both sides
alike. The same build with different flags is an A/B too: `--a python --b python
--b-args "--engine-threads 1"`. Prints each run and the medians; the server's CPU is
user+system time from /proc, divided by the requests (or echoed messages) completed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
#: wrk scenarios: (app, path, lua script or None)
SCENARIOS = {
    "hello": ("bench.apps.hello:app", "/", None),
    "echo-4k": ("bench.apps.echo_4k:app", "/", BENCH / "lua" / "post_4k.lua"),
    "json": ("bench.apps.json_1k:app", "/", None),
    "stream-10": ("bench.apps.stream_10:app", "/", None),
    "stream-10-yield": ("bench.apps.stream_10_yield:app", "/", None),
    "fastapi": ("bench.apps.fastapi_items:app", "/items", BENCH / "lua" / "fastapi_item.lua"),
    "ws-echo": ("bench.apps.ws_echo:app", "/ws", None),
    # With --ferricorn-args "--interface wsgi --wsgi-threads 8".
    "wsgi-hello": ("bench.apps.wsgi_apps:hello", "/", None),
}
LOADGEN = BENCH.parent / "target" / "release" / "examples" / "loadgen"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not listen within 20 s")


def run_once(build: str, scenario: str, duration: int, extra: list[str]) -> tuple[float, float]:
    """One run: (requests/s, server CPU microseconds per request)."""
    app, path, lua = SCENARIOS[scenario]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([build, str(BENCH.parent)]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferricorn", app, "--port", str(port), "--no-access-log",
         "--log-level", "warning", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        if scenario == "ws-echo":
            def load(seconds: int) -> str:
                return subprocess.run(
                    [str(LOADGEN), "ws", "--port", str(port), "--path", path, "--clients",
                     "100", "--hold", str(seconds), "--size", "32"],
                    capture_output=True, text=True).stdout
        else:
            url = f"http://127.0.0.1:{port}{path}"
            script = ["-s", str(lua)] if lua else []

            def load(seconds: int) -> str:
                return subprocess.run(["wrk", "-t1", "-c100", f"-d{seconds}s", *script, url],
                                      capture_output=True, text=True).stdout
        load(1)
        before = cpu_seconds(proc.pid)
        out = load(duration)
        used = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(15)
    if scenario == "ws-echo":
        result = json.loads(out.strip().splitlines()[-1])
        requests, rate = result["messages"], result["messages_per_s"]
    else:
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rate, used / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="package directory of build A")
    parser.add_argument("--b", required=True, help="package directory of build B")
    parser.add_argument("--scenarios", default="hello")
    parser.add_argument("--runs", type=int, default=6, help="runs per build and scenario")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--ferricorn-args", default="", help="extra flags for both builds")
    parser.add_argument("--a-args", default="", help="extra flags for build A only")
    parser.add_argument("--b-args", default="", help="extra flags for build B only")
    args = parser.parse_args()
    builds = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    extra = {
        "A": args.ferricorn_args.split() + args.a_args.split(),
        "B": args.ferricorn_args.split() + args.b_args.split(),
    }
    for scenario in args.scenarios.split(","):
        results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for i in range(args.runs):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                rate, cpu = run_once(builds[side], scenario, args.duration, extra[side])
                results[side].append((rate, cpu))
                print(f"{scenario} run {i + 1} {side}: {rate:9.0f} req/s {cpu:6.2f} us/req",
                      flush=True)
        for side in ("A", "B"):
            rates = [r for r, _ in results[side]]
            cpus = [c for _, c in results[side]]
            print(f"{scenario} {side} median: {statistics.median(rates):9.0f} req/s "
                  f"{statistics.median(cpus):6.2f} us/req "
                  f"(cpu {min(cpus):.2f}-{max(cpus):.2f})")


if __name__ == "__main__":
    main()
