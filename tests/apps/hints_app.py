"""Early hints (the `http.response.early_hint` extension), for the end-to-end tests.

    /hint?form=F   an early hint with two links, given as F (list, tuple, generator,
                   bytearray, memoryview, str), then waits for the request body before
                   answering: a client sees the 103 while the app is still at work
    /after-start   the start message, then a hint, then the body: the head is still ours
    /after-body    the first body chunk, then a hint (dropped: the head is out), then the end
    /twice         two hints, then the answer
    /many?n=N      N hints (each one link, numbered), then the answer
    /bad?case=C    a malformed hint (missing, single, crlf, int); the error is kept at /errors
    /extensions    the scope's "extensions" keys as JSON
    /errors        what send() raised, as JSON
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

STYLE = b"</style.css>; rel=preload; as=style"
SCRIPT = b"</app.js>; rel=preload; as=script"
ERRORS: list[str] = []

FORMS = {
    "list": lambda: [STYLE, SCRIPT],
    "tuple": lambda: (STYLE, SCRIPT),
    "generator": lambda: (link for link in (STYLE, SCRIPT)),
    "bytearray": lambda: [bytearray(STYLE), bytearray(SCRIPT)],
    "memoryview": lambda: [memoryview(STYLE), memoryview(SCRIPT)],
    "str": lambda: [STYLE.decode(), SCRIPT.decode()],
}

BAD = {
    "missing": {},
    "single": {"links": STYLE},
    "crlf": {"links": [b"</a.css>\r\nx-injected: 1"]},
    "int": {"links": [1]},
}


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"link", STYLE)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/hint":
        await send({"type": "http.response.early_hint", "links": FORMS[query["form"]]()})
        await answer(send, b"got " + await read_body(receive))
    elif path == "/after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.early_hint", "links": [STYLE]})
        await send({"type": "http.response.body", "body": b"late head"})
    elif path == "/after-body":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await send({"type": "http.response.early_hint", "links": [STYLE]})
        await send({"type": "http.response.body", "body": b"last"})
    elif path == "/twice":
        await send({"type": "http.response.early_hint", "links": [STYLE]})
        await send({"type": "http.response.early_hint", "links": [SCRIPT]})
        await answer(send, b"twice")
    elif path == "/many":
        for i in range(int(query["n"])):
            await send({"type": "http.response.early_hint", "links": [f"</{i}.js>; rel=preload"]})
        await answer(send, b"many")
    elif path == "/bad":
        try:
            await send({"type": "http.response.early_hint", **BAD[query["case"]]})
        except RuntimeError as exc:
            ERRORS.append(str(exc))
        await answer(send, b"recorded")
    elif path in ("/extensions", "/errors"):
        data = sorted(scope.get("extensions", {})) if path == "/extensions" else ERRORS
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(data).encode()})
