"""Apps for the log and request-id tests (tests/python/test_access_log.py): ASGI `app`
and WSGI `wsgi_app`, each with the same routes.

- `/hello`: 200, body `hello`, an `ETag: "v1"` header.
- `/id`: 200, the body is the request id the server gave the app (or `none`).
- `/own-id`: 200, the app sets `X-Request-ID: app-chosen` itself.
- `/boom`: the app raises before responding.
- `/bytes/N`: 200 with N bytes of `x`.
- `/slow`: answers after 2 s (for --timeout-request).
"""

from __future__ import annotations

import asyncio
import time


class Boom(RuntimeError):
    pass


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    headers = [(b"content-type", b"text/plain")]
    if path == "/hello":
        body = b"hello"
        headers.append((b"etag", b'"v1"'))
    elif path == "/id":
        body = str(scope["extensions"].get("ferricorn.request_id", "none")).encode()
    elif path == "/own-id":
        body = b"own"
        headers.append((b"x-request-id", b"app-chosen"))
    elif path == "/boom":
        raise Boom("the app failed on purpose")
    elif path == "/slow":
        await asyncio.sleep(2)
        body = b"slow"
    elif path.startswith("/bytes/"):
        body = b"x" * int(path.rsplit("/", 1)[1])
    else:
        body = b"not found"
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "text/plain")]
    if path == "/hello":
        body = b"hello"
        headers.append(("ETag", '"v1"'))
    elif path == "/id":
        body = environ.get("ferricorn.request_id", "none").encode("latin-1")
    elif path == "/own-id":
        body = b"own"
        headers.append(("X-Request-ID", "app-chosen"))
    elif path == "/boom":
        raise Boom("the app failed on purpose")
    elif path == "/slow":
        time.sleep(2)
        body = b"slow"
    elif path.startswith("/bytes/"):
        body = b"x" * int(path.rsplit("/", 1)[1])
    else:
        start_response("404 Not Found", headers)
        return [b"not found"]
    start_response("200 OK", headers)
    return [body]
