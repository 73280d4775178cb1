"""Small helpers shared by the raw ASGI test apps."""

from __future__ import annotations

import json
from typing import Any


async def serve_lifespan(scope, receive, send, state: dict[str, Any] | None = None) -> None:
    """Answers the lifespan protocol; on startup puts `state` into the lifespan state, when
    the server offers one."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if state and "state" in scope:
                scope["state"].update(state)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive) -> tuple[bytes, list[dict[str, Any]]]:
    """The whole request body and a summary of each http.request message."""
    body = b""
    messages = []
    while True:
        message = await receive()
        messages.append({"type": message["type"],
                         "size": len(message.get("body", b"")),
                         "more_body": message.get("more_body", False)})
        if message["type"] != "http.request":
            return body, messages
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body, messages


async def send_response(send, status: int, body: bytes = b"",
                        headers: list[tuple[bytes, bytes]] | None = None,
                        content_type: bytes = b"text/plain") -> None:
    all_headers = [(b"content-type", content_type)] + list(headers or [])
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, value: Any, status: int = 200) -> None:
    await send_response(send, status, json.dumps(value).encode(), content_type=b"application/json")
