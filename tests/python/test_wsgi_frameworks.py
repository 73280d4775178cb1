"""WSGI frameworks end to end: Flask and a sync Django app (django.core.wsgi), each served
with `--interface wsgi` and with the default `--interface auto` (which must detect them).

What is checked: JSON in and out, urlencoded and multipart forms with a file upload, a
streamed response (Flask's stream_with_context, Django's StreamingHttpResponse), a file
(Flask's send_file and Django's FileResponse, both through wsgi.file_wrapper), a view that
raises (500, the server keeps serving), non-ASCII paths and queries through the latin-1
environ, --root-path as SCRIPT_NAME in url_for / request.path, HTTP/2.

Served apps: tests/apps/flask_app.py, tests/apps/django_wsgi_app.py.
"""

from __future__ import annotations

import hashlib
import os
import re

import httpx
import pytest
from conftest import RawReader, http_client, raw_connection

pytestmark = pytest.mark.timeout(90)

FLASK = "apps.flask_app:app"
DJANGO = "apps.django_wsgi_app:app"
MIB = 1024 * 1024

DETECTED = re.compile(r"Application interface: wsgi \(detected by --interface auto\)$", re.M)
EXPLICIT = re.compile(r"Application interface: wsgi$", re.M)


@pytest.fixture(scope="module")
def flask_server(module_server):
    """Flask under the default --interface auto."""
    return module_server.start(FLASK, "--wsgi-threads", "4")


@pytest.fixture(scope="module")
def django_server(module_server):
    """Django with --interface wsgi given."""
    return module_server.start(DJANGO, "--interface", "wsgi", "--wsgi-threads", "4")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsgi-frameworks") / "data.bin"
    path.write_bytes(os.urandom(3 * MIB + 7))
    return path


def read_chunked_response(port: int, target: str):
    """GET target on a raw connection; returns the response (its body de-chunked)."""
    with raw_connection(port) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return RawReader(sock).read_response()


# --- Flask ----------------------------------------------------------------------------------------


def test_flask_is_detected_as_wsgi(flask_server):
    assert DETECTED.search(flask_server.logs()), flask_server.logs()
    with http_client() as c:
        r = c.get(f"{flask_server.url}/")
    assert (r.status_code, r.text) == (200, "Hello from Flask")


def test_flask_with_explicit_interface(server):
    srv = server.start(FLASK, "--interface", "wsgi")
    logs = srv.wait_for_log(EXPLICIT)
    assert "detected by" not in logs
    with http_client() as c:
        assert c.get(f"{srv.url}/").text == "Hello from Flask"


def test_flask_json(flask_server):
    sent = {"name": "caf\u00e9", "items": [1, 2.5, None, True], "nested": {"k": "\u2713"}}
    with http_client() as c:
        r = c.post(f"{flask_server.url}/json", json=sent)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"got": sent, "method": "POST", "content_type": "application/json"}


def test_flask_urlencoded_form(flask_server):
    with http_client() as c:
        r = c.post(f"{flask_server.url}/form", data={"x": "1", "name": "caf\u00e9 & co"})
    assert r.json() == {"fields": {"x": "1", "name": "caf\u00e9 & co"}}


def test_flask_multipart_file_upload(flask_server):
    content = os.urandom(MIB + 11)
    with http_client() as c:
        r = c.post(f"{flask_server.url}/form", data={"title": "a file"},
                   files={"upload": ("blob.bin", content, "application/x-test")})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "fields": {"title": "a file"},
        "file": {"filename": "blob.bin", "size": len(content),
                 "sha256": hashlib.sha256(content).hexdigest(),
                 "content_type": "application/x-test"},
    }


def test_flask_stream_with_context(flask_server):
    response = read_chunked_response(flask_server.port, "/stream?n=4&name=bob")
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked", response.raw_head
    assert response.body == b"".join(b"line %d of bob\n" % i for i in range(4))


def test_flask_send_file(flask_server, data_file):
    with http_client(timeout=30) as c:
        r = c.get(f"{flask_server.url}/file", params={"path": str(data_file)})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(data_file.stat().st_size)
    assert r.content == data_file.read_bytes()


def test_flask_exception_is_a_500_and_serving_goes_on(flask_server):
    with http_client() as c:
        r = c.get(f"{flask_server.url}/boom")
        assert r.status_code == 500
        flask_server.wait_for_log("RuntimeError: flask-boom")
        assert c.get(f"{flask_server.url}/").status_code == 200


