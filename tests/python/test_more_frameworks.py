"""Django, Litestar and Quart apps served unchanged, with their lifespan handling."""

from __future__ import annotations

import httpx


def test_django(server):
    srv = server.start("apps.django_app:app")
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/").text == "Hello from Django"
        r = c.post("/echo?q=z", content=b"12345")
        assert r.json() == {"length": 5, "q": "z"}
        assert c.get("/stream").text == "part 0\npart 1\npart 2\n"
    # Django does not speak lifespan: auto mode carries on, and stopping is clean.
    assert srv.stop() == 0


def test_litestar(server):
    srv = server.start("apps.litestar_app:app", "--lifespan", "on")
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/").json() == {"hello": "litestar"}
        assert c.post("/echo", json={"a": 1}).json() == {"a": 1}
        assert c.get("/missing").status_code == 404
    assert srv.stop() == 0


def test_quart(server):
    srv = server.start("apps.quart_app:app", "--lifespan", "on")
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/").text == "Hello from Quart"
        assert c.post("/echo", json={"b": [1, 2]}).json() == {"b": [1, 2]}
    assert srv.stop() == 0
