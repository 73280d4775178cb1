"""A small model-serving app: a real scikit-learn model, trained at startup, no download.

    pip install fastapi scikit-learn
    ferricorn examples.serving.app:app --limit-concurrency 8 --limit-queue 16 \\
        --cancel-on-disconnect --timeout-request 30

- ``POST /predict`` classifies an iris flower (four measurements in cm) with a logistic
  regression trained in lifespan startup on the data set scikit-learn ships.
- ``GET /generate?tokens=50`` streams text token by token as server-sent events, the way an
  LLM endpoint does: a bigram model learned from the data set's description, with a short
  pause per token standing in for inference. A client that closes the stream early stops the
  generation (with ``--cancel-on-disconnect``): the log says so.
- ``GET /health`` answers once the model is loaded.
- ``POST /predict-blocking`` makes the classic mistake (a synchronous sleep inside
  ``async def``) so ``--blocked-loop-warning`` has something to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

log = logging.getLogger("serving")
MODEL: dict = {}


def train() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    words = iris.DESCR.split()
    bigrams: dict[str, list[str]] = {}
    for a, b in zip(words, words[1:], strict=False):
        bigrams.setdefault(a, []).append(b)
    MODEL.update(classifier=model, names=list(iris.target_names), bigrams=bigrams, words=words)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    await asyncio.to_thread(train)
    log.warning("model ready: %d bigram states", len(MODEL["bigrams"]))
    yield
    MODEL.clear()


app = FastAPI(lifespan=lifespan)


class Flower(BaseModel):
    sepal_length: float = Field(gt=0, lt=20)
    sepal_width: float = Field(gt=0, lt=20)
    petal_length: float = Field(gt=0, lt=20)
    petal_width: float = Field(gt=0, lt=20)


def _predict(flower: Flower) -> dict:
    row = [[flower.sepal_length, flower.sepal_width, flower.petal_length, flower.petal_width]]
    probabilities = MODEL["classifier"].predict_proba(row)[0]
    best = int(probabilities.argmax())
    return {
        "species": MODEL["names"][best],
        "probabilities": {
            name: round(float(p), 4)
            for name, p in zip(MODEL["names"], probabilities, strict=True)
        },
    }


@app.get("/health")
async def health() -> dict:
    if not MODEL:
        raise HTTPException(503, "model not loaded")
    return {"status": "ok"}


@app.post("/predict")
async def predict(flower: Flower) -> dict:
    return _predict(flower)


@app.post("/predict-blocking")
async def predict_blocking(flower: Flower) -> dict:
    time.sleep(1.5)  # the mistake: blocks every request of this worker
    return _predict(flower)


@app.get("/generate")
async def generate(tokens: int = 50, seed: int | None = None, delay: float = 0.02):
    rng = random.Random(seed)
    bigrams, words = MODEL["bigrams"], MODEL["words"]

    async def stream():
        word = rng.choice(words)
        sent = 0
        try:
            while sent < tokens:
                await asyncio.sleep(delay)  # stands in for one step of inference
                yield f"data: {word}\n\n"
                sent += 1
                word = rng.choice(bigrams.get(word) or words)
            yield "event: done\ndata: end\n\n"
        except asyncio.CancelledError:
            log.warning("generation stopped after %d of %d tokens: the client left", sent, tokens)
            raise

    return StreamingResponse(stream(), media_type="text/event-stream")
