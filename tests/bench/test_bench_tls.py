"""The TLS and HTTP/2 set-up of the harness, with no server process: the certificate openssl
makes, each server's TLS flags and command line, which server runs which scenario, wrk's
https command line, and the readiness check's TLS context and HTTP/2 exchange, tried over a
socket pair against a peer in a thread.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the harness imports as bench.harness, from the repo root
    sys.path.insert(0, str(REPO))

from bench.harness.scenarios import SCENARIOS  # noqa: E402
from bench.harness.servers import (  # noqa: E402
    ALL_SERVERS,
    h2_exchange,
    missing_requirements,
    server_command,
    serves,
)
from bench.harness.tls import (  # noqa: E402
    TlsFiles,
    client_context,
    describe_tls,
    make_certificate,
    openssl_command,
    server_tls_flags,
)
from bench.harness.wrk import wrk_command  # noqa: E402

FILES = TlsFiles(cert=Path("/tmp/c/cert.pem"), key=Path("/tmp/c/key.pem"))
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_openssl_command(tmp_path):
    command = openssl_command(tmp_path)
    assert command[:3] == ["openssl", "req", "-x509"]
    assert command[command.index("-pkeyopt") + 1] == "ec_paramgen_curve:prime256v1"
    assert command[command.index("-keyout") + 1] == str(tmp_path / "key.pem")
    assert command[command.index("-out") + 1] == str(tmp_path / "cert.pem")
    assert "-nodes" in command  # the servers read the key without a password
    assert command[command.index("-addext") + 1] == "subjectAltName=DNS:localhost,IP:127.0.0.1"


@needs_openssl
def test_the_certificate_is_pkcs8_and_loads(certificate):
    # Granian reads PKCS#8 keys only ("BEGIN PRIVATE KEY", not "BEGIN EC PRIVATE KEY").
    assert certificate.key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert certificate.cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate.cert, certificate.key)


def test_openssl_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="openssl is not on PATH"):
        make_certificate(tmp_path)


def handshake(certificate: TlsFiles, server_hostname: str) -> str:
    """A TLS handshake over a socket pair: the server side with the certificate in a thread,
    the client side with the readiness check's context; returns describe_tls's text."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate.cert, certificate.key)
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)

    def serve() -> None:
        try:
            with server_context.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client_context(certificate).wrap_socket(right,
                                                     server_hostname=server_hostname) as tls:
            text = describe_tls(tls)
            tls.sendall(b"x")
            return text
    finally:
        right.close()
        thread.join(5)
        left.close()


@needs_openssl
def test_the_client_context_trusts_the_certificate_for_127_0_0_1(certificate):
    text = handshake(certificate, "127.0.0.1")
    assert text.startswith("TLSv1.3 TLS_")


@needs_openssl
def test_the_client_context_checks_the_name(certificate):
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certificate, "example.com")


def test_tls_flags_per_server():
    assert server_tls_flags("ferricorn", FILES) == [
        "--ssl-keyfile", "/tmp/c/key.pem", "--ssl-certfile", "/tmp/c/cert.pem"]
    assert server_tls_flags("uvicorn", FILES) == server_tls_flags("ferricorn", FILES)
    assert server_tls_flags("granian", FILES) == [
        "--ssl-keyfile", "/tmp/c/key.pem", "--ssl-certificate", "/tmp/c/cert.pem"]
    assert server_tls_flags("hypercorn", FILES) == [
        "--keyfile", "/tmp/c/key.pem", "--certfile", "/tmp/c/cert.pem"]
    assert server_tls_flags("hyper", FILES) == server_tls_flags("ferricorn", FILES)
    with pytest.raises(ValueError):
        server_tls_flags("gunicorn-sync", FILES)


def test_which_server_runs_which_scenario():
    runs = {name: [s for s in ALL_SERVERS if serves(s, SCENARIOS[name])]
            for name in ("hello", "json", "tls-hello", "tls-handshakes", "h2-hello",
                         "h2-stream")}
    assert runs == {
        "hello": ["ferricorn", "granian", "uvicorn", "hyper"],
        "json": ["ferricorn", "granian", "uvicorn"],
        "tls-hello": ["ferricorn", "granian", "uvicorn", "hypercorn", "hyper"],
        "tls-handshakes": ["ferricorn", "granian", "uvicorn", "hypercorn", "hyper"],
        "h2-hello": ["ferricorn", "granian", "hypercorn", "hyper"],
        "h2-stream": ["ferricorn", "granian", "hypercorn"],
    }
    assert server_command("uvicorn", SCENARIOS["h2-hello"], 1, []) is None
    assert server_command("hypercorn", SCENARIOS["hello"], 1, []) is None


