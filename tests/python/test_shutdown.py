"""End-to-end graceful shutdown: in-flight requests complete while new connections are
refused, --timeout-graceful-shutdown cancels what is left, idle connections do not hold
up the exit, and a second signal forces it.

Served app: tests/apps/lifespan_app.py (/sleep?s=N logs SLEEP-STARTED, then answers).
"""

from __future__ import annotations

import signal
import socket
import time

import pytest
from conftest import RawReader, http_client, is_closed, raw_connection

APP = "apps.lifespan_app:app"


def start_slow_request(srv, seconds: float) -> socket.socket:
    sock = raw_connection(srv.port, timeout=60)
    sock.sendall(f"GET /sleep?s={seconds} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    srv.wait_for_log("SLEEP-STARTED")
    return sock


def wait_until_refused(port: int, timeout: float) -> float:
    """Seconds until a new TCP connection is refused (AssertionError after timeout)."""
    start = time.monotonic()
    while True:
        try:
            probe = socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            return time.monotonic() - start
        probe.close()
        if time.monotonic() - start > timeout:
            raise AssertionError(f"new connections still accepted {timeout}s after the signal")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_in_flight_request_completes(server, tmp_path, sig):
    marker = tmp_path / "marker.txt"
    srv = server.start(APP, env={"FERRI_TEST_MARKER": str(marker)})
    slow = start_slow_request(srv, 3)
    try:
        srv.send_signal(sig)
        # New connections are refused while the in-flight request is still running
        # (it sleeps 3 s; the bound leaves room for a slow machine).
        wait_until_refused(srv.port, timeout=2.0)
        response = RawReader(slow).read_response()
    finally:
        slow.close()
    assert response.status == 200
    assert response.body == b"slept"
    assert srv.wait() == 0
    assert marker.read_text() == "startup shutdown"
    logs = srv.logs()
    assert "Shutting down" in logs
    assert "Application shutdown complete." in logs


def test_graceful_timeout_cancels_long_request(server, tmp_path):
    marker = tmp_path / "marker.txt"
    srv = server.start(APP, "--timeout-graceful-shutdown", "1",
                       env={"FERRI_TEST_MARKER": str(marker)})
    slow = start_slow_request(srv, 30)
    try:
        start = time.monotonic()
        srv.send_signal(signal.SIGINT)
        code = srv.wait(timeout=15)
        elapsed = time.monotonic() - start
        assert is_closed(slow, timeout=5.0), "the cancelled request's connection stayed open"
    finally:
        slow.close()
    assert elapsed < 6.0, f"exit took {elapsed:.1f}s with --timeout-graceful-shutdown 1"
    assert code == 0, srv.logs()
    assert marker.read_text() == "startup shutdown"


def seconds_to_stop(srv, open_connection: socket.socket, sig: signal.Signals) -> float:
    """Stops the server with `sig` (exit 0) while `open_connection` is open, checks that the
    connection is closed too, and returns how long the exit took."""
    start = time.monotonic()
    assert srv.stop(sig) == 0
    elapsed = time.monotonic() - start
    assert is_closed(open_connection, timeout=2.0)
    return elapsed


def test_idle_keep_alive_connection_does_not_delay_exit(server):
    srv = server.start(APP)  # default keep-alive timeout: 5 s
    with raw_connection(srv.port) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert RawReader(idle).read_response().status == 200
        elapsed = seconds_to_stop(srv, idle, signal.SIGINT)
    assert elapsed < 3.0, f"an idle keep-alive connection held the exit for {elapsed:.1f}s"


def test_connection_accepted_before_the_signal_is_still_served(server):
    # A client that connected just before the drain began sends its request a moment later
    # (a rolling restart lost such a request once): it gets its answer, with
    # `Connection: close`, rather than a connection closed under it.
    srv = server.start(APP)
    fresh = raw_connection(srv.port)
    try:
        time.sleep(0.3)  # accepted: the server is waiting for its first byte
        srv.send_signal(signal.SIGTERM)
        srv.wait_for_log("Shutting down")
        time.sleep(0.1)
        fresh.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        response = RawReader(fresh).read_response()
        assert is_closed(fresh, timeout=2.0)
    finally:
        fresh.close()
    assert response.status == 200
    assert response.header("connection") == "close"
    assert srv.wait() == 0


def test_overload_answer_while_draining_closes_the_connection(server):
    srv = server.start(APP, "--limit-concurrency", "1")
    slow = start_slow_request(srv, 2)  # holds the only slot
    other = raw_connection(srv.port)
    try:
        time.sleep(0.3)
        srv.send_signal(signal.SIGTERM)
        srv.wait_for_log("Shutting down")
        other.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        rejected = RawReader(other).read_response()
        assert is_closed(other, timeout=2.0)
        assert RawReader(slow).read_response().status == 200
    finally:
        other.close()
        slow.close()
    assert rejected.status == 503
    assert rejected.header("connection") == "close"
    assert srv.wait() == 0


def test_connection_that_never_speaks_does_not_hold_the_exit(server):
    srv = server.start(APP)
    with raw_connection(srv.port) as silent:
        time.sleep(0.3)  # accepted: the server is waiting for its first byte
        elapsed = seconds_to_stop(srv, silent, signal.SIGTERM)
    assert elapsed < 4.0, f"a silent connection held the exit for {elapsed:.1f}s"


def test_second_signal_forces_exit(server):
    srv = server.start(APP)  # no graceful timeout: would wait for the 30 s request
    slow = start_slow_request(srv, 30)
    try:
        srv.send_signal(signal.SIGINT)
        srv.wait_for_log("Waiting for connections to close")
        assert srv.alive()
        start = time.monotonic()
        srv.send_signal(signal.SIGINT)
        srv.wait(timeout=15)
        elapsed = time.monotonic() - start
    finally:
        slow.close()
    assert elapsed < 6.0, f"exit took {elapsed:.1f}s after the second signal"


def test_stop_without_traffic(server):
    srv = server.start(APP)
    with http_client() as client:
        assert client.get(srv.url + "/").status_code == 200
    start = time.monotonic()
    assert srv.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 5.0
