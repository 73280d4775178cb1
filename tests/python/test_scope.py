"""End-to-end HTTP scope contents: types and values of every key, percent-decoding,
headers, client/server addresses over TCP and UNIX sockets, root_path, proxy headers,
and the per-request copy of the lifespan state.

Served app: tests/apps/scope_app.py (answers with the scope as JSON; bytes are reported as
{"bytes": latin-1 text} and tuples as {"tuple": [...]}).
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import RawReader, http_client, raw_connection

APP = "apps.scope_app:app"


@pytest.fixture(scope="module")
def scope_server(module_server):
    return module_server.start(APP)


def raw_scope(port: int, head: bytes) -> tuple[dict, tuple[str, int]]:
    """Send a raw request head; returns the reported scope and the client socket address."""
    with raw_connection(port) as sock:
        local = sock.getsockname()
        sock.sendall(head)
        response = RawReader(sock).read_response()
    assert response.status == 200, response.raw_head
    return json.loads(response.body), local


def b(text: str) -> dict:
    return {"bytes": text}


def test_basic_scope(scope_server):
    scope, local = raw_scope(scope_server.port,
                             b"GET /some/path?a=1&b=two HTTP/1.1\r\nHost: example.test\r\n\r\n")
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"]["spec_version"], str)
    assert scope["asgi"]["spec_version"].startswith("2.")
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/some/path"
    assert scope["path_type"] == "str"
    assert scope["raw_path"] == b("/some/path")
    assert scope["query_string"] == b("a=1&b=two")
    assert scope["root_path"] == ""
    assert scope["headers"] == [{"tuple": [b("host"), b("example.test")]}]
    assert scope["client"] == {"tuple": ["127.0.0.1", local[1]]}
    assert scope["server"] == {"tuple": ["127.0.0.1", scope_server.port]}


def test_percent_decoded_utf8_path(scope_server):
    scope, _ = raw_scope(scope_server.port,
                         b"GET /caf%C3%A9/a%20b/%E2%9C%93?x=%20y&z=%C3%A9 HTTP/1.1\r\n"
                         b"Host: t\r\n\r\n")
    assert scope["path"] == "/café/a b/✓"
    assert scope["raw_path"] == b("/caf%C3%A9/a%20b/%E2%9C%93")
    assert scope["query_string"] == b("x=%20y&z=%C3%A9")


def test_empty_query_string(scope_server):
    scope, _ = raw_scope(scope_server.port, b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n")
    assert scope["query_string"] == b("")


def test_http10_version(scope_server):
    scope, _ = raw_scope(scope_server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert scope["http_version"] == "1.0"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods(scope_server, method):
    with http_client() as client:
        scope = client.request(method, scope_server.url + "/m", content=b"x").json()
    assert scope["method"] == method


def test_headers_lowercase_duplicates_kept_in_order(scope_server):
    scope, _ = raw_scope(
        scope_server.port,
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Dup: one\r\nX-Mixed-Case: Value Kept\r\n"
        b"x-dup: two\r\nAccept: */*\r\nX-DUP: three\r\n\r\n",
    )
    assert scope["header_types"] == ["bytes/bytes"]
    pairs = [(h["tuple"][0]["bytes"], h["tuple"][1]["bytes"]) for h in scope["headers"]]
    assert all(name == name.lower() for name, _ in pairs)
    assert [v for n, v in pairs if n == "x-dup"] == ["one", "two", "three"]
    assert ("x-mixed-case", "Value Kept") in pairs
    assert ("host", "t") in pairs and ("accept", "*/*") in pairs
    assert len(pairs) == 6


def test_root_path(server):
    # As uvicorn: a proxy strips the prefix, the server puts it back in path and raw_path.
    srv = server.start(APP, "--root-path", "/api/v1")
    with http_client() as client:
        scope = client.get(srv.url + "/items/caf%C3%A9").json()
    assert scope["root_path"] == "/api/v1"
    assert scope["path"] == "/api/v1/items/café"
    assert scope["raw_path"] == {"bytes": "/api/v1/items/caf%C3%A9"}


def test_uds_client_and_server(server, tmp_path):
    path = str(tmp_path / "ferricorn.sock")
    srv = server.start(APP, "--uds", path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), trust_env=False,
                      timeout=10) as client:
        scope = client.get("http://localhost/uds").json()
    assert scope["client"] is None
    assert scope["server"] == {"tuple": [path, None]}
    assert scope["path"] == "/uds"
    assert srv.stop() == 0


def test_state_is_a_shallow_copy_per_request(scope_server):
    with http_client() as client:
        first = client.get(scope_server.url + "/").json()["state"]
        mutated = client.get(scope_server.url + "/mutate").json()["state"]
        after = client.get(scope_server.url + "/").json()["state"]
    assert first == {"name": "scope-app", "shared": []}
    assert mutated == {"name": "scope-app", "shared": ["item"], "added": True}
    # The key added in one request is not seen by the next; the shared list is.
    assert "added" not in after
    assert after["shared"] == ["item"]


def test_proxy_headers_from_trusted_peer(server):
    srv = server.start(APP)  # 127.0.0.1 is trusted by default
    with http_client() as client:
        scope = client.get(srv.url + "/", headers={"X-Forwarded-Proto": "https",
                                                   "X-Forwarded-For": "203.0.113.7"}).json()
    assert scope["scheme"] == "https"
    assert scope["client"]["tuple"][0] == "203.0.113.7"


def test_no_proxy_headers(server):
    srv = server.start(APP, "--no-proxy-headers")
    with http_client() as client:
        scope = client.get(srv.url + "/", headers={"X-Forwarded-Proto": "https",
                                                   "X-Forwarded-For": "203.0.113.7"}).json()
    assert scope["scheme"] == "http"
    assert scope["client"]["tuple"][0] == "127.0.0.1"


@pytest.mark.parametrize(("allowed", "trusted"), [
    ("127.0.0.0/8", True),
    ("10.0.0.0/8, 127.0.0.1/32", True),
    ("10.0.0.0/8", False),
    ("::1/128", False),
])
def test_forwarded_allow_ips_takes_networks(server, allowed, trusted):
    srv = server.start(APP, "--forwarded-allow-ips", allowed)
    with http_client() as client:
        scope = client.get(srv.url + "/", headers={"X-Forwarded-Proto": "https",
                                                   "X-Forwarded-For": "203.0.113.7"}).json()
    expected = ("https", "203.0.113.7") if trusted else ("http", "127.0.0.1")
    assert (scope["scheme"], scope["client"]["tuple"][0]) == expected


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.0/255.0.0.0", "proxy.local"])
def test_bad_forwarded_allow_ips_is_a_usage_error(server, bad):
    finished = server.run(APP, "--forwarded-allow-ips", f"127.0.0.1,{bad}", "--workers", "2")
    assert finished.returncode == 2
    assert f"{bad!r} is not an IP address or network" in finished.output
    assert "running on" not in finished.output
