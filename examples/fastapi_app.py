"""A FastAPI app served unchanged: JSON in, JSON out, and a streamed response.

    pip install fastapi
    ferricorn examples.fastapi_app:app
    curl -X POST http://127.0.0.1:8000/items -H 'content-type: application/json' \\
         -d '{"name": "widget", "price": 2.5}'
"""

import asyncio

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    quantity: int = 1


@app.get("/")
async def root() -> dict:
    return {"message": "Hello, world!"}


@app.post("/items")
async def create_item(item: Item) -> dict:
    return {"name": item.name, "total": item.price * item.quantity}


@app.get("/count")
async def count(to: int = 3) -> StreamingResponse:
    async def numbers():
        for i in range(1, to + 1):
            yield f"{i}\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(numbers(), media_type="text/plain")
