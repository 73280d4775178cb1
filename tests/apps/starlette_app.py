"""An ordinary Starlette app with a lifespan, served unchanged."""

from __future__ import annotations

import contextlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"model": "tiny-model-v1"}


async def homepage(request: Request):
    return PlainTextResponse("Hello from Starlette")


async def model(request: Request):
    return JSONResponse({"model": request.state.model})


async def echo(request: Request):
    data = await request.json()
    return JSONResponse({"received": data, "path": request.url.path,
                         "query": dict(request.query_params)})


app = Starlette(routes=[
    Route("/", homepage),
    Route("/model", model),
    Route("/echo", echo, methods=["POST"]),
], lifespan=lifespan)
