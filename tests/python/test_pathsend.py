"""`http.response.pathsend` (django/asgiref docs/extensions.rst): the app names a file, the
engine sends it as the body, read in chunks as the client takes them. Content-Length comes
from the file unless the app set one; HEAD carries none of it; a missing file is a 500 and an
error line. Over HTTP/1.1 and HTTP/2, with a raw app and Starlette's FileResponse."""

from __future__ import annotations

import os

import httpx
import pytest
from conftest import http_client

pytestmark = pytest.mark.timeout(60)

APP = "apps.files_app:app"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    big = d / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024 + 123))  # several chunks, not a multiple
    empty = d / "empty.bin"
    empty.write_bytes(b"")
    return {"big": big, "empty": empty, "dir": d}


def test_the_extension_is_offered(server):
    srv = server.start(APP)
    with http_client() as c:
        assert "http.response.pathsend" in c.get(f"{srv.url}/extensions").json()


def test_a_file_is_sent_whole_with_its_length(server, files):
    srv = server.start(APP)
    with http_client() as c:
        r = c.get(f"{srv.url}/send", params={"path": str(files["big"])})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(files["big"].stat().st_size)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == files["big"].read_bytes()


def test_an_empty_file(server, files):
    srv = server.start(APP)
    with http_client() as c:
        r = c.get(f"{srv.url}/send", params={"path": str(files["empty"])})
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "0", b"")


def test_head_gets_the_length_and_no_body(server, files):
    srv = server.start(APP)
    with http_client() as c:
        r = c.head(f"{srv.url}/send", params={"path": str(files["big"])})
        assert r.headers["content-length"] == str(files["big"].stat().st_size)
        assert r.content == b""
        # The connection is still in step: the next answer is whole.
        assert c.get(f"{srv.url}/extensions").status_code == 200


def test_over_http2(server, files):
    srv = server.start(APP)
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=20) as c:
        r = c.get(f"{srv.url}/send", params={"path": str(files["big"])})
    assert r.http_version == "HTTP/2"
    assert r.content == files["big"].read_bytes()


def test_starlette_file_response(server, files):
    srv = server.start(APP)
    with http_client() as c:
        r = c.get(f"{srv.url}/starlette", params={"path": str(files["big"])})
    assert r.status_code == 200
    assert r.content == files["big"].read_bytes()
    assert r.headers["content-length"] == str(files["big"].stat().st_size)


@pytest.mark.parametrize("name", ["missing.bin", "."])
def test_a_missing_file_or_a_directory_is_a_500_and_a_log_line(server, files, name):
    srv = server.start(APP)
    path = str(files["dir"] / name)
    with http_client() as c:
        r = c.get(f"{srv.url}/send", params={"path": path})
        assert r.status_code == 500
        assert c.get(f"{srv.url}/extensions").status_code == 200, "the server goes on"
    srv.wait_for_log("http.response.pathsend: cannot send")


def test_a_relative_path_is_refused_in_the_app(server):
    srv = server.start(APP)
    with http_client() as c:
        assert c.get(f"{srv.url}/send", params={"path": "big.bin"}).status_code == 500
    srv.wait_for_log("needs an absolute path")


def test_every_file_response_is_counted_in_the_metrics(server, files, tmp_path):
    """A GET, a HEAD (no body goes out) and a missing file (500) are each one request in
    ferricorn_http_requests_total, with the status the client saw."""
    from test_metrics import free_port, requests_total, scrape

    mport = free_port()
    srv = server.start(APP, "--metrics-port", str(mport))
    with http_client() as c:
        assert c.get(f"{srv.url}/send", params={"path": str(files["empty"])}).status_code == 200
        assert c.head(f"{srv.url}/send", params={"path": str(files["big"])}).status_code == 200
        missing = str(tmp_path / "missing.bin")
        assert c.get(f"{srv.url}/send", params={"path": missing}).status_code == 500
    samples = scrape(mport)
    assert requests_total(samples, "GET", "200") == 1
    assert requests_total(samples, "HEAD", "200") == 1
    assert requests_total(samples, "GET", "500") == 1
