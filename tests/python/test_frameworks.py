"""End-to-end FastAPI and Starlette apps, served unchanged.

Served apps: tests/apps/fastapi_app.py and tests/apps/starlette_app.py.
"""

from __future__ import annotations

import socket

import pytest
from conftest import RawReader, http_client, raw_connection


@pytest.fixture(scope="module")
def fastapi_server(module_server):
    return module_server.start("apps.fastapi_app:app")


@pytest.fixture(scope="module")
def starlette_server(module_server):
    return module_server.start("apps.starlette_app:app")


def test_fastapi_json_get(fastapi_server):
    with http_client() as client:
        response = client.get(fastapi_server.url + "/items/42", params={"q": "needle"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"item_id": 42, "q": "needle"}


def test_fastapi_path_validation(fastapi_server):
    with http_client() as client:
        response = client.get(fastapi_server.url + "/items/not-a-number")
    assert response.status_code == 422
    assert response.json()["detail"]


def test_fastapi_pydantic_body(fastapi_server):
    with http_client() as client:
        ok = client.post(fastapi_server.url + "/items",
                         json={"name": "widget", "price": 2.5, "tags": ["a", "b"]})
        bad = client.post(fastapi_server.url + "/items", json={"name": "widget"})
    assert ok.status_code == 200
    assert ok.json() == {"name": "widget", "total": 5.0, "tags": ["a", "b"]}
    assert bad.status_code == 422
    assert any("price" in str(err.get("loc")) for err in bad.json()["detail"])


def test_fastapi_streaming_response(fastapi_server):
    with http_client() as client:
        with client.stream("GET", fastapi_server.url + "/stream") as response:
            assert response.status_code == 200
            assert response.headers.get("transfer-encoding") == "chunked"
            text = "".join(response.iter_text())
    assert text == "".join(f"line {i}\n" for i in range(5))


def test_fastapi_endless_stream_stops_after_a_head_response(server):
    srv = server.start("apps.fastapi_app:app")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"HEAD /ticks HTTP/1.1\r\nHost: test\r\n\r\n")
        head = RawReader(sock).read_response("HEAD")
        assert head.status == 200
        assert head.header("content-type").startswith("text/plain")
        logs = srv.wait_for_log("TICKS-STOPPED", timeout=5)
    assert "Exception in ASGI application" not in logs, logs


def test_fastapi_endless_stream_stops_quietly_when_the_client_leaves(server):
    srv = server.start("apps.fastapi_app:app")
    sock = raw_connection(srv.port)
    with sock:
        sock.sendall(b"GET /ticks HTTP/1.1\r\nHost: test\r\n\r\n")
        RawReader(sock).read_until(b"tick\n")
        sock.shutdown(socket.SHUT_RDWR)
    logs = srv.wait_for_log("TICKS-STOPPED", timeout=5)
    assert "Exception in ASGI application" not in logs, logs
    assert "Traceback" not in logs, logs


def test_fastapi_openapi_and_404(fastapi_server):
    with http_client() as client:
        schema = client.get(fastapi_server.url + "/openapi.json")
        missing = client.get(fastapi_server.url + "/does-not-exist")
    assert schema.status_code == 200
    assert "/items/{item_id}" in schema.json()["paths"]
    assert missing.status_code == 404


def test_starlette_plain_text(starlette_server):
    with http_client() as client:
        response = client.get(starlette_server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello from Starlette"
    assert response.headers["content-type"].startswith("text/plain")


def test_starlette_lifespan_state(starlette_server):
    with http_client() as client:
        response = client.get(starlette_server.url + "/model")
    assert response.json() == {"model": "tiny-model-v1"}


def test_starlette_json_body(starlette_server):
    with http_client() as client:
        response = client.post(starlette_server.url + "/echo?x=1",
                               json={"numbers": [1, 2, 3], "text": "héllo"})
    assert response.status_code == 200
    assert response.json() == {"received": {"numbers": [1, 2, 3], "text": "héllo"},
                               "path": "/echo", "query": {"x": "1"}}


def test_starlette_stops_cleanly(server):
    srv = server.start("apps.starlette_app:app")
    with http_client() as client:
        assert client.get(srv.url + "/model").status_code == 200
    assert srv.stop() == 0
    logs = srv.logs()
    assert "Application startup complete." in logs
    assert "Application shutdown complete." in logs
