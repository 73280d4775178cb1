"""WSGI (PEP 3333) end to end: a raw WSGI app served by the real server.

What is checked: `--interface` (auto detection and the explicit names, with their startup
line), the environ (CGI variables as native strings, PATH_INFO percent-decoded and read as
latin-1, QUERY_STRING raw, CONTENT_TYPE/CONTENT_LENGTH only when sent, HTTP_* with repeated
headers joined, the wsgi.* keys), wsgi.input (read, read(n), readline, readline(n),
readlines, iteration; b"" at the end without blocking; chunked and slowly sent bodies; a
256 MiB upload in bounded memory; Expect: 100-continue), start_response (write(), delayed
headers, a second call, exc_info before and after the body, non-latin-1 and hop-by-hop
values), the response framing (Content-Length for a one-element list or tuple, chunked or
close-delimited otherwise, HEAD, an app's Content-Length held to), close() on the iterable,
backpressure on a generator, wsgi.file_wrapper, exceptions, the thread pool
(`--wsgi-threads`), `--timeout-request`, `--limit-concurrency`, keep-alive and pipelining,
HTTP/2, TLS and the access log.

Served app: tests/apps/wsgi_app.py (its docstring lists the routes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import (
    RawReader,
    http_client,
    raw_connection,
    recv_until_closed,
    wait_app_event,
)
from pki import client as tls_client
from pki import tls_flags

pytestmark = pytest.mark.timeout(90)

APP = "apps.wsgi_app:app"
WSGI = ("--interface", "wsgi", "--wsgi-threads", "4")
MIB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wsgi_server(module_server):
    """One server for the tests that only read (each uses its own tags and connections)."""
    return module_server.start(APP, *WSGI)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsgi-files") / "big.bin"
    path.write_bytes(os.urandom(5 * MIB + 123))  # several blocks, not a multiple of 8192
    return path


def exchange(port: int, data: bytes, method: str = "GET"):
    """Send `data` on a new connection; returns the one response read back."""
    with raw_connection(port) as sock:
        sock.sendall(data)
        return RawReader(sock).read_response(method)


def get(port: int, target: str, version: str = "1.1"):
    return exchange(port, f"GET {target} HTTP/{version}\r\nHost: t\r\n\r\n".encode())


def environ_of(port: int, head: bytes) -> dict:
    response = exchange(port, head)
    assert response.status == 200, response.raw_head + response.body
    return json.loads(response.body)["environ"]


def str_value(environ: dict, key: str) -> str:
    entry = environ[key]
    assert entry["type"] == "str", (key, entry)
    return entry["value"]


def post_input(port: int, mode: str, body: bytes, n: int = 0) -> dict:
    """POST `body` to /input (read per `mode`) on a connection kept open meanwhile (so the
    server never sees EOF: the app must stop at the end of the body by itself)."""
    head = (f"POST /input?mode={mode}&n={n} HTTP/1.1\r\nHost: t\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    response = exchange(port, head + body)
    assert response.status == 200, response.raw_head + response.body
    return json.loads(response.body)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def assert_clean_500(response) -> None:
    assert response.status == 500, response.raw_head + response.body
    assert response.body == b"Internal Server Error", response.body
    assert response.header("content-length") == str(len(response.body)), response.raw_head


def assert_cut_chunked(port: int, target: str) -> bytes:
    """GET target: the response starts (200, chunked) and is cut before its terminating
    0-size chunk. Returns the body bytes received (the last, cut chunk as it came)."""
    with raw_connection(port) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        reader = RawReader(sock)
        head = reader.read_head()
        assert head.status == 200, head.raw_head
        assert "chunked" in (head.header("transfer-encoding") or ""), head.raw_head
        body = b""
        try:
            while True:
                size = int(reader.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    raise AssertionError(f"the response was complete, not cut: {body!r}")
                body += reader.read_exact(size)
                reader.read_exact(2)
        except ConnectionError:
            return body + reader.buf


def log_lines(srv, needle: str) -> list[str]:
    return [line for line in srv.logs().splitlines() if needle in line]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- --interface ---------------------------------------------------------------------------------


def test_auto_detects_a_wsgi_function(server):
    srv = server.start(APP)
    srv.wait_for_log(re.compile(
        r"Application interface: wsgi \(detected by --interface auto\)$", re.M))
    response = get(srv.port, "/hello")
    assert (response.status, response.body) == (200, b"hello")


def test_explicit_interface_wsgi(server):
    srv = server.start(APP, "--interface", "wsgi")
    logs = srv.wait_for_log(re.compile(r"Application interface: wsgi$", re.M))
    assert "detected by" not in logs
    assert get(srv.port, "/hello").body == b"hello"


def test_auto_detects_the_pep_class_application(server):
    """A class called with (environ, start_response) whose instance is the iterable, calling
    start_response only on its first iteration."""
    srv = server.start("apps.wsgi_app:PepAppClass")
    srv.wait_for_log(re.compile(
        r"Application interface: wsgi \(detected by --interface auto\)$", re.M))
    response = get(srv.port, "/via/class")
    assert (response.status, response.body) == (200, b"from a class: /via/class")


def test_auto_detects_asgi3(server):
    srv = server.start("apps.basic:app")
    srv.wait_for_log(re.compile(
        r"Application interface: asgi3 \(detected by --interface auto\)$", re.M))
    assert get(srv.port, "/").status == 200


@pytest.mark.parametrize("flags", [(), ("--interface", "asgi2")], ids=["auto", "explicit"])
def test_asgi2_class(server, flags):
    srv = server.start("apps.wsgi_app:App2", *flags)
    if flags:
        srv.wait_for_log(re.compile(r"Application interface: asgi2$", re.M))
    else:
        srv.wait_for_log(re.compile(
            r"Application interface: asgi2 \(detected by --interface auto\)$", re.M))
    response = get(srv.port, "/two")
    assert (response.status, response.body) == (200, b"asgi2 /two")


# --- environ -------------------------------------------------------------------------------------


def test_environ_cgi_variables(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        local = sock.getsockname()
        sock.sendall(b"GET /some/path?a=1&b=two HTTP/1.1\r\nHost: example.test\r\n\r\n")
        response = RawReader(sock).read_response()
    report = json.loads(response.body)
    env = report["environ"]
    assert report["environ_is_dict"] is True
    assert str_value(env, "REQUEST_METHOD") == "GET"
    assert str_value(env, "SCRIPT_NAME") == ""
    assert str_value(env, "PATH_INFO") == "/some/path"
    assert str_value(env, "QUERY_STRING") == "a=1&b=two"
    assert str_value(env, "SERVER_NAME") == "127.0.0.1"
    assert str_value(env, "SERVER_PORT") == str(wsgi_server.port)
    assert str_value(env, "SERVER_PROTOCOL") == "HTTP/1.1"
    assert str_value(env, "REMOTE_ADDR") == "127.0.0.1"
    assert str_value(env, "REMOTE_PORT") == str(local[1])
    assert str_value(env, "HTTP_HOST") == "example.test"
    for absent in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        assert absent not in env, absent


def test_every_cgi_value_is_a_native_string(wsgi_server):
    env = environ_of(wsgi_server.port,
                     b"POST /types?q=1 HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 2\r\nX-Custom: v\r\n\r\nok")
    cgi = {key: entry for key, entry in env.items() if "." not in key}
    assert {"REQUEST_METHOD", "CONTENT_LENGTH", "HTTP_X_CUSTOM"} <= set(cgi)
    wrong = {key: entry["type"] for key, entry in cgi.items() if entry["type"] != "str"}
    assert wrong == {}


def test_wsgi_variables(wsgi_server):
    env = environ_of(wsgi_server.port, b"GET /wsgi-keys HTTP/1.1\r\nHost: t\r\n\r\n")
    assert env["wsgi.version"] == {"type": "tuple", "value": [1, 0]}
    assert env["wsgi.url_scheme"] == {"type": "str", "value": "http"}
    assert env["wsgi.multithread"] == {"type": "bool", "value": True}
    assert env["wsgi.multiprocess"] == {"type": "bool", "value": False}
    assert env["wsgi.run_once"] == {"type": "bool", "value": False}
    assert env["wsgi.input_terminated"] == {"type": "bool", "value": True}
    assert env["wsgi.file_wrapper"]["callable"] is True
    assert env["wsgi.input"]["methods"] == ["read", "readline", "readlines", "__iter__"]
    assert env["wsgi.errors"]["methods"] == ["write", "writelines", "flush"]


@pytest.mark.parametrize("target, path_info", [
    (b"/a%2Fb", "/a/b"),
    (b"/caf%C3%A9", "/caf\xc3\xa9"),
    (b"/a%20b/%E2%9C%93/", "/a b/\xe2\x9c\x93/"),
], ids=["encoded-slash", "utf8", "space-and-check"])
def test_path_info_is_percent_decoded_bytes_as_latin1(wsgi_server, target, path_info):
    env = environ_of(wsgi_server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert str_value(env, "PATH_INFO") == path_info


@pytest.mark.parametrize("target, query", [
    (b"/p?x=%20y&z=%C3%A9&w=a+b", "x=%20y&z=%C3%A9&w=a+b"),
    (b"/p", ""),
    (b"/p?", ""),
])
def test_query_string_is_raw(wsgi_server, target, query):
    env = environ_of(wsgi_server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert str_value(env, "QUERY_STRING") == query
    assert str_value(env, "PATH_INFO") == "/p"


def test_content_type_and_length_only_when_sent(wsgi_server):
    env = environ_of(wsgi_server.port,
                     b"POST /env HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain; charset=utf-8"
                     b"\r\nContent-Length: 5\r\n\r\nhello")
    assert str_value(env, "CONTENT_TYPE") == "text/plain; charset=utf-8"
    assert str_value(env, "CONTENT_LENGTH") == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    # A body without a Content-Type: CONTENT_LENGTH only.
    env = environ_of(wsgi_server.port,
                     b"POST /env HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
    assert str_value(env, "CONTENT_LENGTH") == "2"
    assert "CONTENT_TYPE" not in env


def test_http_headers(wsgi_server):
    env = environ_of(
        wsgi_server.port,
        b"GET /h HTTP/1.1\r\nHost: t\r\nX-Dup: one\r\nX-Mixed-Case: Value Kept\r\n"
        b"x-dup: two\r\nAccept: */*\r\nX-DUP: three\r\nX-Utf8: caf\xc3\xa9\r\n"
        b"User-Agent: raw-test/1.0\r\n\r\n",
    )
    assert str_value(env, "HTTP_X_DUP") == "one, two, three"
    assert str_value(env, "HTTP_X_MIXED_CASE") == "Value Kept"
    assert str_value(env, "HTTP_ACCEPT") == "*/*"
    assert str_value(env, "HTTP_USER_AGENT") == "raw-test/1.0"
    assert str_value(env, "HTTP_X_UTF8") == "caf\xc3\xa9"  # the bytes, read as latin-1
    assert not any(key.startswith("HTTP_") and ("-" in key or key != key.upper())
                   for key in env)


def test_repeated_cookie_lines_are_joined_with_semicolons(wsgi_server):
    env = environ_of(
        wsgi_server.port,
        b"GET /c HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\nX-Rep: x\r\ncookie: b=2\r\n"
        b"X-Rep: y\r\n\r\n",
    )
    assert str_value(env, "HTTP_COOKIE") == "a=1; b=2"
    assert str_value(env, "HTTP_X_REP") == "x, y"


def test_a_single_cookie_line_is_kept_as_sent(wsgi_server):
    env = environ_of(wsgi_server.port,
                     b"GET /c HTTP/1.1\r\nHost: t\r\nCookie: a=1; b=2;c=3\r\n\r\n")
    assert str_value(env, "HTTP_COOKIE") == "a=1; b=2;c=3"


def test_http10_server_protocol(wsgi_server):
    env = environ_of(wsgi_server.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert str_value(env, "SERVER_PROTOCOL") == "HTTP/1.0"
    assert "HTTP_HOST" not in env


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_method(wsgi_server, method):
    with http_client() as c:
        report = c.request(method, f"{wsgi_server.url}/m", content=b"x").json()
    assert report["environ"]["REQUEST_METHOD"]["value"] == method
    assert report["body"] == "x"


def test_script_name_is_the_root_path(server):
    srv = server.start(APP, *WSGI, "--root-path", "/api/v1")
    env = environ_of(srv.port, b"GET /items/caf%C3%A9?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert str_value(env, "SCRIPT_NAME") == "/api/v1"
    assert str_value(env, "PATH_INFO") == "/items/caf\xc3\xa9"
    assert str_value(env, "QUERY_STRING") == "x=1"


def test_url_scheme_https(server, pki):
    srv = server.start(APP, *WSGI, *tls_flags(pki))
    with tls_client(pki) as c:
        report = c.get(f"https://127.0.0.1:{srv.port}/secure").json()
    assert report["environ"]["wsgi.url_scheme"] == {"type": "str", "value": "https"}
    assert report["environ"]["PATH_INFO"]["value"] == "/secure"


def test_multiprocess_with_workers(server):
    srv = server.start(APP, *WSGI, "--workers", "2")
    try:
        env = wait_until(lambda: _try_environ(srv.port), timeout=15)
        assert env, srv.logs()
        assert env["wsgi.multiprocess"] == {"type": "bool", "value": True}
        assert env["wsgi.multithread"] == {"type": "bool", "value": True}
    finally:
        assert srv.stop(signal.SIGTERM) == 0  # the supervisor takes its workers down with it


def _try_environ(port: int) -> dict | None:
    try:
        return environ_of(port, b"GET /mp HTTP/1.1\r\nHost: t\r\n\r\n")
    except (OSError, AssertionError):
        return None


def test_wsgi_errors_goes_to_the_log(wsgi_server):
    assert get(wsgi_server.port, "/errors?tag=e1").body == b"ok"
    wsgi_server.wait_for_log("WSGI-ERRORS-WRITE e1")
    wsgi_server.wait_for_log("WSGI-ERRORS-LINES e1 one")
    wsgi_server.wait_for_log("WSGI-ERRORS-LINES e1 two")
    # Any text is accepted (PEP 3333: the stream may substitute what it cannot render).
    wsgi_server.wait_for_log("WSGI-ERRORS-UNICODE e1 caf")


# --- wsgi.input ----------------------------------------------------------------------------------


def test_input_read_all(wsgi_server):
    report = post_input(wsgi_server.port, "read", b"hello world")
    assert report["parts"] == ["hello world"]
    assert report["types"] == ["bytes"]


def test_input_read_minus_one_reads_all(wsgi_server):
    report = post_input(wsgi_server.port, "read_minus_one", b"all of it")
    assert report["parts"] == ["all of it", ""]


def test_input_read_n_returns_exactly_n(wsgi_server):
    report = post_input(wsgi_server.port, "read_n", b"0123456789", n=3)
    assert report["parts"] == ["012", "345", "678", "9", ""]


def test_input_readline(wsgi_server):
    report = post_input(wsgi_server.port, "readline", b"line1\nline2\n\nlast")
    assert report["parts"] == ["line1\n", "line2\n", "\n", "last", ""]


def test_input_readline_with_size(wsgi_server):
    report = post_input(wsgi_server.port, "readline_n", b"abcdef\nxy\nz", n=4)
    assert report["parts"] == ["abcd", "ef\n", "xy\n", "z", ""]


def test_input_readlines(wsgi_server):
    report = post_input(wsgi_server.port, "readlines", b"a\nbb\nccc")
    assert report["parts"] == ["a\n", "bb\n", "ccc"]


def test_input_iteration(wsgi_server):
    report = post_input(wsgi_server.port, "iter", b"a\nbb\n\nccc\n")
    assert report["parts"] == ["a\n", "bb\n", "\n", "ccc\n"]


def test_input_past_the_end_is_empty_and_does_not_block(wsgi_server):
    report = post_input(wsgi_server.port, "after_end", b"abc")
    assert report["parts"] == ["abc", "", "", ""]  # and readlines() gave []
    assert report["seconds"] < 1.0


def test_input_read_more_than_the_body_does_not_block(wsgi_server):
    report = post_input(wsgi_server.port, "read_twice", b"short", n=100_000)
    assert report["parts"] == ["short", ""]
    assert report["seconds"] < 1.0


def test_input_of_a_request_without_body(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(b"GET /input?mode=after_end HTTP/1.1\r\nHost: t\r\n\r\n")
        report = json.loads(RawReader(sock).read_response().body)
    assert report["parts"] == ["", "", "", ""]
    assert report["seconds"] < 1.0


def test_input_chunked_request_body(wsgi_server):
    body = chunked(b"hel", b"lo ", b"world")
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = exchange(wsgi_server.port, head + body)
    assert response.body == b"hello world"
    assert response.header("x-env-content-length") == "absent"
    head = (b"POST /input?mode=readline HTTP/1.1\r\nHost: t\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    response = exchange(wsgi_server.port, head + chunked(b"a", b"b\nc", b"d\n", b"e"))
    assert json.loads(response.body)["parts"] == ["ab\n", "cd\n", "e", ""]


def test_input_chunked_read_n_across_chunks(wsgi_server):
    head = (b"POST /input?mode=read_n&n=4 HTTP/1.1\r\nHost: t\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    response = exchange(wsgi_server.port, head + chunked(b"ab", b"cdefg", b"h", b"ijk"))
    assert json.loads(response.body)["parts"] == ["abcd", "efgh", "ijk", ""]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_input_body_sent_slowly_is_read_whole(wsgi_server, framing):
    """The body comes in three pieces 0.3 s apart: read(25) waits for 25 bytes."""
    pieces = [b"a" * 10, b"b" * 10, b"c" * 10]
    if framing == "chunked":
        head = (b"POST /input?mode=read_twice&n=25 HTTP/1.1\r\nHost: t\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        wire = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces]
        wire[-1] += b"0\r\n\r\n"
    else:
        head = (b"POST /input?mode=read_twice&n=25 HTTP/1.1\r\nHost: t\r\n"
                b"Content-Length: 30\r\n\r\n")
        wire = pieces
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(head)
        for piece in wire:
            time.sleep(0.3)
            sock.sendall(piece)
        response = RawReader(sock).read_response()
    assert response.status == 200, response.raw_head + response.body
    assert json.loads(response.body)["parts"] == ["a" * 10 + "b" * 10 + "c" * 5, "c" * 5]


def test_expect_100_continue(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = RawReader(sock)
        interim = reader.read_head()
        assert interim.status == 100, interim.raw_head
        sock.sendall(b"hello")
        response = reader.read_response()
    assert (response.status, response.body) == (200, b"hello")


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} line")


UPLOAD_MIB = 256
#: What a streamed upload may add to the worker's peak RSS: the engine's read-ahead and the
#: app's 64 KiB reads, far below the body's size.
UPLOAD_GROWTH_BOUND_MIB = 32


def test_large_upload_is_streamed_in_bounded_memory(server):
    """A 256 MiB body, sent by the client from a generator and read by the app 64 KiB at a
    time and dropped, raises the worker's peak RSS (VmHWM, reset before the upload) by less
    than 32 MiB: the body is streamed, never buffered whole."""
    srv = server.start(APP, *WSGI)
    assert get(srv.port, "/hello").status == 200  # warm up
    pid = srv.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS from here on
    baseline = vm_kib(pid, "VmRSS")
    block = os.urandom(MIB)
    digest = hashlib.sha256()

    def body():
        for i in range(UPLOAD_MIB):
            chunk = i.to_bytes(8, "big") + block[8:]  # every MiB differs
            digest.update(chunk)
            yield chunk

    started = time.monotonic()
    with raw_connection(srv.port, timeout=60) as sock:
        sock.sendall(f"POST /hash HTTP/1.1\r\nHost: t\r\n"
                     f"Content-Length: {UPLOAD_MIB * MIB}\r\n\r\n".encode())
        for chunk in body():
            sock.sendall(chunk)
        response = RawReader(sock).read_response()
    elapsed = time.monotonic() - started
    peak = vm_kib(pid, "VmHWM")
    assert response.status == 200, response.raw_head + response.body
    report = json.loads(response.body)
    assert report["sha256"] == digest.hexdigest()
    assert report["size"] == UPLOAD_MIB * MIB
    assert report["max_read"] == 65536
    assert report["reads"] == UPLOAD_MIB * MIB // 65536  # read(n) returns n until the end
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < UPLOAD_GROWTH_BOUND_MIB, (
        f"the worker's peak RSS grew by {growth_mib:.1f} MiB for a {UPLOAD_MIB} MiB upload")
    assert elapsed < 60, f"the upload took {elapsed:.1f}s"


# --- start_response and write() ------------------------------------------------------------------


def test_write_chunks_come_before_the_iterable(wsgi_server):
    response = get(wsgi_server.port, "/write")
    assert (response.status, response.body) == (200, b"w1w2i1i2")


def test_start_response_then_raise_is_a_clean_500(wsgi_server):
    assert_clean_500(get(wsgi_server.port, "/raise-after-start?tag=ras"))
    wsgi_server.wait_for_log("boom-after-start ras")


def test_headers_wait_for_the_first_non_empty_chunk(wsgi_server):
    """A generator that calls start_response, yields b"" and raises: nothing was sent yet,
    so the client still gets a whole 500."""
    assert_clean_500(get(wsgi_server.port, "/gen-raise-before-body?tag=grb"))
    wsgi_server.wait_for_log("boom-before-body grb")


def test_second_start_response_without_exc_info_is_an_error(wsgi_server):
    response = get(wsgi_server.port, "/start-twice")
    assert response.status == 500, response.raw_head + response.body
    assert response.body != b"twice"


def test_exc_info_before_the_body_replaces_the_response(wsgi_server):
    response = get(wsgi_server.port, "/exc-info-replace")
    assert (response.status, response.reason) == (500, "Oops"), response.raw_head
    assert response.body == b"oops"
    assert response.header("x-first") is None


def test_exc_info_after_the_body_reraises_and_cuts(server):
    srv = server.start(APP, *WSGI)
    received = assert_cut_chunked(srv.port, "/exc-info-after-body?tag=late")
    assert b"error body" not in received
    assert wait_app_event(srv, "late") == "reraised-same"
    srv.wait_for_log("late failure")
    assert get(srv.port, "/hello").status == 200


@pytest.mark.parametrize("route, what", [
    ("/status-bad", 'the status "200 \u2713"'),
    ("/header-bad", 'a header value "\u2713"'),
])
def test_non_latin1_status_or_header_is_a_500(server, route, what):
    srv = server.start(APP, *WSGI)
    response = get(srv.port, route)
    assert_clean_500(response)
    assert "\u2713".encode() not in response.raw_head
    logs = srv.wait_for_log(f"ValueError: {what} has characters outside latin-1")
    message = ("ERROR:    Exception in WSGI application\nTraceback (most recent call last):\n",
               f"\nValueError: {what} has characters outside latin-1; encode the value "
               "(RFC 8187 for header parameters, percent-encoding for URLs)\n")
    start = logs.index(message[0])
    assert logs.index(message[1], start) > start, logs
    assert logs.count("Exception in WSGI application") == 1, logs
    assert get(srv.port, "/hello").status == 200


@pytest.mark.parametrize("name, value", [
    ("Connection", "close"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "websocket"),
    ("connection", "keep-alive"),
])
def test_hop_by_hop_header_from_the_app_is_a_500(wsgi_server, name, value):
    response = get(wsgi_server.port, f"/hop?name={name}&value={value}")
    assert response.status == 500, response.raw_head + response.body
    assert response.body != b"hop-by-hop"


# --- responses -----------------------------------------------------------------------------------


def test_first_chunk_is_sent_before_the_generator_ends(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /slow-gen?s=2 HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = RawReader(sock)
        head = reader.read_head()
        size = int(reader.read_until(b"\r\n").strip(), 16)
        first = reader.read_exact(size)
        first_after = time.monotonic() - started
        assert reader.read_exact(2) == b"\r\n"
        rest = reader.read_chunked()
        total = time.monotonic() - started
    assert head.status == 200 and "chunked" in (head.header("transfer-encoding") or "")
    assert first == b"first"
    assert first_after < 1.2, f"the first chunk took {first_after:.2f}s"
    assert rest == b"second"
    assert total >= 1.8


@pytest.mark.parametrize("kind, n", [("list", 1), ("tuple", 1), ("list", 3), ("tuple", 2)])
def test_a_list_or_tuple_gets_a_content_length(wsgi_server, kind, n):
    """A list or tuple is the whole body already: it goes out as one response with its
    length (PEP 3333 suggests this for len() == 1; longer ones are joined)."""
    response = get(wsgi_server.port, f"/list?n={n}&kind={kind}")
    body = b"".join(b"part%d;" % i for i in range(n))
    assert response.header("content-length") == str(len(body)), response.raw_head
    assert response.header("transfer-encoding") is None
    assert response.body == body


@pytest.mark.parametrize("kind, n", [("gen", 1), ("gen", 3)])
def test_other_iterables_are_chunked_on_http11(wsgi_server, kind, n):
    response = get(wsgi_server.port, f"/list?n={n}&kind={kind}")
    assert response.header("transfer-encoding") == "chunked", response.raw_head
    assert response.header("content-length") is None
    assert response.body == b"".join(b"part%d;" % i for i in range(n))


@pytest.mark.parametrize("kind", ["gen", "iter"])
def test_http10_without_length_is_close_delimited(wsgi_server, kind):
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(f"GET /list?n=3&kind={kind} HTTP/1.0\r\n\r\n".encode())
        data = recv_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    assert b"transfer-encoding" not in head.lower(), head
    assert b"content-length" not in head.lower(), head
    assert body == b"part0;part1;part2;"


def test_empty_iterable(wsgi_server):
    response = get(wsgi_server.port, "/empty")
    assert (response.status, response.body) == (200, b"")


@pytest.mark.parametrize("target", ["/hello", "/list?n=3&kind=gen", "/write"])
def test_head_has_no_body_and_keeps_the_connection_in_step(wsgi_server, target):
    with raw_connection(wsgi_server.port) as sock:
        reader = RawReader(sock)
        sock.sendall(f"HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head = reader.read_response("HEAD")
        assert head.status == 200, head.raw_head
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        after = reader.read_response()
    assert (after.status, after.body) == (200, b"hello")


def test_app_content_length_is_held_to(wsgi_server):
    response = get(wsgi_server.port, "/declared?cl=5&body=hello")
    assert (response.header("content-length"), response.body) == ("5", b"hello")
    assert response.header("transfer-encoding") is None


def test_body_longer_than_declared_is_cut_to_the_length(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(b"GET /declared?cl=5&body=hello%20world HTTP/1.1\r\nHost: t\r\n\r\n")
        data = recv_until_closed(sock)  # the server closes after the 5 bytes
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 5" in head.lower(), head
    assert body == b"hello"


def test_body_shorter_than_declared_cuts_the_connection(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(b"GET /declared?cl=10&body=hello HTTP/1.1\r\nHost: t\r\n\r\n")
        data = recv_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 10" in head.lower(), head
    assert body == b"hello"  # fewer than the 10 declared: the client knows it is incomplete


def test_close_is_called_on_completion(wsgi_server):
    response = get(wsgi_server.port, "/tracked?mode=ok&tag=done")
    assert response.body == b"chunk1;chunk2;chunk3;"
    assert wait_app_event(wsgi_server, "done") == "closed"


def test_close_is_called_after_an_error_mid_iteration(server):
    srv = server.start(APP, *WSGI)
    received = assert_cut_chunked(srv.port, "/tracked?mode=error&tag=failed")
    assert b"partial" in received
    assert wait_app_event(srv, "failed") == "closed"


def test_close_is_called_when_the_client_disconnects(server):
    srv = server.start(APP, *WSGI)
    sock = raw_connection(srv.port)
    try:
        sock.sendall(b"GET /tracked?mode=endless&tag=gone HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = RawReader(sock)
        assert reader.read_head().status == 200
        reader.read_exact(200_000)
    finally:
        sock.close()
    assert wait_app_event(srv, "gone", timeout=10) == "closed"


def test_slow_reader_pauses_the_generator(server):
    srv = server.start(APP, *WSGI)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no autotuning
    sock.settimeout(10)
    try:
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(b"GET /produce?tag=slow&n=200 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(2.5)  # the client reads nothing meanwhile
        with http_client() as c:
            produced = c.get(f"{srv.url}/produced?tag=slow").json()["produced"]
        assert 1 <= produced < 20, f"{produced} MiB produced for a client that reads nothing"
    finally:
        sock.close()


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_file_wrapper_sends_the_file_and_closes_it(wsgi_server, big_file, with_length):
    tag = f"file-{with_length}"
    cl = "1" if with_length else "0"
    with http_client(timeout=30) as c:
        r = c.get(f"{wsgi_server.url}/file", params={"path": str(big_file), "cl": cl,
                                                     "tag": tag})
        assert r.status_code == 200
        assert r.content == big_file.read_bytes()
        if with_length:
            assert r.headers["content-length"] == str(big_file.stat().st_size)
        closed = wait_until(
            lambda: c.get(f"{wsgi_server.url}/file-closed", params={"tag": tag}).json()["closed"])
    assert closed is True


@pytest.mark.parametrize("skip, memory", [(10, "0"), (0, "1"), (100_000, "1")])
def test_file_wrapper_sends_from_where_the_app_left_the_file(wsgi_server, big_file, skip,
                                                            memory):
    """The engine sends a real file from the position the app's file object reports (its
    buffer has read ahead, so the descriptor is further on); a file-like object without a
    descriptor is sent by iterating the wrapper."""
    tag = f"file-skip-{skip}-{memory}"
    with http_client(timeout=30) as c:
        r = c.get(f"{wsgi_server.url}/file", params={"path": str(big_file), "cl": "1",
                                                     "tag": tag, "skip": str(skip),
                                                     "memory": memory})
        assert r.status_code == 200
        assert r.headers["content-length"] == str(big_file.stat().st_size - skip)
        assert r.content == big_file.read_bytes()[skip:]
        closed = wait_until(
            lambda: c.get(f"{wsgi_server.url}/file-closed", params={"tag": tag}).json()["closed"])
    assert closed is True


def test_file_wrapper_on_plain_http11_goes_out_with_sendfile(server, big_file):
    """A real file through wsgi.file_wrapper is sent by the kernel (sendfile(2)), from the
    app's position, byte for byte."""
    srv = server.start(APP, *WSGI, "--log-level", "debug")
    with http_client(timeout=30) as c:
        r = c.get(f"{srv.url}/file", params={"path": str(big_file), "cl": "1",
                                             "tag": "file-sendfile", "skip": "10"})
    assert r.content == big_file.read_bytes()[10:]
    size = big_file.stat().st_size - 10
    srv.wait_for_log(f"a file response: {size} bytes go out with sendfile(2)", timeout=5)


