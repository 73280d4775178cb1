"""Scenario "fastapi": a FastAPI JSON endpoint (POST /items) validating a pydantic body.

This is the only scenario with a framework: it shows how much of the server's advantage
survives under a typical application stack (routing, validation, serialization).
"""

from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    """The request body."""

    name: str
    price: float
    quantity: int
    tags: list[str] = []


class Quote(BaseModel):
    """The response body."""

    name: str
    total: float
    tag_count: int


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/items")
async def quote_item(item: Item) -> Quote:
    """Price an item: a little real work on validated input."""
    total = round(item.price * item.quantity, 2)
    return Quote(name=item.name, total=total, tag_count=len(item.tags))
