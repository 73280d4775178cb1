"""A WSGI app for the admission and blocking-point tests (tests/python/test_wsgi_admission.py).

Routes (query parameters in brackets):
    /block [tag, path]  prints "ADM-STARTED <tag>", then waits (polling, at most 60 s) until
                        the file `path` exists, and answers JSON {"tag", "thread",
                        "max_active"}: the most /block requests seen in the app at once
    /read [tag]         prints "ADM-READING <tag>", reads wsgi.input to its end with read()
                        and answers JSON {"tag", "size"}
    /produce [tag, n]   streams n chunks of 1 MiB (a generator), counting them by tag
    /produced [tag]     JSON {"produced": chunks /produce has yielded so far for tag}
    /hello              b"hello"
"""

from __future__ import annotations

import os
import sys
import threading
import time

# /produce and /produced are wsgi_app's, with its count of produced chunks.
from apps.wsgi_app import PRODUCED, _json, _produce, _query
from apps.wsgi_app import _lock as _produced_lock

_lock = threading.Lock()
_active = 0
_max_active = 0


def _say(line: str) -> None:
    """One line to stdout in one write (print() writes the newline apart: lines of two
    threads could run together)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _block(start_response, tag: str, path: str):
    global _active, _max_active
    with _lock:
        _active += 1
        _max_active = max(_max_active, _active)
    _say(f"ADM-STARTED {tag}")
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        with _lock:
            _active -= 1
    return _json(start_response, {"tag": tag, "thread": threading.current_thread().name,
                                  "max_active": _max_active})


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    tag = q.get("tag", "")
    if path == "/block":
        return _block(start_response, tag, q["path"])
    if path == "/read":
        _say(f"ADM-READING {tag}")
        body = environ["wsgi.input"].read()
        return _json(start_response, {"tag": tag, "size": len(body)})
    if path == "/produce":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _produce(tag, int(q.get("n", "200")))
    if path == "/produced":
        with _produced_lock:
            return _json(start_response, {"produced": PRODUCED.get(tag, 0)})
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
