"""Every form of response message the ASGI spec (www.rst) allows, plus the bytes-like bodies
uvicorn accepts, and apps that break HTTP framing. Each path answers one way:

    /headers/lists        headers as a list of [name, value] lists (the ASGI introduction)
    /headers/tuples       a tuple of (name, value) tuples
    /headers/generator    a generator of pairs
    /headers/mixed        pairs as lists, tuples and a custom two-item iterable
    /headers/bytearray    names and values as bytearray / memoryview
    /headers/triple       a three-item header: refused (500)
    /headers/str          str name and value (ASCII), as uvicorn's h11 protocol takes them
    /headers/non-ascii    a str header value that is not ASCII: refused (500)
    /body/bytearray       the body as a bytearray
    /body/memoryview      the body as a memoryview (of a slice of a larger buffer)
    /body/str             the body as a str: refused (500)
    /body/int             the body as an int: refused (500)
    /length/over-full     Content-Length: 5, then 10 bytes in one message
    /length/over-stream   Content-Length: 5, then 3 + 7 bytes in two messages
    /length/short-full    Content-Length: 100, then 5 bytes in one message
    /length/short-stream  Content-Length: 100, then 5 bytes and an empty final message
    /length/exact-stream  Content-Length: 10, then 5 + 5 bytes and an empty final message
    /length/both          Content-Length and Transfer-Encoding in one head: refused (500)
    /length/bad           Content-Length: "5x": refused (500)
    /status/<code>        an empty response with that status (any int, even an invalid one)
    /last-error           the exception the last /length/* request's send() raised, or "none"

WebSocket paths:

    /ws/forms             accept with list headers (one value a memoryview), send bytes as a
                          bytearray and a memoryview (the other key None), text, then close
                          with 4000 and reason None
    /ws/deny              a 403 denial with list headers and a bytearray body

Lifespan: `app` completes startup and shutdown with bare messages; `silent_failure_app`
fails startup with no `message` key (optional in the spec).
"""

from __future__ import annotations

from apps._util import serve_lifespan

_last_error = ["none"]


class _Pair:
    """A two-item iterable that is neither a list nor a tuple."""

    def __init__(self, name: bytes, value: bytes) -> None:
        self.items = (name, value)

    def __iter__(self):
        return iter(self.items)


def _headers(path: str):
    if path == "/headers/lists":
        return [[b"content-type", b"text/plain"], [b"x-form", b"lists"]]
    if path == "/headers/tuples":
        return ((b"content-type", b"text/plain"), (b"x-form", b"tuples"))
    if path == "/headers/generator":
        return ((name, value) for name, value in [(b"content-type", b"text/plain"),
                                                  (b"x-form", b"generator")])
    if path == "/headers/mixed":
        return [[b"content-type", b"text/plain"], (b"x-a", b"1"), _Pair(b"x-b", b"2")]
    if path == "/headers/bytearray":
        return [[bytearray(b"content-type"), memoryview(b"text/plain")],
                (b"x-form", bytearray(b"bytearray"))]
    if path == "/headers/triple":
        return [[b"content-type", b"text/plain", b"extra"]]
    if path == "/headers/str":
        return [["content-type", "text/plain"], ("x-form", "str")]
    if path == "/headers/non-ascii":
        return [[b"content-type", "text/plain; café"]]
    return [[b"content-type", b"text/plain"]]


_BODIES = {
    "/body/bytearray": lambda: bytearray(b"from a bytearray"),
    "/body/memoryview": lambda: memoryview(b"<<from a memoryview>>")[2:-2],
    "/body/str": lambda: "a str is not bytes",
    "/body/int": lambda: 5,
}


#: /length/* cases: the response head's headers, then the body messages (body, more_body).
_LENGTH_CASES = {
    "over-full": ([[b"content-length", b"5"]], [(b"12345EXTRA", False)]),
    "over-stream": ([[b"content-length", b"5"]],
                    [(b"123", True), (b"45EXTRA", True), (b"", False)]),
    "short-full": ([[b"content-length", b"100"]], [(b"short", False)]),
    "short-stream": ([[b"content-length", b"100"]], [(b"short", True), (b"", False)]),
    "both": ([[b"content-length", b"5"], [b"transfer-encoding", b"chunked"]],
             [(b"12345", False)]),
    "bad": ([[b"content-length", b"5x"]], [(b"12345", False)]),
    "exact-stream": ([[b"content-length", b"10"]],
                     [(b"12345", True), (b"67890", True), (b"", False)]),
}


async def _send_length_case(path: str, send) -> None:
    headers, bodies = _LENGTH_CASES[path.rsplit("/", 1)[1]]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for body, more in bodies:
        await send({"type": "http.response.body", "body": body, "more_body": more})


async def _websocket(scope, receive, send) -> None:
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/ws/deny":
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [[b"content-type", b"text/plain"], [b"x-form", b"lists"]]})
        await send({"type": "websocket.http.response.body", "body": bytearray(b"denied")})
        return
    await send({"type": "websocket.accept", "subprotocol": None,
                "headers": [[b"x-form", b"lists"], (b"x-b", memoryview(b"2"))]})
    await send({"type": "websocket.send", "bytes": bytearray(b"from a bytearray")})
    await send({"type": "websocket.send", "bytes": memoryview(b"from a memoryview"),
                "text": None})
    await send({"type": "websocket.send", "text": "text", "bytes": None})
    await send({"type": "websocket.close", "code": 4000, "reason": None})


async def silent_failure_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed"})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send)
        return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    path = scope["path"]
    if path.startswith("/length/"):
        _last_error[0] = "none"
        try:
            await _send_length_case(path, send)
        except Exception as exc:
            _last_error[0] = f"{type(exc).__name__}: {exc}"
            raise
        return
    if path == "/last-error":
        text = _last_error[0].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [[b"content-length", str(len(text)).encode()]]})
        await send({"type": "http.response.body", "body": text})
        return
    if path.startswith("/status/"):
        await send({"type": "http.response.start", "status": int(path.rsplit("/", 1)[1]),
                    "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _headers(path)})
    make_body = _BODIES.get(path)
    await send({"type": "http.response.body",
                "body": make_body() if make_body else f"form {path}".encode()})
