"""A Litestar app."""

from litestar import Litestar, get, post


@get("/")
async def index() -> dict:
    return {"hello": "litestar"}


@post("/echo")
async def echo(data: dict) -> dict:
    return data


app = Litestar([index, echo])
