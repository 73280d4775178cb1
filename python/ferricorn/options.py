"""The keyword arguments of `ferricorn.run()` and `Config()`, typed for editors and type
checkers.

Owns `Options`, one key per option of `config.OPTIONS` (the app is `run()`'s first
argument), with the types `Config` accepts; `tests/python/test_settings.py` holds the two
equal. Must not: declare defaults or help (the table does).
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypedDict

__all__ = ["Options"]


class Options(TypedDict, total=False):
    """`run(app, **options)`: every setting of the command line, by its `Config` name."""

    # Socket binding
    host: str
    port: int
    uds: str | None
    fd: int | None
    backlog: int
    # Application
    app_dir: str
    factory: bool
    interface: Literal["auto", "asgi3", "asgi2", "wsgi"]
    wsgi_threads: int | None
    lifespan: Literal["auto", "on", "off"]
    loop: Literal["auto", "asyncio", "uvloop"]
    env_file: str | os.PathLike[str] | None
    root_path: str
    # Logging
    log_config: str | dict[str, Any] | None
    log_level: str | int | None
    access_log: bool
    use_colors: bool | None
    log_format: Literal["text", "json"]
    access_log_format: str | None
    # HTTP
    proxy_headers: bool
    forwarded_allow_ips: str | list[str] | None
    request_id_header: str | None
    server_header: bool
    date_header: bool
    headers: list[tuple[str, str]]
    h11_max_incomplete_event_size: int | None
    http: Literal["auto", "h11", "httptools", "h2"]
    h2_max_concurrent_streams: int
    h2_max_header_list_size: int
    h2_initial_stream_window_size: int
    h2_initial_connection_window_size: int
    h2_keep_alive_interval: float | None
    h2_max_pending_reset_streams: int
    # WebSockets
    ws: Literal["auto", "none", "websockets", "websockets-sansio", "wsproto"]
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    # Limits and timeouts
    limit_concurrency: int | None
    limit_queue: int
    limit_request_body: int
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    timeout_request_body: float
    limit_min_send_rate: int
    timeout_slow_send: float
    timeout_queue: float | None
    cancel_on_disconnect: bool
    timeout_request: float | None
    blocked_loop_warning: float
    metrics_port: int | None
    metrics_host: str
    retry_after: int
    timeout_keep_alive: int
    timeout_graceful_shutdown: int | None
    timeout_header_read: float
    # Processes
    workers: int | None
    reload: bool
    reload_dirs: list[str] | str
    reload_includes: list[str] | str
    reload_excludes: list[str] | str
    reload_delay: float
    limit_max_requests: int | None
    limit_max_requests_jitter: int
    timeout_worker_healthcheck: float
    pid_file: str | None
    # TLS
    ssl_keyfile: str | os.PathLike[str] | None
    ssl_certfile: str | os.PathLike[str] | None
    ssl_keyfile_password: str | None
    ssl_version: int
    ssl_protocol_min: Literal["tls1.2", "tls1.3"]
    ssl_cert_reqs: int
    ssl_ca_certs: str | os.PathLike[str] | None
    ssl_ciphers: str
    # Engine
    gc_policy: Literal["adaptive", "python"]
    engine_threads: int | None
