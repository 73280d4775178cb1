"""llm-sse-1k and llm-sse-5k: an LLM completion endpoint that streams its tokens.

It models what a model server's HTTP front end does per request, minus the model: FastAPI
parses and validates an OpenAI-style ``POST /v1/completions`` body of about 2 KB (a long
prompt, sampling parameters, a stop list, nested options) with pydantic, then answers
``text/event-stream``: one small ``data: {...}`` completion chunk per token, ``max_tokens`` of
them (default 100) 20 ms apart as a decode step would produce them, then ``data: [DONE]``.
The stream is a plain async generator behind starlette's ``StreamingResponse``.

The lifespan stands in for loading the model: it builds the vocabulary the tokens are drawn
from and keeps it on ``app.state`` (no lifespan ``state`` dict, so that every server runs it
the same way).
"""

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

TOKEN_INTERVAL_S = 0.02  # the decode step: the time between two tokens


class StreamOptions(BaseModel):
    include_usage: bool = False


class Metadata(BaseModel):
    user: str
    session: str
    tags: list[str] = Field(default_factory=list)


class CompletionRequest(BaseModel):
    """The request body, as OpenAI's completions API takes it (the fields used here)."""

    model: str
    prompt: str
    max_tokens: int = Field(default=100, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=4)
    stream: bool = True
    stream_options: StreamOptions = Field(default_factory=StreamOptions)
    logit_bias: dict[str, float] = Field(default_factory=dict)
    metadata: Metadata | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.vocabulary = [f" {word}" for word in (
        "the server streams each token as soon as the model has decoded it so that the"
        " reader sees the answer grow word by word"
    ).split()]
    yield


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
completion_ids = itertools.count()


async def completion_chunks(
    request: CompletionRequest, vocabulary: list[str]
) -> AsyncIterator[str]:
    """The event stream of one completion: a chunk per token, then ``[DONE]``."""
    completion_id = f"cmpl-{next(completion_ids)}"
    created = int(time.time())
    for index in range(request.max_tokens):
        if index:
            await asyncio.sleep(TOKEN_INTERVAL_S)
        chunk = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": request.model,
            "choices": [{
                "index": 0,
                "text": vocabulary[index % len(vocabulary)],
                "logprobs": None,
                "finish_reason": "length" if index == request.max_tokens - 1 else None,
            }],
        }
        yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
    yield "data: [DONE]\n\n"


@app.post("/v1/completions")
async def completions(request: CompletionRequest) -> StreamingResponse:
    return StreamingResponse(
        completion_chunks(request, app.state.vocabulary),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
