"""Apps that fail in the ways the error tests need.

    /raise-before      raises before sending anything
    /raise-streaming   starts a streamed response, sends one chunk, then raises
    /no-response       returns without sending anything
    /bad/<kind>        sends a malformed message (kinds in BAD_MESSAGES); the RuntimeError
                       the server raises is stored in LAST_ERROR and re-raised
    /last-error        LAST_ERROR as text
    /ok                "ok"
"""

from __future__ import annotations

import asyncio

from apps._util import send_response

LAST_ERROR = {"text": ""}

START = {"type": "http.response.start", "status": 200, "headers": []}

BAD_MESSAGES = {
    "unknown-type": [{"type": "http.response.bogus", "status": 200}],
    "missing-status": [{"type": "http.response.start", "headers": []}],
    "str-body": [START, {"type": "http.response.body", "body": "not bytes"}],
    "header-crlf": [{"type": "http.response.start", "status": 200,
                     "headers": [(b"x-evil", b"a\r\nInjected: yes")]}],
    # An ASCII str passes (uvicorn's h11 protocol takes it); an int never does.
    "header-name-int": [{"type": "http.response.start", "status": 200,
                         "headers": [(42, b"value")]}],
    "body-before-start": [{"type": "http.response.body", "body": b"early"}],
}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/raise-before":
        raise ValueError("deliberate failure before the response")
    if path == "/raise-streaming":
        await send(START)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("deliberate failure while streaming")
    if path == "/no-response":
        return
    if path == "/foreign-cancel":  # awaits a future that something else cancelled
        future = asyncio.get_running_loop().create_future()
        future.cancel("cancelled elsewhere, not this request")
        await future
    if path.startswith("/bad/"):
        LAST_ERROR["text"] = ""
        try:
            for message in BAD_MESSAGES[path[len("/bad/"):]]:
                await send(message)
        except RuntimeError as exc:
            LAST_ERROR["text"] = str(exc)
            raise
        return
    if path == "/last-error":
        await send_response(send, 200, LAST_ERROR["text"].encode())
        return
    await send_response(send, 200, b"ok")