def test_flask_non_ascii_path_and_query(flask_server):
    with http_client() as c:
        r = c.get(f"{flask_server.url}/path/caf%C3%A9", params={"q": "\u2713 \u00e9"})
    assert r.json() == {"name": "caf\u00e9", "q": "\u2713 \u00e9"}


def test_flask_url_for_under_root_path(server):
    srv = server.start(FLASK, "--root-path", "/prefix")
    with http_client() as c:
        report = c.get(f"{srv.url}/where").json()
    assert report["url_for_hello"] == "/prefix/"
    assert report["script_root"] == "/prefix"
    assert report["path"] == "/where"
    assert report["url"] == f"http://127.0.0.1:{srv.port}/prefix/where"


def test_flask_over_http2(flask_server):
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=20) as c:
        r = c.post(f"{flask_server.url}/json", json={"h2": True})
        streamed = c.get(f"{flask_server.url}/stream?n=2&name=h2")
    assert r.http_version == "HTTP/2"
    assert r.json()["got"] == {"h2": True}
    assert streamed.text == "line 0 of h2\nline 1 of h2\n"


# --- Django ---------------------------------------------------------------------------------------


def test_django_with_explicit_interface(django_server):
    logs = django_server.logs()
    assert EXPLICIT.search(logs), logs
    with http_client() as c:
        r = c.get(f"{django_server.url}/")
    assert (r.status_code, r.text) == (200, "Hello from Django WSGI")


def test_django_is_detected_as_wsgi(server):
    srv = server.start(DJANGO)
    srv.wait_for_log(DETECTED)
    with http_client() as c:
        assert c.get(f"{srv.url}/").text == "Hello from Django WSGI"


def test_django_form_post_csrf_exempt(django_server):
    with http_client() as c:
        r = c.post(f"{django_server.url}/form", data={"x": "1", "name": "caf\u00e9"})
    assert r.status_code == 200, r.text
    assert r.json() == {"fields": {"x": "1", "name": "caf\u00e9"}, "files": {}}


def test_django_multipart_file_upload(django_server):
    content = os.urandom(3 * MIB + 5)  # past FILE_UPLOAD_MAX_MEMORY_SIZE: a temporary file
    with http_client(timeout=30) as c:
        r = c.post(f"{django_server.url}/form", data={"kind": "big"},
                   files={"upload": ("big.bin", content, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "fields": {"kind": "big"},
        "files": {"upload": {"name": "big.bin", "size": len(content),
                             "sha256": hashlib.sha256(content).hexdigest()}},
    }


def test_django_file_response(django_server, data_file):
    with http_client(timeout=30) as c:
        r = c.get(f"{django_server.url}/file", params={"path": str(data_file)})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(data_file.stat().st_size)
    assert r.content == data_file.read_bytes()


def test_django_json_view(django_server):
    with http_client() as c:
        r = c.request("PUT", f"{django_server.url}/json", params={"q": "caf\u00e9"},
                      content=b"12345")
    assert r.json() == {"path": "/json", "q": "caf\u00e9", "method": "PUT", "script_name": "",
                        "length": 5, "is_secure": False}


def test_django_non_ascii_path(django_server):
    with http_client() as c:
        r = c.get(f"{django_server.url}/path/caf%C3%A9%20%E2%9C%93")
    assert r.json() == {"name": "caf\u00e9 \u2713"}


def test_django_streaming_response(django_server):
    response = read_chunked_response(django_server.port, "/stream?n=5")
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked", response.raw_head
    assert response.body == b"".join(b"part %d\n" % i for i in range(5))


def test_django_exception_is_a_500_and_serving_goes_on(django_server):
    with http_client() as c:
        r = c.get(f"{django_server.url}/boom")
        assert r.status_code == 500
        assert "django-boom" not in r.text  # DEBUG is off: no traceback to the client
        assert c.get(f"{django_server.url}/").status_code == 200


def test_django_under_root_path(server):
    srv = server.start(DJANGO, "--interface", "wsgi", "--root-path", "/dj")
    with http_client() as c:
        report = c.get(f"{srv.url}/json").json()
    assert report["script_name"] == "/dj"
    assert report["path"] == "/dj/json"
