"""The WSGI scenarios' apps (wsgi-hello, wsgi-10k, wsgi-echo-1m, wsgi-slow-100ms): raw PEP 3333
callables, one per scenario, served as ``bench.apps.wsgi_apps:NAME``.

Like the ASGI apps beside them, they build their responses by hand (no framework), so the
numbers measure the server: its threads, the environ it builds, ``wsgi.input`` and the way it
writes what the app returns. Every response has a Content-Length and a body given as a
one-item list, which every WSGI server can send in one write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]

HELLO = b"Hello, world!"
# wsgi-10k's body: 10 KiB (10,240 bytes); bench/harness/scenarios.py keeps a copy for its check.
BODY_10K = b"0123456789abcdef" * 640
READ_SIZE = 65536  # echo reads wsgi.input in pieces of at most this many bytes
SLOW_DELAY_S = 0.1


def _headers(content_type: str, length: int) -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("Content-Length", str(length))]


# PEP 3333 lets the server change the list it is given, so each response gets a copy.
HELLO_HEADERS = _headers("text/plain", len(HELLO))
BODY_10K_HEADERS = _headers("application/octet-stream", len(BODY_10K))


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """wsgi-hello: 200 with the 13-byte "Hello, world!"."""
    start_response("200 OK", list(HELLO_HEADERS))
    return [HELLO]


def body10k(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """wsgi-10k: 200 with a fixed 10 KiB body."""
    start_response("200 OK", list(BODY_10K_HEADERS))
    return [BODY_10K]


def read_input(environ: dict[str, Any]) -> bytes:
    """The whole request body, read from ``wsgi.input`` in pieces of at most READ_SIZE bytes.

    Reads no more than CONTENT_LENGTH, as PEP 3333 asks (a server may block on a read past
    it); without a CONTENT_LENGTH (a chunked request), reads until b"" only where the server
    says that is safe (``wsgi.input_terminated``), else takes the body as empty.
    """
    stream = environ["wsgi.input"]
    chunks = []
    length = environ.get("CONTENT_LENGTH")
    if length:
        remaining = int(length)
        while remaining > 0:
            chunk = stream.read(min(READ_SIZE, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    elif environ.get("wsgi.input_terminated"):
        while chunk := stream.read(READ_SIZE):
            chunks.append(chunk)
    return b"".join(chunks)


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """wsgi-echo-1m: read the whole request body, then send it back."""
    body = read_input(environ)
    start_response("200 OK", _headers("application/octet-stream", len(body)))
    return [body]


def slow(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """wsgi-slow-100ms: block the thread 100 ms (time.sleep), then "Hello, world!"."""
    time.sleep(SLOW_DELAY_S)
    start_response("200 OK", list(HELLO_HEADERS))
    return [HELLO]
