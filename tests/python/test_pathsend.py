"""`http.response.pathsend` (django/asgiref docs/extensions.rst): the app names a file, the
engine sends it as the body, read in chunks as the client takes them. Content-Length comes
from the file unless the app set one; HEAD carries none of it; a missing file is a 500 and an
error line. Over HTTP/1.1 and HTTP/2, with a raw app and Starlette's FileResponse. On
plain-text HTTP/1.1 a file from 64 KiB on goes out with sendfile(2) beneath hyper
(engine/sendfile.rs): keep-alive, pipelining, HTTP/1.0, an app-set length, a slow reader, a
client that leaves and a file that shrank are each checked byte for byte; over TLS the file
is read and written as before."""

from __future__ import annotations

import os
import re
import socket
import time

import httpx
import pytest
from conftest import http_client, raw_connection, recv_until_closed
from pki import client as tls_client
from pki import tls_flags

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


# --- sendfile(2) on plain-text HTTP/1.1 ------------------------------------------------------

SENDFILE_LINE = "bytes go out with sendfile(2)"


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[bytes, bytes]:
    """One Content-Length-framed response off `sock` (what was read past it stays in
    `buffered`): its head and its body."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed before a head; got {bytes(buffered[:200])!r}"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)\r?$", head).group(1))
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(body)} of {length} body bytes"
        body += chunk
    buffered[:] = body[length:]
    return head, bytes(body[:length])


def test_plain_http11_sends_the_file_with_sendfile(server, files):
    srv = server.start(APP, "--log-level", "debug")
    size = files["big"].stat().st_size
    with http_client() as c:
        r = c.get(f"{srv.url}/send", params={"path": str(files["big"])})
        assert (r.status_code, r.headers["content-length"]) == (200, str(size))
        assert r.content == files["big"].read_bytes()
        # Keep-alive: the same connection serves the next request in step.
        assert c.get(f"{srv.url}/extensions").status_code == 200
    srv.wait_for_log(f"a file response: {size} {SENDFILE_LINE}", timeout=5)


def test_pipelined_requests_around_sendfile_responses_stay_in_order(server, files):
    """Four requests in one write: a file, a short answer, a file cut to an app-set length,
    and a short answer that closes. No byte of a later answer may come inside a file."""
    srv = server.start(APP)
    big = files["big"].read_bytes()
    path = str(files["big"])
    requests = (f"GET /send?path={path} HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /extensions HTTP/1.1\r\nHost: t\r\n\r\n"
                f"GET /send?path={path}&length=70000 HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /extensions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with raw_connection(srv.port) as sock:
        sock.sendall(requests.encode())
        buffered = bytearray()
        answers = [read_response(sock, buffered) for _ in range(4)]
        assert bytes(buffered) + recv_until_closed(sock) == b""
    assert [head.split(b"\r\n")[0] for head, _ in answers] == [b"HTTP/1.1 200 OK"] * 4
    assert answers[0][1] == big
    assert b"http.response.pathsend" in answers[1][1]
    assert answers[2][1] == big[:70000]
    assert b"http.response.pathsend" in answers[3][1]


def test_http10_client_gets_the_whole_file_then_the_close(server, files):
    srv = server.start(APP)
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET /send?path={files['big']} HTTP/1.0\r\n\r\n".encode())
        reply = recv_until_closed(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert f"content-length: {files['big'].stat().st_size}".encode() in head
    assert body == files["big"].read_bytes()


def test_a_slow_reader_holds_up_no_one_and_gets_every_byte(server, files):
    """A client that reads nothing for a while fills its socket: the file waits for room
    (the engine thread is free meanwhile) and goes on from where it stopped."""
    srv = server.start(APP)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow.settimeout(10)
    slow.connect(("127.0.0.1", srv.port))
    with slow:
        slow.sendall(f"GET /send?path={files['big']} HTTP/1.1\r\nHost: t\r\n"
                     "Connection: close\r\n\r\n".encode())
        time.sleep(0.5)
        with http_client() as c:
            assert c.get(f"{srv.url}/extensions").status_code == 200
        reply = recv_until_closed(slow, timeout=30)
    assert reply.partition(b"\r\n\r\n")[2] == files["big"].read_bytes()


def test_a_client_that_leaves_mid_file_costs_only_its_connection(server, files):
    srv = server.start(APP)
    for _ in range(3):
        sock = raw_connection(srv.port)
        sock.sendall(f"GET /send?path={files['big']} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert sock.recv(65536)
        # An abortive close (RST): the kernel's next send into it fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    with http_client() as c:
        r = c.get(f"{srv.url}/send", params={"path": str(files["big"])})
    assert r.content == files["big"].read_bytes()
    assert srv.alive()


def test_a_file_shorter_than_its_length_ends_in_a_cut_connection(server, files, tmp_path):
    """The app said more bytes than the file has: the client gets what there is and then
    the connection closes, never a response it could take as whole."""
    srv = server.start(APP)
    size = files["big"].stat().st_size
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET /send?path={files['big']}&length={size + 10} HTTP/1.1\r\n"
                     "Host: t\r\n\r\n".encode())
        reply = recv_until_closed(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert f"content-length: {size + 10}".encode() in head
    assert body == files["big"].read_bytes()
    with http_client() as c:
        assert c.get(f"{srv.url}/extensions").status_code == 200


def test_over_tls_the_file_is_read_and_written_not_sendfile(server, files, pki):
    srv = server.start(APP, *tls_flags(pki), "--log-level", "debug")
    with tls_client(pki) as c:
        r = c.get(f"https://127.0.0.1:{srv.port}/send", params={"path": str(files["big"])})
        assert r.content == files["big"].read_bytes()
        assert c.get(f"https://127.0.0.1:{srv.port}/extensions").status_code == 200
    assert SENDFILE_LINE not in srv.logs()


def test_a_small_file_goes_with_its_head_not_sendfile(server, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(64 * 1024 - 1))
    srv = server.start(APP, "--log-level", "debug")
    with http_client() as c:
        r = c.get(f"{srv.url}/send", params={"path": str(small)})
    assert r.content == small.read_bytes()
    assert SENDFILE_LINE not in srv.logs()


def test_a_request_with_a_body_gets_its_file_read_and_in_step_with_what_follows(server, files):
    """A request with a body is answered by the read path (hyper turns idle when a request
    body ends, and could answer a next request in the middle of a sendfile): the file comes
    whole, then hyper's 400 for a malformed request pipelined behind it."""
    srv = server.start(APP, "--log-level", "debug")
    with raw_connection(srv.port) as sock:
        sock.sendall(f"POST /send?path={files['big']} HTTP/1.1\r\nHost: t\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                     "NOT A REQUEST\r\n\r\n".encode())
        buffered = bytearray()
        head, body = read_response(sock, buffered)
        rest = bytes(buffered) + recv_until_closed(sock)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == files["big"].read_bytes()
    assert rest.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert SENDFILE_LINE not in srv.logs()
