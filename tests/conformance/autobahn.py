"""Runs the Autobahn TestSuite fuzzing-client cases (1.* to 13.*, 517 cases, compression
included) against ferricorn serving an echo app, through `kosoku`, a Python 3 runner of the
Autobahn case files (PyPI).

    python tests/conformance/autobahn.py [--out DIR] [--cases 1.* --cases 12.1.* ...]

Starts `python -m ferricorn apps.ws_app:app` on a free port, runs the cases, writes
`DIR/index.json` (every case's behaviour and close code) and `DIR/summary.md`, prints one
line per failing case and a closing `N passed, M failed` line. Exit code 0 only when every
case passed (OK, NON-STRICT or INFORMATIONAL, as Autobahn counts them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
#: A hung server makes kosoku wait up to 60 s per case; the whole run must stay bounded.
RUN_TIMEOUT = 900.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferricorn", "apps.ws_app:app", "--port", str(port),
         "--log-level", "warning", "--ws-max-size", str(64 * 1024 * 1024)],
        cwd=REPO / "tests", env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"ferricorn exited early:\n{log_path.read_text()}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("ferricorn did not start listening within 20 s")


async def run_cases(url: str, cases: list[str] | None) -> list:
    from kosoku import FailureError, run_fuzzingclient

    try:
        return await run_fuzzingclient(url, cases or None)
    except FailureError as exc:  # raised when any case fails; it carries every result
        return exc.results


def summarize(results: list, out: Path, seconds: float) -> tuple[int, int, list[str]]:
    order = lambda r: [int(p) for p in r.case_id.split(".")]  # noqa: E731
    results = sorted(results, key=order)
    index = {r.case_id: {"behavior": r.behavior.value, "behaviorClose": r.behavior_close.value,
                         "remoteCloseCode": r.remote_close_code, "duration_ms": r.duration}
             for r in results}
    failures = [f"{r.case_id}: behavior={r.behavior.value} close={r.behavior_close.value} "
                f"code={r.remote_close_code}" for r in results
                if r.behavior.value not in PASSING or r.behavior_close.value not in PASSING]
    groups: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    behaviours = collections.Counter(r.behavior.value for r in results)
    for r in results:
        g = groups[r.case_id.split(".")[0]]
        g[0] += 1
        g[1] += r.behavior.value in PASSING and r.behavior_close.value in PASSING
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps({"ferricorn": index}, indent=1) + "\n")
    lines = [
        "# Autobahn TestSuite: ferricorn",
        "",
        "Fuzzing-client cases 1.* to 13.* (kosoku, the Autobahn case files in Python 3) against",
        "`tests/apps/ws_app.py` `/echo`, permessage-deflate on (the server default).",
        f"Regenerate with `make conformance`. Run took {seconds:.0f} s.",
        "",
        "| group | cases | passed |",
        "|---|---:|---:|",
    ]
    for name in sorted(groups, key=int):
        n, ok = groups[name]
        lines.append(f"| {name}.* | {n} | {ok} |")
    lines += ["", "Behaviours: " + ", ".join(f"{k} {v}" for k, v in sorted(behaviours.items())),
              "", f"**{len(results) - len(failures)} passed, {len(failures)} failed**", ""]
    lines += [f"- {f}" for f in failures]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return len(results) - len(failures), len(failures), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "autobahn"))
    parser.add_argument("--cases", action="append", help="case ids or globs (default: all)")
    args = parser.parse_args(argv)
    port = free_port()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc = start_server(port, out / "server.log")
    started = time.monotonic()
    try:
        results = asyncio.run(asyncio.wait_for(
            run_cases(f"ws://127.0.0.1:{port}/echo", args.cases), RUN_TIMEOUT))
    finally:
        proc.terminate()
        proc.wait(10)
    (out / "server.log").unlink(missing_ok=True)
    passed, failed, failures = summarize(results, out, time.monotonic() - started)
    for line in failures:
        print("FAILED", line)
    print(f"autobahn: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