def test_file_wrapper_over_http2(wsgi_server, big_file):
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=30) as c:
        r = c.get(f"{wsgi_server.url}/file", params={"path": str(big_file), "cl": "1",
                                                     "tag": "file-h2"})
    assert r.http_version == "HTTP/2"
    assert r.content == big_file.read_bytes()


# --- exceptions ----------------------------------------------------------------------------------


def test_exception_before_the_response_is_a_500_and_logged(server):
    srv = server.start(APP, *WSGI)
    assert_clean_500(get(srv.port, "/raise-before?tag=early"))
    logs = srv.wait_for_log("boom-before-start early")
    assert "Exception in WSGI application" in logs
    assert "Traceback (most recent call last)" in logs
    assert "RuntimeError: boom-before-start early" in logs
    srv.wait_for_log(re.compile(r'"GET /raise-before\?tag=early HTTP/1\.1" 500'))
    assert get(srv.port, "/hello").status == 200


def test_the_500_is_the_servers_own_exact_response(server):
    """Byte for byte the 500 the server answers for an ASGI app that fails before it
    responds (tests/python/test_exactness.py)."""
    srv = server.start(APP, *WSGI, "--no-date-header", "--no-server-header")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /raise-before?tag=exact HTTP/1.1\r\nHost: t\r\n\r\n")
        data = recv_until_closed(sock)
    assert data == (b"HTTP/1.1 500 Internal Server Error\r\n"
                    b"content-type: text/plain; charset=utf-8\r\n"
                    b"connection: close\r\n"
                    b"content-length: 21\r\n\r\n"
                    b"Internal Server Error")


