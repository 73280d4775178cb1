"""Certificate renewal without a restart: SIGHUP (one process) or SIGUSR1 (any number of
workers, passed on by the supervisor) loads the certificate and key files again. New
handshakes get the new certificate; connections already open go on; a file that cannot be
loaded keeps the previous certificate and says why."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import time

import pytest

pytestmark = pytest.mark.timeout(60)


def served_subject(pki, port: int) -> str:
    """The common name of the certificate a new TLS connection is given."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
    return subject["commonName"]


def get(tls: ssl.SSLSocket) -> bytes:
    """One keep-alive request on an open TLS connection; returns the whole response."""
    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"Hello, world!" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    return data


@pytest.fixture
def cert_files(pki, tmp_path):
    """The files the server is started with, which a test then replaces (a renewal)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki["chain"], cert)
    shutil.copy(pki["key"], key)
    return cert, key


def renew(pki, cert_files) -> None:
    cert, key = cert_files
    shutil.copy(pki["renewed_chain"], cert)
    shutil.copy(pki["renewed_key"], key)


def wait_count(srv, needle: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while srv.logs().count(needle) < count:
        assert time.monotonic() < deadline, f"{needle!r} not {count}x in: {srv.logs()}"
        time.sleep(0.05)


def test_sighup_reloads_the_certificate_and_open_connections_go_on(server, pki, cert_files):
    cert, key = cert_files
    srv = server.start("apps.basic:app", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    assert served_subject(pki, srv.port) == "localhost"
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as before:
        assert get(before).startswith(b"HTTP/1.1 200 OK\r\n")
        renew(pki, cert_files)
        srv.send_signal(signal.SIGHUP)
        srv.wait_for_log(f"SIGHUP: reloaded the TLS certificate {cert} and key {key}")
        assert served_subject(pki, srv.port) == "localhost renewed"
        # The connection made before the reload goes on with what it agreed.
        assert get(before).startswith(b"HTTP/1.1 200 OK\r\n")
    assert srv.alive()


def test_a_bad_file_keeps_the_previous_certificate(server, pki, cert_files):
    cert, key = cert_files
    srv = server.start("apps.basic:app", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    key.write_text("not a key\n")
    srv.send_signal(signal.SIGHUP)
    line = srv.wait_for_log("SIGHUP: the TLS certificate was not reloaded")
    assert str(key) in line
    assert served_subject(pki, srv.port) == "localhost"
    assert srv.alive()


def test_sigusr1_reloads_every_worker_in_place(server, pki, cert_files):
    cert, key = cert_files
    srv = server.start("apps.basic:app", "--workers", "2", "--ssl-certfile", str(cert),
                       "--ssl-keyfile", str(key))
    wait_count(srv, "] INFO:     Ferricorn running on", 2)  # both workers serve
    time.sleep(0.3)  # the supervisor has read both workers' "ready"
    renew(pki, cert_files)
    srv.send_signal(signal.SIGUSR1)
    wait_count(srv, "SIGUSR1: reloaded the TLS certificate", 2)
    # The kernel spreads connections across both workers: every one gets the renewal.
    assert {served_subject(pki, srv.port) for _ in range(20)} == {"localhost renewed"}
    assert "Started worker 3" not in srv.logs(), "no worker was replaced"
    assert srv.alive()
