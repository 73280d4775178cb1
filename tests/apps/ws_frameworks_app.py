"""FastAPI and Starlette WebSocket endpoints, written as their docs show, served unchanged.

    /ws/echo                  FastAPI: accept; echo text until WebSocketDisconnect, then
                              record the close code in DISCONNECTS (GET /disconnects)
    /ws/bytes                 FastAPI: accept; echo bytes reversed until the disconnect
    /ws/json                  FastAPI: receive_json / send_json round trip ({"n": x} -> x*2)
    /ws/endpoint              Starlette WebSocketEndpoint (encoding="json"): greets on
                              connect, echoes each JSON message with a counter
    /ws/items/{item_id}       FastAPI: path parameter (int) and query parameter (q) sent back
    /ws/private               FastAPI: closes with 1008 before accepting unless the
                              x-token header is "secret" (Header + Depends injection)
    /ws/forbidden             FastAPI: websocket.close(code=4403) before accepting (the
                              client sees HTTP 403)
    /ws/raise-exception       FastAPI: raises WebSocketException(4401) before accepting
    /ws/bye                   FastAPI: accept, send "bye", close with 4001 "done"
    /ws/subprotocol           FastAPI: accept with the first offered subprotocol
    /ws/iter                  FastAPI: iter_text() loop, uppercases each message
"""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    Depends,
    FastAPI,
    Header,
    Query,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    status,
)
from starlette.endpoints import WebSocketEndpoint

app = FastAPI()

#: Close codes seen by /ws/echo after the client left.
DISCONNECTS: list[int] = []


@app.get("/disconnects")
async def disconnects():
    return DISCONNECTS


@app.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect as exc:
        DISCONNECTS.append(exc.code)


@app.websocket("/ws/bytes")
async def ws_bytes(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_bytes()
            await websocket.send_bytes(data[::-1])
    except WebSocketDisconnect:
        pass


@app.websocket("/ws/json")
async def ws_json(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"n": data["n"], "double": data["n"] * 2})
    except WebSocketDisconnect:
        pass


@app.websocket_route("/ws/endpoint")
class CounterEndpoint(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, websocket):
        self.count = 0
        await websocket.accept()
        await websocket.send_json({"hello": "starlette"})

    async def on_receive(self, websocket, data):
        self.count += 1
        await websocket.send_json({"count": self.count, "got": data})

    async def on_disconnect(self, websocket, close_code):
        DISCONNECTS.append(close_code)


@app.websocket("/ws/items/{item_id}")
async def ws_item(websocket: WebSocket, item_id: int, q: str | None = None):
    await websocket.accept()
    await websocket.send_json({"item_id": item_id, "q": q, "path": websocket.url.path})
    await websocket.close()


async def require_token(
    websocket: WebSocket, x_token: Annotated[str | None, Header()] = None
) -> str:
    if x_token != "secret":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="bad token")
    return x_token


@app.websocket("/ws/private")
async def ws_private(
    websocket: WebSocket,
    token: Annotated[str, Depends(require_token)],
    user: Annotated[str, Query()] = "anonymous",
):
    await websocket.accept()
    await websocket.send_json({"token": token, "user": user})
    await websocket.receive_text()  # wait for the client to say it is done
    await websocket.close(code=1000)


@app.websocket("/ws/forbidden")
async def ws_forbidden(websocket: WebSocket):
    await websocket.close(code=4403)


@app.websocket("/ws/raise-exception")
async def ws_raise_exception(websocket: WebSocket):
    raise WebSocketException(code=4401, reason="no entry")


@app.websocket("/ws/bye")
async def ws_bye(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("bye")
    await websocket.close(code=4001, reason="done")


@app.websocket("/ws/subprotocol")
async def ws_subprotocol(websocket: WebSocket):
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol=offered[0] if offered else None)
    await websocket.send_json(offered)
    await websocket.close()


@app.websocket("/ws/iter")
async def ws_iter(websocket: WebSocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())