def test_exception_after_the_response_started_cuts_the_connection(server):
    srv = server.start(APP, *WSGI)
    assert_cut_chunked(srv.port, "/tracked?mode=error&tag=mid")
    logs = srv.wait_for_log("tracked failure mid")
    assert "Exception in WSGI application" in logs
    assert get(srv.port, "/hello").status == 200


# --- threads -------------------------------------------------------------------------------------


def _concurrent_sleeps(srv, count: int, seconds: float) -> tuple[float, list[dict]]:
    def one(i: int) -> dict:
        with http_client(timeout=30) as c:
            r = c.get(f"{srv.url}/sleep", params={"s": seconds, "tag": f"t{i}"})
            assert r.status_code == 200
            return r.json()

    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    return time.monotonic() - started, results


def test_thread_pool_runs_requests_in_parallel(server):
    srv = server.start(APP, "--interface", "wsgi", "--wsgi-threads", "4")
    elapsed, results = _concurrent_sleeps(srv, 8, 0.5)
    assert elapsed < 2.5, f"8 requests of 0.5 s on 4 threads took {elapsed:.2f}s"
    assert max(r["max_active"] for r in results) == 4
    names = {r["thread"] for r in results}
    assert all(name.startswith("ferricorn-wsgi") for name in names), names
    assert len(names) <= 4


