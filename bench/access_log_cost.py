"""What the access log costs per request, in instructions (callgrind), for issue 17's
bound (hello: at most 3% more with the default access line than with --no-access-log).

Instruction counts, not CPU time: on a shared 2-core machine CPU time per request varies
by tens of percent between identical runs, instruction counts by a few. Each variant runs
the server under callgrind twice, for 1,000 and for 4,000 sequential keep-alive requests;
the difference over 3,000 is the per-request count with startup removed.

    python3 bench/access_log_cost.py        # about 3 minutes; valgrind must be installed
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"


def instructions(flags: list[str], requests: int, port: int, out_dir: str) -> int:
    out = f"{out_dir}/callgrind.{port}"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(PYTHON), "-m",
         "ferricorn", "hello:app", "--port", str(port), *flags],
        cwd=REPO / "examples", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise SystemExit("the server did not start under valgrind")
    pending = b""
    for _ in range(requests):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        while b"Hello, world!" not in pending:
            pending += sock.recv(65536)
        pending = pending.split(b"Hello, world!", 1)[1]
    sock.close()
    time.sleep(0.5)  # the access log's writer flushes its last batch
    server.send_signal(signal.SIGINT)
    server.wait()
    text = Path(out).read_text()
    return int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))


def main() -> None:
    port = 9100
    per_request = {}
    with tempfile.TemporaryDirectory() as out_dir:
        for name, flags in (("off", ["--no-access-log"]), ("on", [])):
            short = instructions(flags, 1000, port, out_dir)
            long = instructions(flags, 4000, port + 1, out_dir)
            port += 2
            per_request[name] = (long - short) / 3000
            print(f"access log {name}: {per_request[name]:,.0f} instructions per request")
    print(f"cost of the access log: {per_request['on'] / per_request['off'] - 1:+.1%}")


if __name__ == "__main__":
    sys.exit(main())
