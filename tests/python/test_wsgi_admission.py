"""WSGI admission and blocking points, end to end.

What is checked: a full pool queues then sheds (`--limit-concurrency`, `--limit-queue`: the
queued requests are served once threads free up, the one past the queue gets the server's
503 with `Retry-After` at once), `--timeout-queue` (a 503 to a request that waited too long,
which never reaches the app), the defaults for a WSGI app (4 threads per core, at most 32;
twice the threads let in and `--backlog` more queued, the rest refused), and that every
blocking point releases the GIL (a thread waiting in `wsgi.input.read()` for a body that has
not come and one waiting to hand a chunk to a client that does not read leave the third
thread free to serve).

Served app: tests/apps/wsgi_admission_app.py (its docstring lists the routes).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time

import pytest
from conftest import RawReader, http_client, raw_connection

pytestmark = pytest.mark.timeout(120)

APP = "apps.wsgi_admission_app:app"
WSGI = ("--interface", "wsgi")
BUSY = b"Service Unavailable\n"


def expected_default_threads() -> int:
    """--wsgi-threads' documented default, computed as the server does (the server inherits
    this process's CPU affinity): 4 per usable core, at most 32."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    return max(1, min(32, 4 * cores))


def send_block(port: int, tag: str, release) -> socket.socket:
    """Open a connection and send GET /block (held until the file `release` exists)."""
    sock = raw_connection(port, timeout=30)
    sock.sendall(f"GET /block?tag={tag}&path={release} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


def get(port: int, target: str):
    with raw_connection(port) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return RawReader(sock).read_response()


def started_tags(srv) -> list[str]:
    return [line.split()[1] for line in srv.logs().splitlines()
            if line.startswith("ADM-STARTED ")]


def wait_started(srv, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(started_tags(srv)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    tags = started_tags(srv)
    assert len(tags) >= count, f"{len(tags)} of {count} requests reached the app: {tags}"
    return tags


def assert_overload_503(response) -> None:
    """The server's own 503 for overload, exactly."""
    assert (response.status, response.reason) == (503, "Service Unavailable"), response.raw_head
    assert response.header("retry-after") == "1", response.raw_head
    assert response.body == BUSY
    assert response.header("content-length") == str(len(BUSY)), response.raw_head


def block_result(sock: socket.socket) -> dict:
    try:
        response = RawReader(sock).read_response()
    finally:
        sock.close()
    assert response.status == 200, response.raw_head + response.body
    return json.loads(response.body)


# --- --limit-concurrency, --limit-queue, --timeout-queue ----------------------------------------


def test_full_pool_queues_then_sheds(server, tmp_path):
    srv = server.start(APP, *WSGI, "--wsgi-threads", "2", "--limit-concurrency", "2",
                       "--limit-queue", "2")
    release = tmp_path / "release"
    running = [send_block(srv.port, tag, release) for tag in ("r1", "r2")]
    assert sorted(wait_started(srv, 2)) == ["r1", "r2"]
    queued = [send_block(srv.port, tag, release) for tag in ("q1", "q2")]
    time.sleep(1.0)  # ample time for both to reach the queue
    assert sorted(started_tags(srv)) == ["r1", "r2"], "a queued request reached the app"

    began = time.monotonic()
    shed = get(srv.port, "/hello")
    assert time.monotonic() - began < 1.0, "the 503 must come at once"
    assert_overload_503(shed)
    srv.wait_for_log("WARNING:  Overloaded: answered 503 to 1 request(s) since the last report "
                     "(2 requests in flight and 2 queued); raise --limit-concurrency or "
                     "--limit-queue, or add workers")
    assert sorted(started_tags(srv)) == ["r1", "r2"]

    release.touch()
    results = [block_result(sock) for sock in running + queued]
    assert [r["tag"] for r in results] == ["r1", "r2", "q1", "q2"]
    assert max(r["max_active"] for r in results) == 2
    assert sorted(started_tags(srv)) == ["q1", "q2", "r1", "r2"]
    assert get(srv.port, "/hello").body == b"hello"


def test_timeout_queue_answers_503_to_a_request_that_waited_too_long(server, tmp_path):
    srv = server.start(APP, *WSGI, "--wsgi-threads", "1", "--limit-concurrency", "1",
                       "--limit-queue", "1", "--timeout-queue", "0.5")
    release = tmp_path / "release"
    holder = send_block(srv.port, "hold", release)
    wait_started(srv, 1)
    began = time.monotonic()
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET /block?tag=late&path={release} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        late = RawReader(sock).read_response()
    waited = time.monotonic() - began
    assert_overload_503(late)
    assert 0.45 <= waited < 2.5, f"503 after {waited:.2f}s, expected after about 0.5s"
    srv.wait_for_log("WARNING:  Overloaded: answered 503 to 1 request(s) since the last report "
                     "(requests waited too long in the queue)")
    release.touch()
    assert block_result(holder)["tag"] == "hold"
    assert started_tags(srv) == ["hold"], "the timed-out request reached the app"


# --- the defaults for a WSGI app -----------------------------------------------------------------


def test_default_thread_count_runs_that_many_requests_at_once(server, tmp_path):
    threads = expected_default_threads()
    srv = server.start(APP)  # no --interface, no --wsgi-threads
    assert f"INFO:     Serving the WSGI app on {threads} threads\n" in srv.logs()
    release = tmp_path / "release"
    socks = [send_block(srv.port, f"b{i}", release) for i in range(threads + 1)]
    wait_started(srv, threads)
    time.sleep(1.0)  # ample time for one more to start, were there another thread
    assert len(started_tags(srv)) == threads
    release.touch()
    results = [block_result(sock) for sock in socks]
    assert max(r["max_active"] for r in results) == threads
    assert len(set(started_tags(srv))) == threads + 1
    assert len({r["thread"] for r in results}) == threads


def test_default_admission_bounds_a_burst(server, tmp_path):
    """No flags: twice the threads are let in, --backlog (2048) more wait in the queue, and
    the next request is refused at once rather than accepted."""
    threads = expected_default_threads()
    backlog = 2048
    # The test holds a socket per request and so does the server (started after this, it
    # inherits the limit): raise the soft limit of open files as far as the hard one allows.
    needed = 2 * (2 * threads + backlog) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    srv = server.start(APP)
    release = tmp_path / "release"
    socks = [send_block(srv.port, f"b{i}", release) for i in range(2 * threads + backlog)]
    try:
        wait_started(srv, threads)
        time.sleep(2.0)  # ample time for every request to reach the threads or the queue
        assert len(started_tags(srv)) == threads
        began = time.monotonic()
        shed = get(srv.port, "/hello")
        assert time.monotonic() - began < 1.0, "the 503 must come at once"
        assert_overload_503(shed)
        srv.wait_for_log(f"WARNING:  Overloaded: answered 503 to 1 request(s) since the last "
                         f"report ({2 * threads} requests in flight and {backlog} queued)")
        release.touch()
        results = [block_result(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert len(results) == 2 * threads + backlog
    assert max(r["max_active"] for r in results) == threads
    assert get(srv.port, "/hello").body == b"hello"


# --- the GIL at blocking points ------------------------------------------------------------------


def test_threads_blocked_in_read_and_in_send_leave_the_third_free(server):
    srv = server.start(APP, *WSGI, "--wsgi-threads", "3")
    total = 100_000
    reader = raw_connection(srv.port, timeout=30)
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(30)
    try:
        # One thread waits in wsgi.input.read() for a body that has not all come.
        reader.sendall(f"POST /read?tag=slow HTTP/1.1\r\nHost: t\r\n"
                       f"Content-Length: {total}\r\n\r\n".encode() + b"x" * 1000)
        srv.wait_for_log("ADM-READING slow")
        # Another waits to hand a chunk to a client that reads nothing.
        stuck.connect(("127.0.0.1", srv.port))
        stuck.sendall(b"GET /produce?tag=stuck&n=500 HTTP/1.1\r\nHost: t\r\n\r\n")
        with http_client() as c:
            def produced() -> int:
                return c.get(f"{srv.url}/produced", params={"tag": "stuck"}).json()["produced"]
            deadline = time.monotonic() + 20
            last, now = -1, produced()
            while now != last and time.monotonic() < deadline:
                time.sleep(0.5)
                last, now = now, produced()
            assert 0 < now == last < 500, f"the generator did not stop: {last} then {now}"

            # The third thread serves at once, again and again.
            for _ in range(5):
                began = time.monotonic()
                r = c.get(f"{srv.url}/hello")
                took = time.monotonic() - began
                assert (r.status_code, r.content) == (200, b"hello")
                assert took < 2.0, f"/hello took {took:.2f}s while two threads were blocked"
            assert produced() == now, "the stuck generator moved although nobody read"

        reader.sendall(b"y" * (total - 1000))
        response = RawReader(reader).read_response()
        assert response.status == 200, response.raw_head + response.body
        assert json.loads(response.body) == {"tag": "slow", "size": total}
    finally:
        reader.close()
        stuck.close()
