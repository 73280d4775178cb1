"""--metrics-port: Prometheus text at /metrics, parsed by prometheus_client, for one process
and summed over workers."""

from __future__ import annotations

import socket
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

APP = "apps.basic:app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def requests_total(samples: dict, method: str, status: str) -> float:
    key = ("ferricorn_http_requests_total", (("method", method), ("status", status)))
    return samples.get(key, 0.0)


def test_single_process_metrics(server):
    mport = free_port()
    srv = server.start(APP, "--metrics-port", str(mport))
    with httpx.Client() as c:
        for _ in range(7):
            assert c.get(srv.url + "/").status_code == 200
        c.post(srv.url + "/echo", content=b"x")
    samples = scrape(mport)
    assert requests_total(samples, "GET", "200") == 7
    assert samples[("ferricorn_http_request_duration_seconds_count", ())] >= 8
    assert samples[("ferricorn_http_request_duration_seconds_bucket", (("le", "+Inf"),))] >= 8
    assert samples[("process_resident_memory_bytes", ())] > 1_000_000
    assert ("ferricorn_http_requests_rejected_total", (("reason", "limit"),)) in samples
    assert httpx.get(f"http://127.0.0.1:{mport}/other").status_code == 404


def test_rejections_are_counted(server):
    mport = free_port()
    srv = server.start(APP, "--metrics-port", str(mport), "--limit-concurrency", "1")
    with httpx.Client(timeout=10) as slow, httpx.Client(timeout=10) as fast:
        import threading

        t = threading.Thread(target=lambda: slow.get(srv.url + "/stream?delay=0.5"))
        t.start()
        time.sleep(0.3)
        assert fast.get(srv.url + "/").status_code == 503
        t.join()
    samples = scrape(mport)
    assert samples[("ferricorn_http_requests_rejected_total", (("reason", "limit"),))] == 1
    assert requests_total(samples, "GET", "503") == 1


def test_metrics_cover_all_workers(server):
    mport = free_port()
    srv = server.start(APP, "--workers", "2", "--metrics-port", str(mport))
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(srv.url + "/", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "workers did not answer"
            time.sleep(0.1)
    for _ in range(30):
        with httpx.Client() as c:  # new connections spread over the workers
            assert c.get(srv.url + "/").status_code == 200
    samples = scrape(mport)
    assert requests_total(samples, "GET", "200") >= 31


def test_websocket_sessions_gauge(server):
    """Open sockets show in ferricorn_websocket_sessions_open, not in the HTTP in-flight
    gauge, and leave it when they close."""
    import asyncio

    from websockets.asyncio.client import connect

    mport = free_port()
    srv = server.start("apps.ws_app:app", "--metrics-port", str(mport))

    async def main():
        sockets = [await connect(f"ws://127.0.0.1:{srv.port}/echo") for _ in range(3)]
        open_now = scrape(mport)
        for ws in sockets:
            await ws.close()
        await asyncio.sleep(0.3)
        return open_now, scrape(mport)
    open_now, after = asyncio.run(asyncio.wait_for(main(), 20))
    assert open_now[("ferricorn_websocket_sessions_open", ())] == 3
    assert open_now[("ferricorn_http_requests_in_flight", ())] == 0
    assert after[("ferricorn_websocket_sessions_open", ())] == 0


def test_wsgi_requests_are_counted(server):
    """A WSGI app's requests are the engine's like any other: counted by method and status,
    streamed ones once their body ends, and a --timeout-request 504 as a deadline."""
    mport = free_port()
    srv = server.start("apps.wsgi_app:app", "--interface", "wsgi", "--metrics-port",
                       str(mport), "--timeout-request", "0.5")
    with httpx.Client(timeout=10) as c:
        for _ in range(3):
            assert c.get(srv.url + "/hello").status_code == 200
        assert c.get(srv.url + "/list", params={"n": "3", "kind": "gen"}).status_code == 200
        assert c.post(srv.url + "/echo", content=b"abc").status_code == 200
        assert c.get(srv.url + "/raise-before", params={"tag": "m"}).status_code == 500
        assert c.get(srv.url + "/sleep", params={"s": "2", "tag": "m"}).status_code == 504
    samples = scrape(mport)
    assert requests_total(samples, "GET", "200") == 4
    assert requests_total(samples, "POST", "200") == 1
    assert requests_total(samples, "GET", "500") == 1
    assert requests_total(samples, "GET", "504") == 1
    assert samples[("ferricorn_http_requests_rejected_total", (("reason", "deadline"),))] == 1
