"""A raw PEP 3333 (WSGI) app for tests/python/test_wsgi.py, plus two callables of other kinds
for the interface detection tests.

`app(environ, start_response)` routes on PATH_INFO (query parameters from QUERY_STRING):

    /hello            [b"hello"] (a list of one, no Content-Length from the app)
    /echo             the request body (wsgi.input.read()), Content-Length set by the app;
                      x-env-content-length / x-env-content-type: those environ keys or "absent"
    /input            JSON {"parts": [...], "types": [...], "seconds"}: what wsgi.input
                      returned, read per `mode`: read | read_minus_one (read(-1) twice) |
                      read_n (read(n) until b"") | readline | readline_n (readline(n) until
                      b"") | readlines | iter | after_end (read() then read(), read(10),
                      readline(), readlines() past the end) | read_twice (read(n) twice);
                      parts as latin-1 text
    /hash             reads wsgi.input with read(65536) until b""; JSON sha256, size, max_read
    /write            start_response's write(b"w1"), write(b"w2"), then returns [b"i1", b"i2"]
    /list             `n` parts b"part<i>;" returned as kind=list|tuple|gen (no Content-Length)
    /empty            returns []
    /slow-gen         generator: b"first", sleeps `s` seconds, b"second"
    /declared         Content-Length `cl` declared by the app, `body` yielded by a generator
    /tracked          an iterable whose close() records [tag, "closed"] in EVENTS; mode=ok
                      (three chunks), error (one chunk then RuntimeError), endless (64 KiB
                      chunks every 10 ms until closed, 30 s at most)
    /produce          generator of `n` (default 200) chunks of 1 MiB; PRODUCED[tag] counts them
    /produced         JSON: PRODUCED[tag]
    /file             wsgi.file_wrapper(open(path, "rb"), 8192), Content-Length when cl=1; the
                      file object kept in OPEN_FILES[tag]; skip=N reads N bytes first (the
                      rest is sent); memory=1 wraps a BytesIO of the file instead
    /file-closed      JSON {"closed": OPEN_FILES[tag].closed}
    /sleep            prints "WSGI-SLEEP-STARTED <tag>", time.sleep(s), answers JSON with the
                      thread name and the most requests seen in /sleep at once
    /errors           writes "WSGI-ERRORS-WRITE <tag>", two "WSGI-ERRORS-LINES <tag> ..." lines
                      and "WSGI-ERRORS-UNICODE <tag> caf\u00e9 \u2713" to wsgi.errors, flushes,
                      answers b"ok"
    /raise-before     raises RuntimeError("boom-before-start <tag>") before start_response
    /raise-after-start  start_response, then raises before returning an iterable
    /gen-raise-before-body  generator: start_response, yields b"", then raises
    /start-twice      start_response twice without exc_info
    /exc-info-replace start_response 200 (x-first: 1), then in an except block start_response
                      "500 Oops" with sys.exc_info(); returns [b"oops"]
    /exc-info-after-body  generator: b"first part", then start_response with exc_info; records
                      [tag, "reraised-same"] if start_response raised the original exception
    /status-bad       start_response("200 \u2713", ...)
    /header-bad       a header value "\u2713"
    /hop              start_response with the header `name`: `value`
    /events           JSON: EVENTS
    anything else     JSON report of the environ: {"environ": {key: {"type", "value" | "callable",
                      "methods"}}, "environ_is_dict", "thread", "body"}

`PepAppClass` is the PEP's class-as-application (called per request, the instance is the
iterable that calls start_response on its first iteration). `App2` is an ASGI 2 app (a class
taking the scope, whose instance takes receive and send).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

from apps._util import read_body, send_response, serve_lifespan

#: [tag, what] pairs the app records (served by /events).
EVENTS: list[list[str]] = []
#: 1 MiB chunks produced so far by /produce, by tag.
PRODUCED: dict[str, int] = {}
#: The files /file opened, by tag.
OPEN_FILES: dict[str, object] = {}

_lock = threading.Lock()
_sleeping = 0
_max_sleeping = 0

_STREAM_METHODS = {
    "wsgi.input": ("read", "readline", "readlines", "__iter__"),
    "wsgi.errors": ("write", "writelines", "flush"),
}


def _event(tag: str, what: str) -> None:
    with _lock:
        EVENTS.append([tag, what])


def _query(environ) -> dict[str, str]:
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _respond(start_response, body: bytes, status: str = "200 OK",
             content_type: str = "text/plain"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, value, status: str = "200 OK"):
    return _respond(start_response, json.dumps(value).encode(), status, "application/json")


def _describe(environ) -> dict:
    report = {}
    for key, value in environ.items():
        entry: dict = {"type": type(value).__name__}
        if value is None or isinstance(value, (str, bool, int, float)):
            entry["value"] = value
        elif isinstance(value, tuple) and all(isinstance(v, (str, int, float)) for v in value):
            entry["value"] = list(value)
        else:
            entry["callable"] = callable(value)
            if key in _STREAM_METHODS:
                entry["methods"] = [name for name in _STREAM_METHODS[key]
                                    if callable(getattr(value, name, None))]
        report[key] = entry
    return report


# --- wsgi.input ---------------------------------------------------------------------------


def _read_input(stream, mode: str, n: int) -> list[bytes]:
    parts: list[bytes] = []
    if mode == "read":
        parts.append(stream.read())
    elif mode == "read_minus_one":
        parts.extend([stream.read(-1), stream.read(-1)])
    elif mode in ("read_n", "readline", "readline_n"):
        for _ in range(100_000):  # a stream that never says b"" must not hang the test
            if mode == "read_n":
                part = stream.read(n)
            elif mode == "readline":
                part = stream.readline()
            else:
                part = stream.readline(n)
            parts.append(part)
            if not part:
                break
    elif mode == "readlines":
        parts.extend(stream.readlines())
    elif mode == "iter":
        parts.extend(stream)
    elif mode == "after_end":
        parts.append(stream.read())
        parts.extend([stream.read(), stream.read(10), stream.readline()])
        parts.extend(stream.readlines())
    elif mode == "read_twice":
        parts.extend([stream.read(n), stream.read(n)])
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return parts


def _input_route(environ, start_response, q):
    started = time.monotonic()
    parts = _read_input(environ["wsgi.input"], q.get("mode", "read"), int(q.get("n") or 0))
    return _json(start_response, {
        "parts": [p.decode("latin-1") if isinstance(p, bytes) else repr(p) for p in parts],
        "types": sorted({type(p).__name__ for p in parts}),
        "seconds": time.monotonic() - started,
    })


def _hash_route(environ, start_response):
    digest = hashlib.sha256()
    size = max_read = reads = 0
    stream = environ["wsgi.input"]
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        reads += 1
        max_read = max(max_read, len(chunk))
    return _json(start_response, {"sha256": digest.hexdigest(), "size": size,
                                  "max_read": max_read, "reads": reads})


# --- iterables ----------------------------------------------------------------------------


def _parts(n: int):
    for i in range(n):
        yield f"part{i};".encode()


def _slow_gen(seconds: float):
    yield b"first"
    time.sleep(seconds)
    yield b"second"


def _declared(body: bytes):
    yield body


def _gen_raise_before_body(start_response, tag: str):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    raise RuntimeError(f"boom-before-body {tag}")


def _exc_info_after_body(start_response, tag: str):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part"
    try:
        raise KeyError("late failure")
    except KeyError as original:
        try:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        except BaseException as raised:
            _event(tag, "reraised-same" if raised is original
                   else f"raised-other:{type(raised).__name__}")
            raise
        _event(tag, "returned")
    yield b"error body"


def _produce(tag: str, n: int):
    chunk = b"p" * (1024 * 1024)
    for _ in range(n):
        with _lock:
            PRODUCED[tag] = PRODUCED.get(tag, 0) + 1
        yield chunk


class Tracked:
    """An iterable with close(): records [tag, "closed"] when the server closes it."""

    def __init__(self, tag: str, mode: str) -> None:
        self.tag = tag
        self.mode = mode
        self.count = 0
        self.started = time.monotonic()

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        self.count += 1
        if self.mode == "ok":
            if self.count > 3:
                raise StopIteration
            return f"chunk{self.count};".encode()
        if self.mode == "error":
            if self.count == 1:
                return b"partial"
            raise RuntimeError(f"tracked failure {self.tag}")
        # endless
        if time.monotonic() - self.started > 30:
            _event(self.tag, "gave-up")
            raise StopIteration
        time.sleep(0.01)
        return b"x" * 65536

    def close(self) -> None:
        _event(self.tag, "closed")


# --- the app --------------------------------------------------------------------------------


def _sleep_route(environ, start_response, q):
    global _sleeping, _max_sleeping
    tag = q.get("tag", "")
    with _lock:
        _sleeping += 1
        _max_sleeping = max(_max_sleeping, _sleeping)
    print(f"WSGI-SLEEP-STARTED {tag}", flush=True)
    try:
        time.sleep(float(q.get("s", "1")))
    finally:
        with _lock:
            _sleeping -= 1
    return _json(start_response, {"thread": threading.current_thread().name,
                                  "max_active": _max_sleeping, "tag": tag})


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    tag = q.get("tag", "")

    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
            ("X-Env-Content-Length", environ.get("CONTENT_LENGTH", "absent")),
            ("X-Env-Content-Type", environ.get("CONTENT_TYPE", "absent")),
        ])
        return [body]
    if path == "/input":
        return _input_route(environ, start_response, q)
    if path == "/hash":
        return _hash_route(environ, start_response)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w1")
        write(b"w2")
        return [b"i1", b"i2"]
    if path == "/list":
        n = int(q.get("n", "3"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        kind = q.get("kind", "list")
        if kind == "gen":
            return _parts(n)
        parts = list(_parts(n))
        if kind == "iter":  # an iterable that is neither a list nor a generator
            return iter(parts)
        return tuple(parts) if kind == "tuple" else parts
    if path == "/empty":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []
    if path == "/slow-gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _slow_gen(float(q.get("s", "2")))
    if path == "/declared":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", q["cl"])])
        return _declared(q["body"].encode())
    if path == "/tracked":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked(tag, q.get("mode", "ok"))
    if path == "/produce":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _produce(tag, int(q.get("n", "200")))
    if path == "/produced":
        with _lock:
            return _json(start_response, {"produced": PRODUCED.get(tag, 0)})
    if path == "/file":
        file_path = q["path"]
        f = open(file_path, "rb")  # closed by the server, through the wrapper
        skip = int(q.get("skip", "0"))
        if skip:
            f.read(skip)  # the buffered reader reads ahead: the fd is past `skip`
        if q.get("memory") == "1":  # a file-like object with no descriptor
            data = f.read()
            f.close()
            f = io.BytesIO(data)
        OPEN_FILES[tag] = f
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("cl") == "1":
            headers.append(("Content-Length", str(os.path.getsize(file_path) - skip)))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/file-closed":
        return _json(start_response, {"closed": OPEN_FILES[tag].closed})
    if path == "/sleep":
        return _sleep_route(environ, start_response, q)
    if path == "/errors":
        errors = environ["wsgi.errors"]
        errors.write(f"WSGI-ERRORS-WRITE {tag}\n")
        errors.writelines([f"WSGI-ERRORS-LINES {tag} one\n", f"WSGI-ERRORS-LINES {tag} two\n"])
        errors.write(f"WSGI-ERRORS-UNICODE {tag} caf\u00e9 \u2713\n")
        errors.flush()
        return _respond(start_response, b"ok")
    if path == "/raise-before":
        raise RuntimeError(f"boom-before-start {tag}")
    if path == "/raise-after-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError(f"boom-after-start {tag}")
    if path == "/gen-raise-before-body":
        return _gen_raise_before_body(start_response, tag)
    if path == "/start-twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"twice"]
    if path == "/exc-info-replace":
        try:
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
            raise ValueError("changed my mind")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"oops"]
    if path == "/exc-info-after-body":
        return _exc_info_after_body(start_response, tag)
    if path == "/status-bad":
        start_response("200 \u2713", [("Content-Type", "text/plain")])
        return [b"not latin-1"]
    if path == "/header-bad":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Mark", "\u2713")])
        return [b"not latin-1"]
    if path == "/hop":
        start_response("200 OK", [("Content-Type", "text/plain"), (q["name"], q["value"])])
        return [b"hop-by-hop"]
    if path == "/events":
        with _lock:
            return _json(start_response, EVENTS)

    body = environ["wsgi.input"].read()
    return _json(start_response, {
        "environ": _describe(environ),
        "environ_is_dict": type(environ) is dict,
        "thread": threading.current_thread().name,
        "body": body.decode("latin-1"),
    })


class PepAppClass:
    """PEP 3333's class-as-application: calling the class makes the iterable, which calls
    start_response on its first iteration."""

    def __init__(self, environ, start_response) -> None:
        self.environ = environ
        self.start = start_response

    def __iter__(self):
        self.start("200 OK", [("Content-Type", "text/plain")])
        yield b"from a class: " + self.environ["PATH_INFO"].encode("latin-1")


class App2:
    """An ASGI 2 app: the class takes the scope, the instance takes receive and send."""

    def __init__(self, scope) -> None:
        self.scope = scope

    async def __call__(self, receive, send) -> None:
        if self.scope["type"] == "lifespan":
            await serve_lifespan(self.scope, receive, send)
            return
        await read_body(receive)
        await send_response(send, 200, b"asgi2 " + self.scope["path"].encode())