def test_command_lines_over_tls():
    tls_hello = SCENARIOS["tls-hello"]
    ferricorn = server_command("ferricorn", tls_hello, 8443, ["--x"], FILES)
    assert ferricorn[1:] == [
        "-m", "ferricorn", "bench.apps.hello:app", "--port", "8443", "--no-access-log",
        "--log-level", "warning", "--ssl-keyfile", "/tmp/c/key.pem", "--ssl-certfile",
        "/tmp/c/cert.pem", "--x"]
    granian = server_command("granian", tls_hello, 8443, [], FILES)
    assert granian[granian.index("--http") + 1] == "1"
    assert granian[-5:] == ["--ssl-keyfile", "/tmp/c/key.pem", "--ssl-certificate",
                            "/tmp/c/cert.pem", "bench.apps.hello:app"]
    uvicorn = server_command("uvicorn", tls_hello, 8443, [], FILES)
    assert uvicorn[-4:] == ["--ssl-keyfile", "/tmp/c/key.pem", "--ssl-certfile",
                            "/tmp/c/cert.pem"]
    hypercorn = server_command("hypercorn", tls_hello, 8443, [], FILES)
    assert hypercorn[1:] == [
        "-m", "hypercorn", "--bind", "127.0.0.1:8443", "--workers", "1", "--worker-class",
        "uvloop", "--log-level", "warning", "--keyfile", "/tmp/c/key.pem", "--certfile",
        "/tmp/c/cert.pem", "bench.apps.hello:app"]
    hyper = server_command("hyper", tls_hello, 8443, [], FILES)
    assert hyper[1:] == ["--port", "8443", "--ssl-keyfile", "/tmp/c/key.pem",
                         "--ssl-certfile", "/tmp/c/cert.pem"]
    with pytest.raises(ValueError, match="needs a certificate"):
        server_command("ferricorn", tls_hello, 8443, [])


def test_command_lines_over_h2c():
    h2 = SCENARIOS["h2-stream"]
    granian = server_command("granian", h2, 8080, [])
    assert granian[granian.index("--http") + 1] == "2"
    assert granian[-1] == "bench.apps.stream_10:app"
    ferricorn = server_command("ferricorn", h2, 8080, [])
    assert not any(part.startswith("--http") or "ssl" in part for part in ferricorn)
    hypercorn = server_command("hypercorn", h2, 8080, [])
    assert "--keyfile" not in hypercorn and hypercorn[-1] == "bench.apps.stream_10:app"
    # The ceiling of h2-hello serves h2c; h2-stream's app has none.
    assert server_command("hyper", SCENARIOS["h2-hello"], 8080, [])[1:] == [
        "--port", "8080", "--h2"]
    assert server_command("hyper", h2, 8080, []) is None
    # The plain scenarios keep Granian on HTTP/1.1.
    plain = server_command("granian", SCENARIOS["hello"], 8080, [])
    assert plain[plain.index("--http") + 1] == "1"


def test_wrk_over_tls():
    command = wrk_command(SCENARIOS["tls-hello"], 40123, duration=5.0, threads=1)
    assert command[-1] == "https://127.0.0.1:40123/"
    assert "-H" not in command
    handshakes = wrk_command(SCENARIOS["tls-handshakes"], 40123, duration=5.0, threads=1)
    assert handshakes[-3:] == ["-H", "Connection: close", "https://127.0.0.1:40123/"]


def test_requirements_of_the_new_scenarios(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    problems = missing_requirements(["granian"], ["tls-hello", "h2-hello"])
    assert "wrk is not on PATH (apt-get install wrk)" in problems
    assert "h2load is not on PATH (apt-get install nghttp2-client)" in problems
    assert any(p.startswith("openssl is not on PATH") for p in problems)
    # Hypercorn is only looked for when a scenario it runs is selected.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "hypercorn" else real(name))
    assert not any("hypercorn" in p for p in missing_requirements(["hypercorn"], ["hello"]))
    assert f"hypercorn is not installed in {sys.prefix}" in missing_requirements(
        ["hypercorn"], ["h2-hello"])


def test_h2_exchange_over_a_socket_pair():
    pytest.importorskip("h2")
    import h2.config
    import h2.connection
    import h2.events

    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    seen: dict[str, object] = {}

    def serve() -> None:
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        left.sendall(conn.data_to_send())
        while data := left.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    seen["headers"] = dict(event.headers)
                    conn.send_headers(event.stream_id, [(":status", "200")])
                    conn.send_data(event.stream_id, b"Hello, ")
                    conn.send_data(event.stream_id, b"world!", end_stream=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    seen["goaway"] = True
                    return
            left.sendall(conn.data_to_send())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        status, body = h2_exchange(right, "http", "127.0.0.1:8080", "GET", "/")
    finally:
        right.close()
        thread.join(5)
        left.close()
    assert (status, body) == (200, b"Hello, world!")
    assert seen["headers"] == {":method": "GET", ":scheme": "http",
                               ":authority": "127.0.0.1:8080", ":path": "/"}
    assert seen["goaway"] is True  # the client closes the connection cleanly


def test_h2_exchange_on_a_peer_that_closes():
    pytest.importorskip("h2")
    left, right = socket.socketpair()
    right.settimeout(5)
    left.close()  # an HTTP/1.1-only server would answer the preface with an error and close
    with pytest.raises(ConnectionError):
        h2_exchange(right, "http", "127.0.0.1:8080", "GET", "/")
    right.close()
