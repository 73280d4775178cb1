"""Server features that must apply to WSGI apps (`--interface wsgi`) as they do to ASGI apps.

- Proxy headers (`--proxy-headers`, `--forwarded-allow-ips`): X-Forwarded-For and
  X-Forwarded-Proto from a trusted peer become REMOTE_ADDR / REMOTE_PORT and
  wsgi.url_scheme (the nearest untrusted hop of a chain, the first entry with '*'); without
  the flag or from an untrusted peer they are ignored. Every case is checked against the
  ASGI scope's client and scheme under the same flags too (tests/apps/scope_app.py).

(A SIGHUP rolling restart and `--reload` with a WSGI app are test_workers.py's tests of
them, run for both interfaces; `--root-path`, `--limit-concurrency`, `--timeout-request`,
metrics and the access log with WSGI apps are in test_wsgi.py, test_metrics.py and
test_access_log.py.)

Served apps: tests/apps/wsgi_features_app.py (anything but /pid reports the environ keys
looked at here as JSON), and tests/apps/scope_app.py for the ASGI side.
"""

from __future__ import annotations

import json

import pytest
from conftest import RawReader, raw_connection

APP = "apps.wsgi_features_app:app"
ASGI_APP = "apps.scope_app:app"
WSGI = ("--interface", "wsgi")


# --- proxy headers --------------------------------------------------------------------------------

#: Stands for the socket peer (127.0.0.1 and the client socket's own port) in CASES.
PEER = object()

CHAIN = "198.51.100.1, 203.0.113.7, 10.0.0.5"

#: id -> (flags, request headers, expected (REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme)).
#: A client named by X-Forwarded-For has port 0 in the ASGI scope, "0" in the environ.
CASES = {
    "trusted-by-default": (
        (),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        ("203.0.113.7", "0", "https"),
    ),
    "proxy-headers-flag": (
        ("--proxy-headers",),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        ("203.0.113.7", "0", "https"),
    ),
    "allow-address": (
        ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        ("203.0.113.7", "0", "https"),
    ),
    "allow-networks": (
        ("--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.0/8"),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        ("203.0.113.7", "0", "https"),
    ),
    "ipv6-client": (
        ("--proxy-headers",),
        [("X-Forwarded-For", "2001:db8::7"), ("X-Forwarded-Proto", "https")],
        ("2001:db8::7", "0", "https"),
    ),
    "proto-only": (("--proxy-headers",), [("X-Forwarded-Proto", "https")], (PEER, PEER, "https")),
    "proto-any-case": (
        ("--proxy-headers",),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "HTTPS")],
        ("203.0.113.7", "0", "https"),
    ),
    "for-only": (
        ("--proxy-headers",),
        [("X-Forwarded-For", "203.0.113.7")],
        ("203.0.113.7", "0", "http"),
    ),
    "unknown-proto": (
        ("--proxy-headers",),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "ftp")],
        ("203.0.113.7", "0", "http"),
    ),
    "chain-nearest-untrusted-hop": (
        ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"),
        [("X-Forwarded-For", CHAIN), ("X-Forwarded-Proto", "https")],
        ("203.0.113.7", "0", "https"),
    ),
    "chain-over-two-lines": (
        ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"),
        [
            ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
            ("X-Forwarded-For", "10.0.0.5"),
            ("X-Forwarded-Proto", "https"),
        ],
        ("203.0.113.7", "0", "https"),
    ),
    "chain-trust-all": (
        ("--proxy-headers", "--forwarded-allow-ips", "*"),
        [("X-Forwarded-For", CHAIN), ("X-Forwarded-Proto", "https")],
        ("198.51.100.1", "0", "https"),
    ),
    "no-proxy-headers": (
        ("--no-proxy-headers",),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        (PEER, PEER, "http"),
    ),
    "untrusted-network": (
        ("--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8"),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        (PEER, PEER, "http"),
    ),
    "untrusted-ipv6-only": (
        ("--proxy-headers", "--forwarded-allow-ips", "::1"),
        [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        (PEER, PEER, "http"),
    ),
}


@pytest.fixture(scope="module")
def servers(module_server):
    """One server per (app, flags), started on first use and kept for the module."""
    started = {}

    def get(app: str, flags: tuple[str, ...]):
        if (app, flags) not in started:
            started[app, flags] = module_server.start(app, *flags)
        return started[app, flags]

    return get


def ask(port: int, target: str, headers: list[tuple[str, str]]) -> tuple[dict, int]:
    """GET `target` with these headers on a new connection; returns the JSON answer and the
    client socket's port."""
    head = f"GET {target} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    with raw_connection(port) as sock:
        local_port = sock.getsockname()[1]
        sock.sendall(head.encode("latin-1"))
        response = RawReader(sock).read_response()
    assert response.status == 200, response.raw_head + response.body
    return json.loads(response.body), local_port


@pytest.mark.parametrize("case", list(CASES))
def test_proxy_headers_in_the_wsgi_environ(servers, case):
    flags, headers, (addr, port, scheme) = CASES[case]
    srv = servers(APP, WSGI + flags)
    environ, local_port = ask(srv.port, "/environ", headers)
    expected_addr = "127.0.0.1" if addr is PEER else addr
    expected_port = str(local_port) if port is PEER else port
    assert environ["REMOTE_ADDR"] == expected_addr
    assert environ["REMOTE_PORT"] == expected_port
    assert environ["wsgi.url_scheme"] == scheme
    # The server's own address is not touched by the headers.
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(srv.port))
    # The headers themselves reach the app as sent, believed or not (as in the ASGI scope).
    sent_for = [value for name, value in headers if name == "X-Forwarded-For"]
    sent_proto = [value for name, value in headers if name == "X-Forwarded-Proto"]
    assert environ["HTTP_X_FORWARDED_FOR"] == (", ".join(sent_for) if sent_for else None)
    assert environ["HTTP_X_FORWARDED_PROTO"] == (sent_proto[0] if sent_proto else None)

    # The same request under the same flags gives an ASGI app the same client and scheme.
    asgi = servers(ASGI_APP, flags)
    scope, local_port = ask(asgi.port, "/scope", headers)
    expected_client = ["127.0.0.1", local_port] if addr is PEER else [addr, int(port)]
    assert (scope["client"], scope["scheme"]) == ({"tuple": expected_client}, scheme)