def test_one_thread_serializes_requests(server):
    srv = server.start(APP, "--interface", "wsgi", "--wsgi-threads", "1")
    elapsed, results = _concurrent_sleeps(srv, 3, 0.3)
    assert max(r["max_active"] for r in results) == 1
    assert elapsed >= 0.85
    assert len({r["thread"] for r in results}) == 1


def test_app_runs_in_a_named_pool_thread(wsgi_server):
    report = json.loads(get(wsgi_server.port, "/thread-name").body)
    assert report["thread"].startswith("ferricorn-wsgi"), report["thread"]
    assert report["thread"] != "MainThread"


# --- serving policies ----------------------------------------------------------------------------


def test_timeout_request_gives_504_and_warns(server):
    srv = server.start(APP, *WSGI, "--timeout-request", "0.5")
    started = time.monotonic()
    response = get(srv.port, "/sleep?s=2&tag=late")
    elapsed = time.monotonic() - started
    assert response.status == 504, response.raw_head
    assert 0.4 <= elapsed < 1.9, f"504 after {elapsed:.2f}s, expected after about 0.5s"
    srv.wait_for_log(re.compile(r"^WARNING:.*GET.*/sleep", re.M))
    assert get(srv.port, "/hello").status == 200


def test_limit_concurrency_answers_503(server):
    srv = server.start(APP, "--interface", "wsgi", "--wsgi-threads", "1",
                       "--limit-concurrency", "1")
    holder = raw_connection(srv.port)
    try:
        holder.sendall(b"GET /sleep?s=1.5&tag=hold HTTP/1.1\r\nHost: t\r\n\r\n")
        srv.wait_for_log("WSGI-SLEEP-STARTED hold")
        started = time.monotonic()
        rejected = get(srv.port, "/hello")
        assert rejected.status == 503, rejected.raw_head
        assert time.monotonic() - started < 1.0, "the 503 must come at once"
        held = RawReader(holder).read_response()
        assert held.status == 200
    finally:
        holder.close()
    # The slot frees when the app's thread is done with the request (close() called), which
    # can be a moment after the client has the last byte: the next request may still be
    # refused for that moment, never for long.
    deadline = time.monotonic() + 2.0
    statuses = [get(srv.port, "/hello").status]
    while statuses[-1] == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
        statuses.append(get(srv.port, "/hello").status)
    assert statuses[-1] == 200, statuses


