"""Files sent with the `http.response.pathsend` extension, for the end-to-end tests.

    /send?path=P[&length=N]   200, then pathsend of P (an app-set Content-Length N if given)
    /extensions               the scope's "extensions" keys as JSON
    /starlette?path=P         Starlette's FileResponse for P (which uses pathsend when the
                              server offers it)
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from starlette.responses import FileResponse


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/extensions":
        body = json.dumps(sorted(scope.get("extensions", {}))).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif scope["path"] == "/starlette":
        await FileResponse(query["path"])(scope, receive, send)
    elif scope["path"] == "/send":
        headers = [[b"content-type", b"application/octet-stream"]]
        if "length" in query:
            headers.append([b"content-length", query["length"].encode()])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query["path"]})
