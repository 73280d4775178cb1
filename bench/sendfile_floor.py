"""pathsend-100m with no Python server in the way: the ceiling `sendfile(2)` sets.

Usage (from the repo root, in the bench venv)::

    python bench/sendfile_floor.py --port 8111 &
    wrk -t1 -c4 -d10s --timeout 30 http://127.0.0.1:8111/

A thread per connection reads each request head (any GET) and answers it with the
pathsend-100m file (bench/apps/pathsend_100m.py makes it): a fixed head with its
Content-Length, then the whole file with blocking `sendfile(2)` calls. There is no
parsing, framing or event loop beyond that, so its CPU per request is what the kernel
charges the sender for 100 MiB from the page cache into a loopback socket. A server that
sends the file with `sendfile(2)` cannot spend less; bench/ANALYSIS.md compares
ferricorn's and Granian's CPU per request with it. Stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.apps.pathsend_100m import PATH, SIZE, _ensure_file  # noqa: E402

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
    b"content-length: " + str(SIZE).encode() + b"\r\n\r\n"
)


def serve(conn: socket.socket) -> None:
    try:
        answer(conn)
    except OSError:  # the client left (wrk closes its connections mid-file when it stops)
        pass


def answer(conn: socket.socket) -> None:
    with conn, open(PATH, "rb") as file:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            pending = pending.split(b"\r\n\r\n", 1)[1]
            conn.sendall(HEAD)
            offset = 0
            while offset < SIZE:
                offset += os.sendfile(conn.fileno(), file.fileno(), offset, SIZE - offset)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8111)
    args = parser.parse_args()
    _ensure_file()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    listener = socket.create_server(("127.0.0.1", args.port), backlog=128)
    try:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
