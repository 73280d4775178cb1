"""End-to-end logging: the access log line, --no-access-log, escaping of control
characters, --log-config (JSON) and --log-level.

Served app: tests/apps/basic.py and tests/apps/errors_app.py.
"""

from __future__ import annotations

import json
import re

from conftest import RawReader, http_client, raw_connection

BASIC = "apps.basic:app"


def raw_get(port: int, target: str) -> int:
    """GET target on a new connection; returns the client's local port."""
    with raw_connection(port) as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert RawReader(sock).read_response().status in (200, 404)
    return local_port


def test_access_log_line_format(server):
    srv = server.start(BASIC)
    local_port = raw_get(srv.port, "/path?q=1")
    pattern = re.compile(
        r'^INFO:     127\.0\.0\.1:(\d+) - "GET /path\?q=1 HTTP/1\.1" 200( OK)?$', re.M
    )
    logs = srv.wait_for_log(pattern)
    assert int(pattern.search(logs).group(1)) == local_port


def test_access_log_http10_and_status(server):
    srv = server.start(BASIC)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /status/404 HTTP/1.0\r\n\r\n")
        assert RawReader(sock).read_response().status == 404
    srv.wait_for_log(re.compile(r'"GET /status/404 HTTP/1\.0" 404( Not Found)?$', re.M))


def test_no_access_log(server):
    srv = server.start(BASIC, "--no-access-log")
    with http_client() as client:
        assert client.get(srv.url + "/quiet?x=1").status_code == 200
    assert srv.stop() == 0  # everything the server would log has been written now
    logs = srv.logs()
    assert "/quiet" not in logs
    assert "Finished server process" in logs


def test_control_characters_escaped_in_access_log(server):
    srv = server.start(BASIC)
    raw_get(srv.port, "/a%0D%0AINFO:%20forged%1B[31mred")
    logs = srv.wait_for_log("forged")
    assert "\x1b" not in logs
    assert not any(line.startswith("INFO: forged") for line in logs.splitlines())
    line = next(line for line in logs.splitlines() if "forged" in line)
    assert '"GET /a\\r\\nINFO: forged' in line, line
    assert line.endswith(("200", "200 OK")), line


def test_log_config_json(server, tmp_path):
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"()": "ferricorn.logging.DefaultFormatter",
                      "fmt": "JSONCFG-ERR %(levelname)s %(message)s", "use_colors": False},
            "access": {"()": "ferricorn.logging.AccessFormatter",
                       "fmt": "JSONCFG-ACCESS %(client_addr)s | %(request_line)s | "
                              "%(status_code)s",
                       "use_colors": False},
        },
        "handlers": {
            "err": {"class": "logging.StreamHandler", "formatter": "plain",
                    "stream": "ext://sys.stderr"},
            "acc": {"class": "logging.StreamHandler", "formatter": "access",
                    "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "ferricorn": {"handlers": ["err"], "level": "INFO", "propagate": False},
            "ferricorn.error": {"level": "INFO"},
            "ferricorn.access": {"handlers": ["acc"], "level": "INFO", "propagate": False},
        },
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    srv = server.start(BASIC, "--log-config", str(path))
    local_port = raw_get(srv.port, "/configured")
    logs = srv.wait_for_log("JSONCFG-ACCESS")
    assert "JSONCFG-ERR INFO Ferricorn running on" in logs
    assert (f"JSONCFG-ACCESS 127.0.0.1:{local_port} | GET /configured HTTP/1.1 | 200"
            in logs), logs


def test_log_level_warning_hides_info(server):
    srv = server.start(BASIC, "--log-level", "warning", ready="connect")
    with http_client() as client:
        assert client.get(srv.url + "/hidden").status_code == 200
    assert srv.stop() == 0
    logs = srv.logs()
    assert "Started server process" not in logs
    assert "/hidden" not in logs


def test_app_exception_logged_as_error(server):
    srv = server.start("apps.errors_app:app")
    with http_client() as client:
        assert client.get(srv.url + "/raise-before").status_code == 500
    logs = srv.wait_for_log("deliberate failure before the response")
    assert re.search(r"^ERROR:\s+Exception in ASGI application", logs, re.M), logs
