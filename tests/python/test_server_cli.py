"""End-to-end command line of the real server: app loading errors, usage errors, where to
listen (--port 0, FERRICORN_PORT, --uds, --fd) and response header options.

Served app: tests/apps/basic.py.
"""

from __future__ import annotations

import re
import socket

import httpx
from conftest import free_port, http_client

BASIC = "apps.basic:app"


def test_unimportable_module_one_line_error(server):
    result = server.run("nosuchmodule_xyz:app")
    assert result.returncode != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].endswith('Error loading ASGI app. Could not import module "nosuchmodule_xyz".')


def test_missing_attribute_error(server):
    result = server.run("apps.basic:nope")
    assert result.returncode != 0
    assert "Traceback" not in result.output
    assert 'Attribute "nope" not found in module "apps.basic".' in result.output


def test_import_error_inside_app_module_shows_traceback(server):
    result = server.run("apps.broken_import:app")
    assert result.returncode != 0
    assert "a_module_that_is_not_installed" in result.output
    assert "Traceback" in result.output


def test_unknown_flag_exits_2(server):
    result = server.run(BASIC, "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in result.output


def test_bad_option_value_exits_2(server):
    result = server.run(BASIC, "--port", "notaport")
    assert result.returncode == 2
    assert "Error:" in result.output


def test_missing_app_exits_2(server):
    result = server.run(None)
    assert result.returncode == 2


def test_port_zero_picks_a_free_port(server):
    srv = server.start(BASIC, "--port", "0")
    assert srv.port and srv.port != 0
    with http_client() as client:
        assert client.get(srv.url + "/").text == "Hello, world!"
    assert srv.stop() == 0


def test_port_from_environment(server):
    port = free_port()
    srv = server.start(BASIC, env={"FERRICORN_PORT": str(port)})
    assert srv.port == port
    with http_client() as client:
        assert client.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"
    assert srv.stop() == 0


def test_uds(server, tmp_path):
    path = str(tmp_path / "srv.sock")
    srv = server.start(BASIC, "--uds", path)
    assert f"unix socket {path}" in srv.logs()
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), trust_env=False,
                      timeout=10) as client:
        response = client.get("http://localhost/")
    assert response.text == "Hello, world!"
    assert srv.stop() == 0


def test_fd_inherited_socket(server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        fd = sock.fileno()
        srv = server.start(BASIC, "--fd", str(fd), pass_fds=(fd,))
    finally:
        sock.close()  # the server holds its own copy
    assert srv.port == port
    with http_client() as client:
        assert client.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"
    assert srv.stop() == 0


def test_extra_headers(server):
    srv = server.start(BASIC, "--header", "X-Team: ml", "--header", "X-Build:42")
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert response.headers["x-team"] == "ml"
    assert response.headers["x-build"] == "42"
    assert response.headers["server"] == "ferricorn"
    assert "date" in response.headers


def test_no_server_and_no_date_header(server):
    srv = server.start(BASIC, "--no-server-header", "--no-date-header")
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert response.status_code == 200
    assert "server" not in response.headers
    assert "date" not in response.headers


def test_date_header_format(server):
    srv = server.start(BASIC)
    with http_client() as client:
        date = client.get(srv.url + "/").headers["date"]
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", date)


def test_startup_log_lines(server):
    srv = server.start(BASIC)
    logs = srv.logs()
    assert "Started server process" in logs
    assert f"Ferricorn running on http://127.0.0.1:{srv.port} (Press CTRL+C to quit)" in logs


def test_port_in_use_fails(server):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        result = server.run(BASIC, "--port", str(port))
    finally:
        blocker.close()
    assert result.returncode == 1
    assert "Could not bind" in result.output or "in use" in result.output.lower()
