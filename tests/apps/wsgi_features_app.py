"""A small WSGI app for tests/python/test_wsgi_server_features.py (proxy headers, SIGHUP).

/pid          the worker's process id, as text
anything else JSON: the environ keys the proxy-header tests look at (REMOTE_ADDR,
              REMOTE_PORT, wsgi.url_scheme, SERVER_NAME, SERVER_PORT and the
              HTTP_X_FORWARDED_* keys), each null when absent
"""

from __future__ import annotations

import json
import os

REPORTED = (
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
)


def app(environ, start_response):
    environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/pid":
        body = str(os.getpid()).encode()
        content_type = "text/plain"
    else:
        body = json.dumps({key: environ.get(key) for key in REPORTED}).encode()
        content_type = "application/json"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
