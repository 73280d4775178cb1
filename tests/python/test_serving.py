"""End-to-end tests of the serving policies: admission (--limit-concurrency, --limit-queue,
--timeout-queue, --retry-after), --cancel-on-disconnect, --timeout-request and
--blocked-loop-warning.

Served app: tests/apps/serving_app.py. Times the app records are time.monotonic() values
of the server process, comparable with the test's own (CLOCK_MONOTONIC is system-wide).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from conftest import TESTS_DIR, RawReader, http_client, raw_connection

APP = "apps.serving_app:app"
APP_FILE = TESTS_DIR / "apps" / "serving_app.py"

OVERLOADED = "Overloaded: answered 503 to"
_OVERLOAD_COUNT_RE = re.compile(r"Overloaded: answered 503 to (\d+) request\(s\)")


# --- helpers ------------------------------------------------------------------------------------


def get(sock: socket.socket, target: str, reader: RawReader | None = None):
    """One GET on a raw keep-alive connection; returns the parsed response."""
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return (reader or RawReader(sock)).read_response()


def stats(srv) -> dict:
    with http_client() as client:
        return client.get(srv.url + "/stats").json()


def events(srv) -> dict:
    with http_client() as client:
        return client.get(srv.url + "/events").json()


def wait_for_event(srv, tag: str, what: str | tuple[str, ...], timeout: float = 5.0) -> list:
    """Poll /events until EVENTS[tag] holds an entry named `what` (or one of them);
    returns EVENTS[tag]."""
    wanted = (what,) if isinstance(what, str) else what
    deadline = time.monotonic() + timeout
    while True:
        recorded = events(srv).get(tag, [])
        if any(name in wanted for name, _ in recorded):
            return recorded
        if time.monotonic() >= deadline:
            raise AssertionError(f"{tag}: no {wanted} within {timeout}s, recorded {recorded}; "
                                 f"logs:\n{srv.logs()}")
        time.sleep(0.05)


def names(recorded: list) -> list[str]:
    return [name for name, _ in recorded]


def when(recorded: list, what: str) -> float:
    return next(t for name, t in recorded if name == what)


def overload_lines(srv) -> list[str]:
    return [line for line in srv.logs().splitlines() if OVERLOADED in line]


def warning_lines(srv) -> list[str]:
    return [line for line in srv.logs().splitlines() if line.startswith("WARNING:")]


def assert_overload_503(response, retry_after: str = "1") -> None:
    assert response.status == 503, response.raw_head
    assert response.header("retry-after") == retry_after, response.raw_head
    assert 0 < len(response.body) < 512, response.body
    assert (response.header("connection") or "").lower() != "close", response.raw_head


def hold_slot(srv, tag: str, seconds: float) -> socket.socket:
    """Occupies one slot with /slow; returns once the app is inside the request."""
    sock = raw_connection(srv.port)
    sock.sendall(f"GET /slow?s={seconds}&tag={tag} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    srv.wait_for_log(f"SLOW-STARTED {tag}")
    return sock


# --- admission ----------------------------------------------------------------------------------


def test_idle_keep_alive_connections_do_not_count(server):
    srv = server.start(APP, "--limit-concurrency", "2")
    idle = [raw_connection(srv.port) for _ in range(5)]
    extra = None
    try:
        for i, sock in enumerate(idle):
            response = get(sock, f"/hello?tag=idle{i}")
            assert response.status == 200 and response.body == b"hello"
        # Five open, idle connections: two requests still fit in the limit of 2 ...
        for i in (0, 1):
            idle[i].sendall(f"GET /slow?s=1&tag=busy{i} HTTP/1.1\r\nHost: test\r\n\r\n"
                            .encode())
        srv.wait_for_log("SLOW-STARTED busy0")
        srv.wait_for_log("SLOW-STARTED busy1")
        # ... and a third one in flight is one too many: the limit is in force.
        extra = raw_connection(srv.port)
        assert_overload_503(get(extra, "/hello?tag=extra"))
        for i in (0, 1):
            response = RawReader(idle[i]).read_response()
            assert response.status == 200 and response.body == b"slow"
    finally:
        for sock in idle + ([extra] if extra else []):
            sock.close()
    seen = stats(srv)
    assert "extra" not in seen["order"]
    assert seen["calls"] == 7


def test_full_queue_503_at_once_connection_stays_usable_app_not_called(server):
    srv = server.start(APP, "--limit-concurrency", "1")  # --limit-queue defaults to 0
    holder = hold_slot(srv, "hold", 1.5)
    rejected = [raw_connection(srv.port) for _ in range(5)]
    try:
        started = time.monotonic()
        for i, sock in enumerate(rejected):
            assert_overload_503(get(sock, f"/hello?tag=rejected{i}"))
        assert time.monotonic() - started < 1.0, "503s must come at once, not after a wait"
        assert RawReader(holder).read_response().body == b"slow"
        # The slot is free again; the connections that got a 503 are still usable.
        for i, sock in enumerate(rejected):
            response = get(sock, f"/hello?tag=again{i}")
            assert response.status == 200 and response.body == b"hello"
    finally:
        holder.close()
        for sock in rejected:
            sock.close()
    seen = stats(srv)
    assert seen["order"] == ["hold"] + [f"again{i}" for i in range(5)], seen
    assert seen["calls"] == 6


def test_queue_is_fifo_and_503_past_it(server):
    srv = server.start(APP, "--limit-concurrency", "1", "--limit-queue", "3")
    holder = hold_slot(srv, "hold", 1.5)
    queued = []
    try:
        for i in range(3):
            sock = raw_connection(srv.port)
            queued.append(sock)
            sock.sendall(f"GET /slow?s=0.05&tag=q{i} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            time.sleep(0.1)  # pacing: the arrival order the queue must keep; not an assertion
        with raw_connection(srv.port) as fourth:
            started = time.monotonic()
            assert_overload_503(get(fourth, "/hello?tag=q3"))
            assert time.monotonic() - started < 0.8, "a full queue must answer 503 at once"
        assert RawReader(holder).read_response().status == 200
        for sock in queued:
            response = RawReader(sock).read_response()
            assert response.status == 200 and response.body == b"slow"
    finally:
        holder.close()
        for sock in queued:
            sock.close()
    seen = stats(srv)
    assert seen["order"] == ["hold", "q0", "q1", "q2"], seen


def test_timeout_queue_and_retry_after(server):
    srv = server.start(APP, "--limit-concurrency", "1", "--limit-queue", "2",
                       "--timeout-queue", "0.5", "--retry-after", "7")
    holder = hold_slot(srv, "hold", 2.5)
    try:
        with raw_connection(srv.port) as waiter:
            started = time.monotonic()
            response = get(waiter, "/hello?tag=waited")
            waited = time.monotonic() - started
            assert_overload_503(response, retry_after="7")
            assert 0.4 <= waited < 2.0, f"503 after {waited:.2f}s, expected after about 0.5s"
            assert RawReader(holder).read_response().status == 200
            # The same connection serves once there is room.
            response = get(waiter, "/hello?tag=after")
            assert response.status == 200 and response.body == b"hello"
    finally:
        holder.close()
    assert stats(srv)["order"] == ["hold", "after"]
    srv.wait_for_log(OVERLOADED, timeout=3)


def test_rejections_logged_once_a_second_with_count(server):
    srv = server.start(APP, "--limit-concurrency", "1")
    holder = hold_slot(srv, "hold", 3)
    conns = [raw_connection(srv.port) for _ in range(21)]
    try:
        started = time.monotonic()
        for i, sock in enumerate(conns[:20]):
            assert get(sock, f"/hello?tag=r{i}").status == 503
        burst = time.monotonic() - started
        assert burst < 0.5, f"the burst took {burst:.2f}s; the test needs it within 0.5s"
        srv.wait_for_log(OVERLOADED, timeout=2)
        time.sleep(max(0.0, started + 0.8 - time.monotonic()))
        lines = overload_lines(srv)
        assert len(lines) == 1, lines  # 20 rejections within a second: one line
        # More than a second later, the next rejection reports; all 21 are counted.
        time.sleep(max(0.0, started + 1.2 - time.monotonic()))
        assert get(conns[20], "/hello?tag=r20").status == 503
        deadline = time.monotonic() + 3
        while True:
            counts = [int(m.group(1)) for m in _OVERLOAD_COUNT_RE.finditer(srv.logs())]
            if sum(counts) == 21 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(counts) >= 2 and sum(counts) == 21, overload_lines(srv)
        assert RawReader(holder).read_response().status == 200
    finally:
        holder.close()
        for sock in conns:
            sock.close()
    assert stats(srv)["order"] == ["hold"]


# --- --cancel-on-disconnect ---------------------------------------------------------------------


def _open_and_close(srv, case: str, tag: str) -> float:
    """Starts the app in `case` on a raw connection, closes the connection once the app is
    waiting; returns time.monotonic() taken just before the close."""
    sock = raw_connection(srv.port)
    try:
        if case == "wait-receive":
            sock.sendall(f"POST /wait-receive?tag={tag} HTTP/1.1\r\nHost: test\r\n"
                         f"Content-Length: 5\r\n\r\nhello".encode())
            srv.wait_for_log(f"ENTERED {tag}")
            time.sleep(0.1)  # pacing: let the app get into its second receive()
        elif case == "stream":
            sock.sendall(f"GET /stream?tag={tag} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            reader = RawReader(sock)
            assert reader.read_head().status == 200
            reader.read_exact(300)  # the stream is flowing
        else:
            sock.sendall(f"GET /sleep?s=30&tag={tag} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            srv.wait_for_log(f"ENTERED {tag}")
            time.sleep(0.1)  # pacing: let the app get into its sleep
    finally:
        closed_at = time.monotonic()
        sock.close()
    return closed_at


PATHS = {"wait-receive": "/wait-receive", "stream": "/stream", "sleep": "/sleep"}


@pytest.mark.parametrize("case", ["wait-receive", "stream", "sleep"])
def test_cancel_on_disconnect(server, case, record_property):
    srv = server.start(APP, "--cancel-on-disconnect", "--log-level", "debug")
    tag = f"cancel-{case}"
    closed_at = _open_and_close(srv, case, tag)
    recorded = wait_for_event(srv, tag, "cancelled", timeout=5)
    delay = when(recorded, "cancelled") - closed_at
    record_property("cancel_delay_s", round(delay, 4))
    print(f"{case}: CancelledError {delay * 1000:.1f} ms after the close")
    assert names(recorded) == ["cancelled"], recorded
    assert delay < 0.5, f"cancelled {delay:.3f}s after the close (spec: within 0.1s)"
    logs = srv.wait_for_log(re.compile(rf"(?i)cancel.*{re.escape(PATHS[case])}"), timeout=3)
    # The server still serves.
    with http_client() as client:
        assert client.get(srv.url + "/hello").text == "hello"
    assert "Exception in ASGI application" not in logs


def test_cancel_on_disconnect_leaves_completed_requests_alone(server):
    srv = server.start(APP, "--cancel-on-disconnect")
    with raw_connection(srv.port) as sock:
        reader = RawReader(sock)
        for tag in ("done1", "done2"):  # keep-alive: two requests on one connection
            response = get(sock, f"/sleep?s=0.2&tag={tag}", reader)
            assert response.status == 200 and response.body == b"done"
    time.sleep(0.3)  # room for a wrong cancel to arrive; not an assertion
    recorded = events(srv)
    assert names(recorded["done1"]) == ["completed", "sent"]
    assert names(recorded["done2"]) == ["completed", "sent"]


def test_without_cancel_flag_receive_gets_disconnect(server):
    srv = server.start(APP)
    _open_and_close(srv, "wait-receive", "nocancel-receive")
    recorded = wait_for_event(srv, "nocancel-receive", "completed")
    assert names(recorded) == ["http.disconnect", "send: OSError", "completed"], recorded


def test_without_cancel_flag_stream_send_raises_oserror(server):
    srv = server.start(APP)
    _open_and_close(srv, "stream", "nocancel-stream")
    recorded = wait_for_event(srv, "nocancel-stream", ("send: OSError", "cancelled"))
    assert names(recorded) == ["send: OSError"], recorded


def test_without_cancel_flag_sleeping_app_completes(server):
    srv = server.start(APP)
    tag = "nocancel-sleep"
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET /sleep?s=1&tag={tag} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        srv.wait_for_log(f"ENTERED {tag}")
        time.sleep(0.1)  # pacing: let the app get into its sleep
        closed_at = time.monotonic()
    recorded = wait_for_event(srv, tag, ("send: OSError", "sent", "cancelled"), timeout=5)
    assert names(recorded) == ["completed", "send: OSError"], recorded
    assert when(recorded, "completed") - closed_at > 0.5, "the sleep(1) was cut short"


# --- --timeout-request --------------------------------------------------------------------------


def test_timeout_request_before_response_gets_504(server):
    srv = server.start(APP, "--timeout-request", "0.5", "--no-access-log")
    with raw_connection(srv.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /sleep?s=30&tag=late HTTP/1.1\r\nHost: test\r\n\r\n")
        response = RawReader(sock).read_response()
        elapsed = time.monotonic() - started
    assert response.status == 504, response.raw_head
    assert 0 < len(response.body) < 512, response.body
    assert 0.4 <= elapsed < 3.0, f"504 after {elapsed:.2f}s, expected after about 0.5s"
    assert names(wait_for_event(srv, "late", "cancelled")) == ["cancelled"]
    srv.wait_for_log("/sleep", timeout=3)
    lines = [line for line in srv.logs().splitlines() if "/sleep" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("WARNING:") and "GET" in lines[0], lines


def test_timeout_request_while_streaming_closes_connection(server):
    srv = server.start(APP, "--timeout-request", "0.5", "--no-access-log")
    with raw_connection(srv.port, timeout=5.0) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /stream?tag=endless HTTP/1.1\r\nHost: test\r\n\r\n")
        reader = RawReader(sock)
        head = reader.read_head()
        assert head.status == 200
        assert "chunked" in (head.header("transfer-encoding") or "")
        # The body never gets its terminating 0-size chunk: the connection just ends.
        with pytest.raises(ConnectionError):
            reader.read_chunked()
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0, f"closed after {elapsed:.2f}s, expected after about 0.5s"
    assert names(wait_for_event(srv, "endless", "cancelled")) == ["cancelled"]
    srv.wait_for_log("/stream", timeout=3)
    lines = [line for line in srv.logs().splitlines() if "/stream" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("WARNING:") and "GET" in lines[0], lines


def test_timeout_request_spares_fast_requests(server):
    srv = server.start(APP, "--timeout-request", "1")
    with raw_connection(srv.port) as sock:
        reader = RawReader(sock)
        # Each request has its own clock: two 0.6 s requests on one connection both finish.
        for tag in ("fast1", "fast2"):
            response = get(sock, f"/sleep?s=0.6&tag={tag}", reader)
            assert response.status == 200 and response.body == b"done"
        assert get(sock, "/hello", reader).status == 200
    recorded = events(srv)
    assert names(recorded["fast1"]) == ["completed", "sent"]
    assert names(recorded["fast2"]) == ["completed", "sent"]
    assert warning_lines(srv) == []


# --- --blocked-loop-warning ---------------------------------------------------------------------


def _stall_line() -> tuple[int, str]:
    """Line number and text of the time.sleep() the app blocks in."""
    lines = Path(APP_FILE).read_text(encoding="utf-8").splitlines()
    for number, text in enumerate(lines, start=1):
        if "SERVING-APP-STALL" in text:
            return number, text.strip()
    raise AssertionError("marker not found in the app")


def _durations(line: str) -> list[float]:
    """Durations in seconds mentioned in a log line ("1.0s", "1.02 s", "1000 ms")."""
    found = []
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s\b|sec)", line):
        found.append(float(value) / 1000 if unit == "ms" else float(value))
    return found


def _block(srv, seconds: float) -> None:
    with http_client() as client:
        response = client.get(srv.url + f"/block?s={seconds}")
    assert response.status_code == 200 and response.text == "unblocked"


def test_blocked_loop_warning_default_names_the_blocking_line(server):
    srv = server.start(APP)  # default threshold: 1 s
    _block(srv, 1.5)
    number, text = _stall_line()
    logs = srv.wait_for_log("serving_app.py", timeout=3)
    time.sleep(0.3)  # room for a second, wrong, warning; not an assertion
    logs = srv.logs()
    warnings = warning_lines(srv)
    assert len(warnings) == 1, logs
    assert any(0.9 <= d <= 10 for d in _durations(warnings[0])), warnings[0]
    assert text.split("#")[0].strip() in logs  # "time.sleep(seconds)"
    assert re.search(rf"serving_app\.py\D{{1,12}}{number}\b", logs), logs


def test_blocked_loop_warning_custom_threshold_warns_once(server):
    srv = server.start(APP, "--blocked-loop-warning", "0.3")
    _block(srv, 1.2)  # four thresholds long: still one warning
    srv.wait_for_log("serving_app.py", timeout=3)
    time.sleep(0.3)  # room for a second, wrong, warning; not an assertion
    warnings = warning_lines(srv)
    assert len(warnings) == 1, srv.logs()
    assert any(0.25 <= d <= 10 for d in _durations(warnings[0])), warnings[0]


def test_blocked_loop_warning_off(server):
    srv = server.start(APP, "--blocked-loop-warning", "0")
    _block(srv, 1.5)
    time.sleep(0.5)
    logs = srv.logs()
    assert warning_lines(srv) == [], logs
    assert "time.sleep" not in logs and "serving_app.py" not in logs, logs


def test_no_blocked_loop_warning_for_awaits_or_idle(server):
    srv = server.start(APP)
    with http_client() as client:
        response = client.get(srv.url + "/sleep?s=1.5&tag=awaiting")
    assert response.status_code == 200
    time.sleep(1.3)  # an idle server waits in the event loop: not blocked
    assert warning_lines(srv) == [], srv.logs()
