"""End-to-end request bodies and receive(): chunks and more_body, large and chunked
bodies, Expect: 100-continue, http.disconnect, and send() after the client left.

Served apps: tests/apps/basic.py (/echo, /digest) and tests/apps/receive_app.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from conftest import RawReader, http_client, raw_connection

BASIC = "apps.basic:app"
RECEIVE = "apps.receive_app:app"


@pytest.fixture(scope="module")
def basic(module_server):
    return module_server.start(BASIC)


def check_messages(messages: list[dict], total: int) -> None:
    """http.request messages: all but the last have more_body=True, sizes add up."""
    assert messages, "no http.request message"
    assert all(m["type"] == "http.request" for m in messages), messages
    assert [m["more_body"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert sum(m["size"] for m in messages) == total


def test_get_without_body_receives_one_empty_message(basic):
    with http_client() as client:
        data = client.get(basic.url + "/digest").json()
    assert data["length"] == 0
    assert data["messages"] == [{"type": "http.request", "size": 0, "more_body": False}]


def test_small_body_echoed(basic):
    with http_client() as client:
        response = client.post(basic.url + "/echo", content=b"hello body")
    assert response.status_code == 200
    assert response.content == b"hello body"
    assert response.headers["x-last-more-body"] == "False"


def test_one_megabyte_body_arrives_intact(basic):
    payload = os.urandom(1024 * 1024)
    with http_client() as client:
        data = client.post(basic.url + "/digest", content=payload).json()
    assert data["length"] == len(payload)
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()
    check_messages(data["messages"], len(payload))


def test_one_megabyte_echo_roundtrip(basic):
    payload = os.urandom(1024 * 1024)
    with http_client() as client:
        response = client.post(basic.url + "/echo", content=payload)
    assert response.status_code == 200
    assert response.content == payload


def test_chunked_request_body_from_httpx(basic):
    parts = [b"first part,", b"x" * 100_000, b"", b"last part"]

    def gen():
        yield from parts

    with http_client() as client:
        data = client.post(basic.url + "/digest", content=gen()).json()
    expected = b"".join(parts)
    assert data["length"] == len(expected)
    assert data["sha256"] == hashlib.sha256(expected).hexdigest()
    check_messages(data["messages"], len(expected))


def test_chunked_request_body_raw(basic):
    chunks = [b"Wiki", b"pedia ", b"in \r\n\r\nchunks.", os.urandom(70_000)]
    wire = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    wire += b"0\r\n\r\n"
    with raw_connection(basic.port) as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                     b"\r\n" + wire)
        response = RawReader(sock).read_response()
    assert response.status == 200
    data = json.loads(response.body)
    expected = b"".join(chunks)
    assert data["length"] == len(expected)
    assert data["sha256"] == hashlib.sha256(expected).hexdigest()
    check_messages(data["messages"], len(expected))


def test_body_sent_slowly_arrives_in_several_messages(basic):
    """A body whose parts arrive apart is delivered as it comes, with more_body=True until
    the end."""
    with raw_connection(basic.port) as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: 200000\r\n\r\n")
        sock.sendall(b"a" * 100_000)
        time.sleep(0.3)  # pacing the client, not an assertion
        sock.sendall(b"b" * 100_000)
        response = RawReader(sock).read_response()
    data = json.loads(response.body)
    assert data["length"] == 200_000
    assert data["sha256"] == hashlib.sha256(b"a" * 100_000 + b"b" * 100_000).hexdigest()
    check_messages(data["messages"], 200_000)
    assert len(data["messages"]) >= 2


# --- Expect: 100-continue ---------------------------------------------------------------------


def expect_request(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()


def test_expect_continue_answered_when_app_reads(server):
    srv = server.start(RECEIVE)
    with raw_connection(srv.port) as sock:
        sock.sendall(expect_request("/read", 11))
        reader = RawReader(sock)
        interim = reader.read_head()
        assert interim.status == 100, interim.raw_head
        sock.sendall(b"hello there")
        response = reader.read_response()
    assert response.status == 200
    assert response.body == b"hello there"


def test_no_continue_when_app_answers_without_reading(server):
    srv = server.start(RECEIVE)
    with raw_connection(srv.port) as sock:
        sock.sendall(expect_request("/no-read", 11))
        reader = RawReader(sock)
        response = reader.read_head()
        assert response.status == 200, (
            f"expected the final response first, got {response.raw_head!r}"
        )
        cl = int(response.header("content-length"))
        assert reader.read_exact(cl) == b"not read"
    assert b"100 Continue" not in response.raw_head


# --- disconnects --------------------------------------------------------------------------------


def wait_for_events(srv, predicate, timeout: float = 10.0) -> list:
    """Poll /events until predicate(events) holds."""
    deadline = time.monotonic() + timeout
    with http_client() as client:
        while True:
            events = client.get(srv.url + "/events").json()
            if predicate(events):
                return events
            if time.monotonic() >= deadline:
                raise AssertionError(f"events not as expected after {timeout}s: {events}")
            time.sleep(0.05)


def test_disconnect_delivered_to_waiting_receive(server):
    srv = server.start(RECEIVE)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"POST /wait-disconnect HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n"
                     b"\r\nabc")
        time.sleep(0.2)  # pacing: let the app reach its second receive(); not an assertion
    events = wait_for_events(srv, lambda ev: any(e[0] == "send-after-disconnect" for e in ev))
    assert ["wait-disconnect", "http.disconnect"] in events
    assert ["send-after-disconnect", "OSError"] in events
    with http_client() as client:
        assert client.post(srv.url + "/read", content=b"still serving").text == "still serving"


def test_send_to_departed_client_raises_oserror(server):
    srv = server.start(RECEIVE)
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET /stream-forever HTTP/1.1\r\nHost: test\r\n\r\n")
        reader = RawReader(sock)
        head = reader.read_head()
        assert head.status == 200
        reader.read_exact(100)  # the stream is flowing
    events = wait_for_events(srv, lambda ev: any(e[0] == "stream-forever" for e in ev))
    assert ["stream-forever", "OSError"] in events
