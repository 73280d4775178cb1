"""Reports the request scope as JSON; lifespan startup puts values into the state.

Lifespan state after startup: {"name": "scope-app", "shared": []}.

    /mutate   adds state["added"] = True and appends to state["shared"], then reports
    anything else: the scope (bytes as latin-1 text, tuples marked) and the state
"""

from __future__ import annotations

from apps._util import read_body, send_json, serve_lifespan


def _plain(value):
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, tuple):
        return {"tuple": [_plain(v) for v in value]}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(scope, receive, send, {"name": "scope-app", "shared": []})
        return
    await read_body(receive)
    state = scope.get("state")
    if scope["path"] == "/mutate":
        state["added"] = True
        state["shared"].append("item")
    report = {key: _plain(value) for key, value in scope.items() if key != "state"}
    report["state"] = None if state is None else _plain(dict(state))
    report["header_types"] = sorted({f"{type(n).__name__}/{type(v).__name__}"
                                     for n, v in scope["headers"]})
    report["path_type"] = type(scope["path"]).__name__
    await send_json(send, report)
