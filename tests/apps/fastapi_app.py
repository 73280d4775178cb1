"""An ordinary FastAPI app, served unchanged."""

from __future__ import annotations

import asyncio
import sys

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "total": item.price * 2, "tags": item.tags}


@app.get("/stream")
async def stream():
    async def numbers():
        for i in range(5):
            yield f"line {i}\n"
            await asyncio.sleep(0.01)

    return StreamingResponse(numbers(), media_type="text/plain")


@app.api_route("/ticks", methods=["GET", "HEAD"])
async def ticks():
    """An endless stream (an event feed): says TICKS-STOPPED on stderr when it is stopped."""
    async def forever():
        try:
            while True:
                yield "tick\n"
                await asyncio.sleep(0.05)
        finally:
            print("TICKS-STOPPED", file=sys.stderr, flush=True)

    return StreamingResponse(forever(), media_type="text/plain")