def test_keep_alive_several_requests_on_one_connection(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        reader = RawReader(sock)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"hello"
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        assert reader.read_response().body == b"abc"
        sock.sendall(b"GET /list?n=2&kind=gen HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"part0;part1;"
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"hello"


@pytest.mark.parametrize("engine_threads", ["0", "2"])
def test_any_engine_mode_serves_wsgi(server, engine_threads):
    """A WSGI app gets an engine thread by default; the engine on the loop thread (0) and
    several engine threads serve it the same, body and stream included."""
    srv = server.start(APP, *WSGI, "--engine-threads", engine_threads)
    with raw_connection(srv.port) as sock:
        reader = RawReader(sock)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        assert reader.read_response().body == b"abc"
        sock.sendall(b"GET /list?n=3&kind=gen HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"part0;part1;part2;"


def test_pipelined_requests_answered_in_order(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                     b"GET /list?n=2&kind=gen HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /slow-gen?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = RawReader(sock)
        bodies = [reader.read_response().body for _ in range(5)]
    assert bodies == [b"hello", b"abc", b"part0;part1;", b"firstsecond", b"w1w2i1i2"]


def test_unread_request_body_does_not_break_keep_alive(wsgi_server):
    with raw_connection(wsgi_server.port) as sock:
        reader = RawReader(sock)
        sock.sendall(b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789")
        assert reader.read_response().body == b"hello"
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        second = reader.read_response()
    assert (second.status, second.body) == (200, b"hello")


def test_http2(wsgi_server):
    payload = os.urandom(200_000)
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=20) as c:
        report = c.get(f"{wsgi_server.url}/h2?x=1").json()
        echoed = c.post(f"{wsgi_server.url}/echo", content=payload)
        streamed = c.get(f"{wsgi_server.url}/list?n=3&kind=gen")
        written = c.get(f"{wsgi_server.url}/write")
    env = report["environ"]
    assert env["SERVER_PROTOCOL"] == {"type": "str", "value": "HTTP/2"}
    assert env["PATH_INFO"]["value"] == "/h2"
    assert env["QUERY_STRING"]["value"] == "x=1"
    assert (echoed.http_version, echoed.content) == ("HTTP/2", payload)
    assert echoed.headers["x-env-content-length"] in (str(len(payload)), "absent")
    assert streamed.content == b"part0;part1;part2;"
    assert written.content == b"w1w2i1i2"


def test_access_log_line(server):
    srv = server.start(APP, *WSGI)
    with raw_connection(srv.port) as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(b"GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert RawReader(sock).read_response().status == 200
    pattern = re.compile(
        r'^INFO:     127\.0\.0\.1:(\d+) - "GET /hello\?x=1 HTTP/1\.1" 200( OK)?$', re.M)
    logs = srv.wait_for_log(pattern)
    assert int(pattern.search(logs).group(1)) == local_port
    assert len(log_lines(srv, '"GET /hello?x=1 HTTP/1.1"')) == 1
