"""End-to-end: the access line (uvicorn's and `--access-log-format` with every gunicorn
atom), JSON logs with the request's fields, and request ids (`--request-id-header`), for
ASGI and WSGI apps, over HTTP/1.0, 1.1 and 2.

The engine writes access lines straight to the default handler's stream, or through
Python's `logging` for any other configuration: the same requests are checked both ways.

Served apps: tests/apps/logs_app.py (`app`, ASGI, and `wsgi_app`, WSGI).
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import time

import httpx
import pytest
from conftest import RawReader, http_client, raw_connection

ASGI = "apps.logs_app:app"
WSGI = "apps.logs_app:wsgi_app"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def raw_request(port: int, request: bytes, method: str = "GET") -> tuple[int, int]:
    """Sends one request on a new connection; returns (the client's port, the status)."""
    with raw_connection(port) as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(request)
        status = RawReader(sock).read_response(method).status
    return local_port, status


def file_logging(tmp_path, access_fmt: str | None = None, json_records: bool = False) -> str:
    """A --log-config sending the access logger to a file (through Python's logging, as any
    configuration other than the shipped one), with the shipped formatter (or JSON)."""
    formatter = {"()": "ferricorn.logging.AccessFormatter", "use_colors": False}
    if access_fmt is not None:
        formatter["fmt"] = access_fmt
    if json_records:
        formatter = {"()": "ferricorn.logging.JsonFormatter"}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"access": formatter,
                       "default": {"()": "ferricorn.logging.DefaultFormatter"}},
        "handlers": {
            "access": {
                "class": "logging.FileHandler",
                "formatter": "access",
                "filename": str(tmp_path / "access.log"),
            },
            "default": {"class": "logging.StreamHandler", "formatter": "default"},
        },
        "loggers": {
            "ferricorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "ferricorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
    path = tmp_path / "log-config.json"
    path.write_text(json.dumps(config))
    return str(path)


def wait_for_lines(read, count: int, timeout: float = 10.0) -> list[str]:
    """The first `count` lines `read()` returns, waiting for them (the writer batches)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in read().splitlines() if line]
        if len(lines) >= count:
            return lines[:count]
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} lines, got:\n" + "\n".join(lines))
        time.sleep(0.02)


def access_lines(srv, count: int, marker: str = ' - "') -> list[str]:
    """Access lines (those with `marker`) of a default-configured server's output."""
    def read() -> str:
        return "\n".join(line for line in srv.logs().splitlines() if marker in line)

    return wait_for_lines(read, count)


# -- uvicorn's line ------------------------------------------------------------------------

REQUESTS = [
    # (request bytes, method, expected request part of the line, status)
    (b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", "GET", '"GET /hello HTTP/1.1" 200 OK', 200),
    (b"GET /a%20b%2Fc?q=1&r=%20 HTTP/1.1\r\nHost: t\r\n\r\n", "GET",
     '"GET /a b/c?q=1&r=%20 HTTP/1.1" 404 Not Found', 404),
    (b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD", '"HEAD /hello HTTP/1.1" 200 OK', 200),
    (b"GET /hello HTTP/1.0\r\n\r\n", "GET", '"GET /hello HTTP/1.0" 200 OK', 200),
    (b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n", "GET",
     '"GET /boom HTTP/1.1" 500 Internal Server Error', 500),
    (b"GET /x%0D%0AINFO:%20forged HTTP/1.1\r\nHost: t\r\n\r\n", "GET",
     '"GET /x\\r\\nINFO: forged HTTP/1.1" 404 Not Found', 404),
]


@pytest.mark.parametrize("app", [ASGI, WSGI])
@pytest.mark.parametrize("through", ["direct", "logging"])
def test_uvicorn_line_is_the_same_written_directly_or_through_logging(
    server, tmp_path, app, through
):
    flags = ["--log-config", file_logging(tmp_path)] if through == "logging" else []
    srv = server.start(app, *flags)
    ports = []
    for request, method, _, status in REQUESTS:
        port, got = raw_request(srv.port, request, method)
        assert got == status
        ports.append(port)
    if through == "logging":
        lines = wait_for_lines(lambda: (tmp_path / "access.log").read_text(), len(REQUESTS))
    else:
        lines = access_lines(srv, len(REQUESTS))
    expected = [
        f"INFO:     127.0.0.1:{port} - {part}"
        for port, (_, _, part, _) in zip(ports, REQUESTS, strict=True)
    ]
    assert lines == expected


def test_http2_request_is_logged_as_http2(server):
    srv = server.start(ASGI)
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        response = client.get(f"{srv.url}/hello")
    assert response.http_version == "HTTP/2"
    (line,) = access_lines(srv, 1)
    assert re.fullmatch(r'INFO:     127\.0\.0\.1:\d+ - "GET /hello HTTP/2" 200 OK', line)


def test_engine_refusals_are_logged(server):
    srv = server.start(ASGI, "--limit-request-body", "10")
    port, status = raw_request(
        srv.port, b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n0123456789a"
    )
    assert status == 413
    (line,) = access_lines(srv, 1)
    expected = '"POST /hello HTTP/1.1" 413 Request Entity Too Large'
    assert line == f"INFO:     127.0.0.1:{port} - {expected}"


def test_no_access_log_writes_no_line(server):
    srv = server.start(ASGI, "--no-access-log")
    raw_request(srv.port, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert srv.stop() == 0
    assert ' - "GET' not in srv.logs()


def test_lines_queued_at_shutdown_are_written(server):
    srv = server.start(ASGI)
    for _ in range(50):
        raw_request(srv.port, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert srv.stop() == 0
    assert srv.logs().count('"GET /hello HTTP/1.1" 200 OK') == 50


# -- gunicorn's atoms ----------------------------------------------------------------------

ATOMS = "h l u t r m U q H s b B f a T D M L p {x-trace}i {etag}o".split()
ATOM_FORMAT = "|".join(f"%({atom})s" for atom in ATOMS) + "|100%%"


def parse_atoms(line: str) -> dict[str, str]:
    # `t` holds no "|"; the trailing field is the literal.
    fields = line.split("|")
    assert fields[-1] == "100%", line
    return dict(zip(ATOMS, fields[:-1], strict=True))


@pytest.mark.parametrize("app", [ASGI, WSGI])
@pytest.mark.parametrize("through", ["direct", "logging"])
def test_every_access_log_atom(server, tmp_path, app, through):
    flags = ["--access-log-format", ATOM_FORMAT]
    if through == "logging":
        flags += ["--log-config", file_logging(tmp_path, access_fmt="%(message)s")]
    srv = server.start(app, *flags)
    auth = base64.b64encode(b"alice:s3cret").decode()
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    full_port, status = raw_request(
        srv.port,
        b"GET /hello?q=1&r=2 HTTP/1.1\r\nHost: t\r\n"
        + f"Authorization: Basic {auth}\r\n".encode()
        + b"Referer: http://example.com/from\r\nUser-Agent: probe/1.0\r\n"
        + b"X-Trace: trace-7\r\n\r\n",
    )
    assert status == 200
    bare_port, status = raw_request(srv.port, b"HEAD /bytes/7 HTTP/1.0\r\n\r\n", "HEAD")
    assert status == 200
    _, status = raw_request(srv.port, b"GET /bytes/7 HTTP/1.1\r\nHost: t\r\n\r\n")
    after = datetime.datetime.now(datetime.timezone.utc)
    if through == "logging":
        lines = wait_for_lines(lambda: (tmp_path / "access.log").read_text(), 3)
    else:
        lines = access_lines(srv, 3, marker="|100%")
    full, bare, seven = (parse_atoms(line) for line in lines)

    pid = f"<{srv.proc.pid}>"
    assert {k: full[k] for k in "h l u r m U q H s b B f a p {x-trace}i {etag}o".split()} == {
        "h": "127.0.0.1",
        "l": "-",
        "u": "alice",
        "r": "GET /hello?q=1&r=2 HTTP/1.1",
        "m": "GET",
        "U": "/hello",
        "q": "q=1&r=2",
        "H": "HTTP/1.1",
        "s": "200",
        "b": "5",
        "B": "5",
        "f": "http://example.com/from",
        "a": "probe/1.0",
        "p": pid,
        "{x-trace}i": "trace-7",
        "{etag}o": '"v1"',
    }
    # HEAD: no body bytes ("-" in CLF), no request headers.
    assert {k: bare[k] for k in "u r q H s b B f a {x-trace}i {etag}o".split()} == {
        "u": "-",
        "r": "HEAD /bytes/7 HTTP/1.0",
        "q": "",
        "H": "HTTP/1.0",
        "s": "200",
        "b": "-",
        "B": "0",
        "f": "-",
        "a": "-",
        "{x-trace}i": "-",
        "{etag}o": "-",
    }
    assert (seven["b"], seven["B"]) == ("7", "7")
    for record in (full, bare, seven):
        micros = int(record["D"])
        assert int(record["T"]) == micros // 1_000_000
        assert int(record["M"]) == micros // 1000
        assert abs(float(record["L"]) - micros / 1e6) <= 1.5e-6
        assert re.fullmatch(r"\d+\.\d{6}", record["L"])
        when = datetime.datetime.strptime(record["t"], "[%d/%b/%Y:%H:%M:%S %z]")
        assert before - datetime.timedelta(seconds=1) <= when <= after, record["t"]
    assert bare_port != full_port


def test_bad_access_log_format_is_a_usage_error(server):
    finished = server.run(ASGI, "--access-log-format", "%(h)s %(nope)s")
    assert finished.returncode == 2
    assert "unknown access log atom %(nope)s" in finished.output


# -- JSON logs and the request's fields ---------------------------------------------------


def json_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_for_record(srv, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for record in json_records(srv.logs()):
            if predicate(record):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no such record in:\n{srv.logs()}")
        time.sleep(0.02)


@pytest.mark.parametrize("app", [ASGI, WSGI])
def test_json_log_records_carry_the_request(server, app):
    srv = server.start(app, "--log-format", "json", "--request-id-header")
    port, status = raw_request(
        srv.port, b"GET /hello?x=1 HTTP/1.1\r\nHost: t\r\nX-Request-ID: req-1\r\n\r\n"
    )
    assert status == 200
    access = wait_for_record(srv, lambda r: r["logger"] == "ferricorn.access")
    duration = access.pop("duration_ms")
    when = datetime.datetime.fromisoformat(access.pop("time").replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 60
    assert isinstance(duration, float) and 0 <= duration < 10_000
    assert access == {
        "level": "INFO",
        "logger": "ferricorn.access",
        "message": f'127.0.0.1:{port} - "GET /hello?x=1 HTTP/1.1" 200',
        "client_addr": f"127.0.0.1:{port}",
        "method": "GET",
        "path": "/hello",
        "query": "x=1",
        "http_version": "1.1",
        "status_code": 200,
        "response_bytes": 5,
        "request_id": "req-1",
        "worker_pid": srv.proc.pid,
    }

    port, status = raw_request(srv.port, b"GET /boom?y=2 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 500
    error = wait_for_record(srv, lambda r: r["level"] == "ERROR")
    assert error["logger"] == "ferricorn.error"
    assert error["message"].startswith("Exception in ")
    assert "Boom: the app failed on purpose" in error["exc_info"]
    assert UUID4.match(error.pop("request_id"))
    assert {k: error[k] for k in ("client_addr", "method", "path", "query", "http_version",
                                  "worker_pid")} == {
        "client_addr": f"127.0.0.1:{port}",
        "method": "GET",
        "path": "/boom",
        "query": "y=2",
        "http_version": "1.1",
        "worker_pid": srv.proc.pid,
    }
    failed = wait_for_record(
        srv, lambda r: r["logger"] == "ferricorn.access" and r["status_code"] == 500
    )
    assert failed["path"] == "/boom"
    # Server messages are JSON too, without request fields.
    started = wait_for_record(srv, lambda r: r["message"].startswith("Started server process"))
    assert "client_addr" not in started


@pytest.mark.parametrize("app", [ASGI, WSGI])
def test_a_timeout_warning_carries_the_request(server, app):
    srv = server.start(app, "--log-format", "json", "--timeout-request", "0.5",
                       "--request-id-header")
    port, status = raw_request(
        srv.port, b"GET /slow?n=1 HTTP/1.1\r\nHost: t\r\nX-Request-ID: slow-1\r\n\r\n")
    assert status == 504
    warning = wait_for_record(srv, lambda r: r["level"] == "WARNING"
                              and r["message"].startswith("Request timed out"))
    assert {k: warning.get(k) for k in ("client_addr", "method", "path", "query",
                                        "http_version", "request_id", "worker_pid")} == {
        "client_addr": f"127.0.0.1:{port}",
        "method": "GET",
        "path": "/slow",
        "query": "n=1",
        "http_version": "1.1",
        "request_id": "slow-1",
        "worker_pid": srv.proc.pid,
    }


def test_json_formatter_in_a_log_config(server, tmp_path):
    srv = server.start(ASGI, "--log-config", file_logging(tmp_path, json_records=True))
    port, _ = raw_request(srv.port, b"GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n")
    (line,) = wait_for_lines(lambda: (tmp_path / "access.log").read_text(), 1)
    record = json.loads(line)
    assert record["client_addr"] == f"127.0.0.1:{port}"
    assert (record["path"], record["status_code"], record["response_bytes"]) == ("/bytes/3", 200, 3)
    assert record["request_id"] is None


# -- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("app", [ASGI, WSGI])
def test_request_id_taken_generated_and_shown_to_the_app(server, app):
    srv = server.start(app, "--request-id-header")
    with http_client() as client:
        given = client.get(f"{srv.url}/id", headers={"X-Request-ID": "abc-123.DEF_4:5"})
        assert given.headers.get_list("x-request-id") == ["abc-123.DEF_4:5"]
        assert given.text == "abc-123.DEF_4:5"

        made = [client.get(f"{srv.url}/id") for _ in range(2)]
        for response in made:
            assert UUID4.match(response.headers["x-request-id"])
            assert response.text == response.headers["x-request-id"]
        assert made[0].text != made[1].text

        for bad in ("has spaces", "quote\"d", "x" * 201):
            replaced = client.get(f"{srv.url}/id", headers={"X-Request-ID": bad})
            assert UUID4.match(replaced.text), bad
            assert replaced.headers["x-request-id"] == replaced.text

        own = client.get(f"{srv.url}/own-id", headers={"X-Request-ID": "from-client"})
        assert own.headers.get_list("x-request-id") == ["app-chosen"]


def test_request_id_off_by_default(server):
    srv = server.start(ASGI)
    with http_client() as client:
        response = client.get(f"{srv.url}/id", headers={"X-Request-ID": "abc"})
    assert response.text == "none"
    assert "x-request-id" not in response.headers


def test_request_id_custom_header_over_http2(server):
    srv = server.start(ASGI, "--request-id-header", "X-Trace-Id")
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        taken = client.get(f"{srv.url}/id", headers={"x-trace-id": "t-1"})
        made = client.get(f"{srv.url}/id")
    assert taken.http_version == "HTTP/2"
    assert (taken.text, taken.headers["x-trace-id"]) == ("t-1", "t-1")
    assert UUID4.match(made.headers["x-trace-id"]) and made.text == made.headers["x-trace-id"]
    assert "x-request-id" not in made.headers


def test_request_id_on_engine_answers(server):
    srv = server.start(ASGI, "--request-id-header", "--limit-request-body", "4")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /id HTTP/1.1\r\nHost: t\r\nX-Request-ID: big-1\r\n"
                     b"Content-Length: 5\r\n\r\n12345")
        response = RawReader(sock).read_response()
    assert response.status == 413
    assert response.header("x-request-id") == "big-1"


def test_a_client_leaving_mid_body_gets_no_access_line(server):
    """A small body is read whole before the app runs: a client that leaves halfway is
    answered by nobody, so no line says it was."""
    srv = server.start(ASGI)
    size = 1_000
    with raw_connection(srv.port) as sock:
        sock.sendall(f"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n"
                     .encode() + b"x" * (size // 2))
    # The next request's line is the only one: nothing was answered to the first.
    port, status = raw_request(srv.port, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200
    (line,) = access_lines(srv, 1)
    assert line == f'INFO:     127.0.0.1:{port} - "GET /hello HTTP/1.1" 200 OK'
    time.sleep(0.3)  # a line for the first request would be written by now
    assert access_lines(srv, 1) == [line]
    assert "POST /hello" not in srv.logs()
