"""The model-serving example (examples/serving) served as a user would run it."""

from __future__ import annotations

import socket
import time

import httpx

APP = "examples.serving.app:app"
FLOWER = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}


def test_predict_and_health(server):
    srv = server.start(APP, "--cancel-on-disconnect", "--limit-concurrency", "8")
    assert httpx.get(f"{srv.url}/health").json() == {"status": "ok"}
    r = httpx.post(f"{srv.url}/predict", json=FLOWER)
    assert r.status_code == 200
    body = r.json()
    assert body["species"] in ("setosa", "versicolor", "virginica")
    assert abs(sum(body["probabilities"].values()) - 1.0) < 0.01
    assert httpx.post(f"{srv.url}/predict", json={"sepal_length": -1}).status_code == 422


def test_token_stream_arrives_token_by_token(server):
    srv = server.start(APP)
    arrivals = []
    with httpx.stream("GET", f"{srv.url}/generate", params={"tokens": 10, "delay": 0.05}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 11  # ten tokens and the final "done" event
    # Streamed, not buffered: the first token came well before the last.
    assert arrivals[-1] - arrivals[0] > 0.3


def test_closing_a_stream_early_stops_generation(server):
    srv = server.start(APP, "--cancel-on-disconnect")
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"GET /generate?tokens=200&delay=0.02 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"data:") < 3:
            received += sock.recv(4096)
    srv.wait_for_log("generation stopped after", timeout=5)
    assert "of 200 tokens: the client left" in srv.logs()
