"""End-to-end app failures: exceptions before and after the response started, returning
without a response, and malformed ASGI messages (RuntimeError in the app, 500 to the
client), with the server serving on afterwards.

Served app: tests/apps/errors_app.py.
"""

from __future__ import annotations

import pytest
from conftest import http_client, raw_connection, recv_until_closed

APP = "apps.errors_app:app"


@pytest.fixture(scope="module")
def errors(module_server):
    return module_server.start(APP)


def test_exception_before_response_gives_500_and_traceback(errors):
    with http_client() as client:
        response = client.get(errors.url + "/raise-before")
        assert response.status_code == 500
        assert client.get(errors.url + "/ok").text == "ok"
    logs = errors.wait_for_log("deliberate failure before the response")
    assert "Exception in ASGI application" in logs
    assert "Traceback (most recent call last)" in logs
    assert "ValueError: deliberate failure before the response" in logs


def test_cancelled_error_the_app_raises_itself_is_an_app_failure(errors):
    # Only a cancellation of the request's task is quiet; a CancelledError the app gets from
    # a future cancelled elsewhere is a failure like any other: 500 and a traceback.
    with http_client() as client:
        response = client.get(errors.url + "/foreign-cancel")
    assert response.status_code == 500
    logs = errors.wait_for_log("cancelled elsewhere, not this request")
    assert "Exception in ASGI application" in logs


def fetch_raise_streaming(port: int) -> bytes:
    """Everything the server sends for /raise-streaming until it closes the connection."""
    with raw_connection(port) as sock:
        sock.sendall(b"GET /raise-streaming HTTP/1.1\r\nHost: test\r\n\r\n")
        return recv_until_closed(sock)


def test_exception_while_streaming_leaves_response_incomplete(errors):
    """The head (200, chunked) and the one chunk the app sent arrive, then the connection
    closes with no terminating chunk, so the client can tell the answer is incomplete; the
    server serves on."""
    data = fetch_raise_streaming(errors.port)  # the server must close, not hang
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head before the close; got {data!r}"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), data
    head_lines = head.lower().split(b"\r\n")[1:]
    assert b"transfer-encoding: chunked" in head_lines, head
    assert not any(line.startswith(b"content-length:") for line in head_lines), head
    # exactly the chunk the app sent, and nothing after it (no "0\r\n\r\n")
    assert body == b"7\r\npartial\r\n", body
    errors.wait_for_log("deliberate failure while streaming")
    with http_client() as client:
        assert client.get(errors.url + "/ok").text == "ok"


def test_chunks_sent_before_exception_are_delivered(errors):
    """What send() accepted before the exception reaches the client: the head and the
    "partial" chunk, then the connection closes without the terminating chunk. Repeated,
    because a race between the abort and the write would only show sometimes."""
    for attempt in range(20):
        data = fetch_raise_streaming(errors.port)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), f"attempt {attempt}: got {data!r}"
        assert body.startswith(b"7\r\npartial\r\n"), f"attempt {attempt}: got {data!r}"
        assert not body.endswith(b"0\r\n\r\n"), f"attempt {attempt}: got {data!r}"


def test_exception_while_streaming_seen_by_httpx_as_error(errors):
    import httpx

    with http_client() as client:
        with pytest.raises(httpx.HTTPError):
            with client.stream("GET", errors.url + "/raise-streaming") as response:
                response.read()


def test_returning_without_response_gives_500(errors):
    with http_client() as client:
        response = client.get(errors.url + "/no-response")
        assert response.status_code == 500
        assert client.get(errors.url + "/ok").status_code == 200
    errors.wait_for_log("returned without sending a response")


BAD = {
    # kind: words the RuntimeError message must contain (case-insensitive)
    "unknown-type": ["http.response.bogus"],
    "missing-status": ["status"],
    "str-body": ["body", "bytes", "str"],
    "header-crlf": ["header"],
    "header-name-int": ["header", "name", "bytes", "int"],
    "body-before-start": ["http.response.start"],
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_malformed_message_raises_runtime_error(errors, kind):
    with http_client() as client:
        response = client.get(errors.url + f"/bad/{kind}")
        assert response.status_code == 500
        assert "injected" not in response.headers
        message = client.get(errors.url + "/last-error").text
        assert message, "the app did not catch a RuntimeError from send()"
        for word in BAD[kind]:
            assert word.lower() in message.lower(), message
        # the server keeps serving
        assert client.get(errors.url + "/ok").text == "ok"
    errors.wait_for_log(message)


def test_header_with_crlf_message_names_the_problem(errors):
    with http_client() as client:
        assert client.get(errors.url + "/bad/header-crlf").status_code == 500
        message = client.get(errors.url + "/last-error").text
    assert "x-evil" in message
    assert any(word in message for word in ("CR", "LF", "control", "newline")), message
