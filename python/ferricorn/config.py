"""Server configuration: the option table and the validated `Config` built from it.

Owns `OPTIONS`, the one declaration of every setting: name, parser (its type), default,
help, and where it applies (the supervisor, the worker's Python side, or the Rust engine).
Everything else is derived from it: `Config`'s keywords and validation, the command line,
`--help` with its defaults, the FERRICORN_<NAME> environment variables, what a worker
inherits, `run()`'s typed keywords (`ferricorn.options.Options`), and the typed settings
Rust reads from a `Config` by attribute (`src/settings.rs`: a field per engine option, under
the option's name or its `engine_name`). Must not: import the engine, load the app, bind
sockets or configure logging (`importer`, `sockets`, `logging` do that with a `Config`).

Why it is long: half of it is the table itself, one entry per option.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ferricorn.options import Options

__all__ = ["OPTIONS", "Option", "Config", "LOG_LEVELS", "ENGINE", "WORKER", "SUPERVISOR"]

_SAME = object()  # "CLI default = Config default"
LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}
DEFAULT_MAX_HEAD_BYTES = 65536
#: What --reload watches and ignores when no --reload-include / --reload-exclude is given.
RELOAD_INCLUDES = ("*.py",)
RELOAD_EXCLUDES = (".*", "*.py[cod]", "*.sw.*", "~*")

#: Where an option applies. A worker process inherits every option that applies to it (the
#: engine runs in the worker) through FERRICORN_<NAME> variables; SUPERVISOR options stay
#: with the process the user started (it binds the socket and manages the workers).
SUPERVISOR, WORKER, ENGINE = "supervisor", "worker", "engine"
SUPERVISOR_AND_WORKER = (SUPERVISOR, WORKER)


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    def check(value: float) -> None:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")

    def parse(text: str) -> int:
        value = int(text)  # ValueError -> argparse says "invalid int value"
        check(value)
        return value

    parse.__name__ = "int"
    parse.check = check  # type: ignore[attr-defined]  # for numbers given to Config/run()
    return parse


def _seconds(positive: bool = False) -> Callable[[str], float]:
    """Seconds as a float: at least 0 (or above 0), checked before anything starts."""

    def check(value: float) -> None:
        if value != value or value < 0 or (positive and value == 0):  # NaN fails too
            raise argparse.ArgumentTypeError(
                f"must be {'more than' if positive else 'at least'} 0 seconds, got {value}")

    def parse(text: str) -> float:
        value = float(text)  # ValueError -> "invalid float value"
        check(value)
        return value

    parse.__name__ = "float"
    parse.check = check  # type: ignore[attr-defined]
    return parse


#: `--ssl-version` values (the stdlib's `ssl.PROTOCOL_*`, as uvicorn takes them) and the TLS
#: versions each allows; TLS 1.0 and 1.1 (3, 4) are refused, rustls does not speak them.
SSL_VERSIONS = {17: ("1.3", "1.2"), 2: ("1.3", "1.2"), 5: ("1.2",)}


def _ssl_version(text: str) -> int:
    value = int(text)
    _check_ssl_version(value)
    return value


def _check_ssl_version(value: float) -> None:
    if value in (3, 4):
        raise argparse.ArgumentTypeError(
            f"{value} asks for TLS 1.0/1.1, which this server does not speak; use 17 (TLS 1.2 "
            "and 1.3, the default) or 5 (TLS 1.2 only)")
    if value not in SSL_VERSIONS:
        raise argparse.ArgumentTypeError(
            f"expected 17 (PROTOCOL_TLS_SERVER), 2 (PROTOCOL_TLS) or 5 (PROTOCOL_TLSv1_2), "
            f"got {value}")


_ssl_version.__name__ = "int"
_ssl_version.check = _check_ssl_version  # type: ignore[attr-defined]


def _log_level(text: str) -> str | int:
    """A level name, or a number (as `run(log_level=logging.DEBUG)` hands it to workers)."""
    text = text.strip()
    return int(text) if text.isdigit() else text.lower()


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    if not _TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"not a valid header name: {name!r}")
    if not value.isascii() or any(c < " " and c != "\t" or c == "\x7f" for c in value):
        raise argparse.ArgumentTypeError(
            f"header values must be printable ASCII, got {value!r} for {name!r}")
    return name, value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _trusted_proxies(text: str) -> str:
    """Checks a --forwarded-allow-ips list here, before any worker starts; the engine
    parses it again (`src/engine/proxy.rs`)."""
    import ipaddress

    for item in (part.strip() for part in text.split(",")):
        if item in ("", "*", "unix:"):
            continue
        address, _, prefix = item.partition("/")
        try:
            if "/" in item and not prefix.isdigit():
                raise ValueError(item)  # a prefix length, not a netmask
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an IP address or network; give addresses or networks "
                "(10.0.0.0/8) separated by commas, '*' for all or 'unix:' for Unix-socket "
                "peers") from None
    return text


def _access_log_format(text: str) -> str:
    from ferricorn._ferricorn import check_access_log_format

    try:
        check_access_log_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _request_id_header(text: str) -> str:
    text = text.strip()
    if not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a valid header name: {text!r}")
    return text


@dataclass(frozen=True)
class Option:
    """One setting: Config keyword `name`, CLI flag, env var FERRICORN_<NAME>."""

    name: str
    default: Any
    help: str
    group: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False  # boolean: --x / --no-x
    multiple: bool = False  # repeatable; value is a list
    #: The value of the flag given without one (`--request-id-header` alone).
    const: Any = _SAME
    cli_default: Any = _SAME
    cli_name: str | None = None
    #: SUPERVISOR, WORKER, ENGINE, or a tuple of them.
    applies: str | tuple[str, ...] = WORKER
    #: The `Config` attribute the engine reads for this option, when it is derived (several
    #: options can feed one); None: the option's own name.
    engine_name: str | None = None
    #: What `--help` shows as the default when the declared default is a placeholder (None
    #: or empty) for a value decided at run time.
    shown_default: str | None = None

    @property
    def places(self) -> tuple[str, ...]:
        return (self.applies,) if isinstance(self.applies, str) else self.applies

    @property
    def for_workers(self) -> bool:
        """Handed to worker processes (the app travels as their command's argument)."""
        return self.name != "app" and (WORKER in self.places or ENGINE in self.places)

    @property
    def env(self) -> str:
        return "FERRICORN_" + self.name.upper()

    @property
    def flag_name(self) -> str:
        return "--" + (self.cli_name or self.name).replace("_", "-")

    @property
    def default_for_cli(self) -> Any:
        return self.default if self.cli_default is _SAME else self.cli_default

    def from_text(self, text: str) -> Any:
        """Parse one string (env var, or a str passed to Config) into this option's type."""
        if self.flag:
            value = _bool(text)
        else:
            try:
                value = self.parse(text)
            except ValueError:
                kind = getattr(self.parse, "__name__", "")
                raise ValueError(f"invalid {kind} value: {text!r}") from None
        if self.choices and isinstance(value, str) and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {text!r}")
        return value


_B, _A, _L, _H, _T = "Socket binding", "Application", "Logging", "HTTP", "Limits and timeouts"
_P, _W, _S, _H2 = "Processes", "WebSockets", "TLS", "HTTP/2"
OPTIONS: tuple[Option, ...] = (
    Option("app", None, 'ASGI or WSGI application as "<module>:<attribute>", e.g. main:app.', "",
           metavar="APP",
           applies=WORKER),
    Option("host", "127.0.0.1", "Bind to this address (0.0.0.0 for all IPv4, :: for IPv6).", _B,
           applies=SUPERVISOR),
    Option("port", 8000, "Bind to this TCP port; 0 picks a free one.", _B, _int_in(0, 65535),
           applies=SUPERVISOR),
    Option("uds", None, "Bind to a UNIX domain socket at this path.", _B, metavar="PATH",
           applies=SUPERVISOR),
    Option("fd", None, "Use the already-open socket with this file descriptor.", _B,
           _int_in(0),
           applies=SUPERVISOR),
    Option("backlog", 2048, "Maximum number of connections waiting to be accepted.", _B,
           _int_in(1),
           applies=SUPERVISOR),
    Option("app_dir", "", "Directory prepended to sys.path before importing APP.", _A,
           metavar="DIR", cli_default=".",
           applies=WORKER),
    Option("factory", False, "APP is a factory: call it without arguments to get the app.",
           _A, flag=True,
           applies=WORKER),
    Option("interface", "auto", "Application interface: auto tells a WSGI app (a plain "
           "callable of environ and start_response) from ASGI 3 and the legacy ASGI 2 (a "
           "callable of scope returning the coroutine function), as uvicorn does.", _A,
           choices=("auto", "asgi3", "asgi2", "wsgi"),
           applies=WORKER),
    Option("wsgi_threads", None, "Python threads that run a WSGI app; as many requests again "
           "wait for a free thread, and the rest in the --limit-queue queue.", _A, _int_in(1),
           metavar="N",
           applies=WORKER, shown_default="4 per CPU core, at most 32"),
    Option("lifespan", "auto", "Lifespan protocol: auto tolerates apps that lack it.", _A,
           choices=("auto", "on", "off"),
           applies=WORKER),
    Option("loop", "auto", "Event loop; auto uses uvloop when installed.", _A,
           choices=("auto", "asyncio", "uvloop"),
           applies=WORKER),
    Option("env_file", None, "Load environment variables from this .env file.", _A,
           metavar="PATH",
           applies=SUPERVISOR_AND_WORKER),
    Option("root_path", "", "ASGI root_path, for apps served below a URL prefix by a proxy "
           "that strips it; prepended to path and raw_path, as uvicorn does.", _A,
           metavar="PATH",
           applies=ENGINE),
    Option("log_config", None, "Logging configuration file (.json, .yaml, .yml or .ini).", _L,
           metavar="PATH",
           applies=SUPERVISOR_AND_WORKER),
    Option("log_level", None, "Log level.", _L, _log_level,
           choices=tuple(LOG_LEVELS),
           applies=SUPERVISOR_AND_WORKER, shown_default="info"),
    Option("access_log", True, "Log one line per request.", _L, flag=True,
           applies=WORKER),
    Option("use_colors", None, "Colored log output.",
           _L, flag=True,
           applies=SUPERVISOR_AND_WORKER, shown_default="when writing to a terminal"),
    Option("log_format", "text", "Format of the built-in logging config's records: text "
           "(uvicorn's lines) or json (one object per line, with the request's fields: "
           "ferricorn.logging.JsonFormatter). A --log-config names its own formatters.", _L,
           choices=("text", "json"), applies=SUPERVISOR_AND_WORKER),
    Option("access_log_format", None, "The access line in gunicorn's atoms instead of "
           "uvicorn's line, e.g. '%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" "
           "\"%(a)s\" %(M)s'. Atoms: h client address, l '-', u Basic-auth user, t time, "
           "r request line, m method, U path, q query, H protocol, s status, b body bytes "
           "('-' for none), B body bytes, f Referer, a User-Agent, T/M/D/L duration in "
           "seconds/milliseconds/microseconds/decimal seconds, p pid, {name}i request "
           "header, {name}o response header.", _L, _access_log_format, metavar="FORMAT",
           applies=ENGINE, shown_default="uvicorn's line"),
    Option("proxy_headers", True, "Trust X-Forwarded-Proto and X-Forwarded-For from the "
           "addresses in --forwarded-allow-ips.", _H, flag=True,
           applies=ENGINE),
    Option("forwarded_allow_ips", None, "Comma-separated proxy addresses or networks to "
           "trust (e.g. 127.0.0.1,10.0.0.0/8), 'unix:' for peers on a Unix socket, or '*' "
           "for all.", _H, _trusted_proxies, metavar="IPS", applies=ENGINE,
           engine_name="forwarded_allow_ips_list",
           shown_default="$FORWARDED_ALLOW_IPS or 127.0.0.1"),
    Option("request_id_header", None, "Give each request an id in this header (the "
           "client's when well-formed, else a new UUID), sent back in the response and "
           "shown in the log records and scope['extensions']['ferricorn.request_id']; the "
           "flag alone means X-Request-ID.", _H, _request_id_header, metavar="NAME",
           const="X-Request-ID", applies=ENGINE, shown_default="off"),
    Option("server_header", True, "Send a Server header.", _H, flag=True,
           applies=ENGINE, engine_name="response_headers"),
    Option("date_header", True, "Send a Date header.", _H, flag=True,
           applies=ENGINE),
    Option("headers", [], "Extra response header, e.g. 'X-Team: ml'; repeatable.", _H, _header,
           metavar="'NAME: VALUE'", multiple=True, cli_name="header",
           applies=ENGINE, engine_name="response_headers"),
    Option("h11_max_incomplete_event_size", None, "Maximum size in bytes of a request head.",
           _H, _int_in(1), metavar="BYTES", applies=ENGINE, engine_name="max_head_bytes",
           shown_default=str(DEFAULT_MAX_HEAD_BYTES)),
    Option("ws", "auto", "WebSocket support: none hands upgrade requests to the app as plain "
           "HTTP; every other choice is ferricorn's own engine (the names are uvicorn's). A "
           "WSGI app always gets none.", _W,
           choices=("auto", "none", "websockets", "websockets-sansio", "wsproto"),
           applies=ENGINE, engine_name="ws_mode"),
    Option("ws_max_size", 16 * 1024 * 1024, "Largest WebSocket message accepted, in bytes; "
           "a bigger one closes the socket with 1009.", _W, _int_in(1), metavar="BYTES",
           applies=ENGINE),
    Option("ws_max_queue", 32, "WebSocket messages read ahead of the app; past it the socket "
           "is not read (backpressure).", _W, _int_in(1), metavar="N",
           applies=ENGINE),
    Option("ws_ping_interval", 20.0, "Seconds between keepalive pings; 0 turns them off.", _W,
           _seconds(), metavar="SECONDS",
           applies=ENGINE),
    Option("ws_ping_timeout", 20.0, "Seconds to wait for any frame after a ping before "
           "closing with 1011; 0 waits forever.", _W, _seconds(), metavar="SECONDS",
           applies=ENGINE),
    Option("ws_per_message_deflate", True, "Accept permessage-deflate compression (RFC 7692) "
           "when the client offers it.",
           _W, flag=True,
           applies=ENGINE),
    Option("limit_concurrency", None, "Requests and WebSocket sessions (not connections) allowed "
           "in the app at once; "
           "past it, 503 with Retry-After.", _T, _int_in(1), metavar="N",
           applies=ENGINE, engine_name="admission_limit",
           shown_default="no limit; a WSGI app: twice --wsgi-threads"),
    Option("limit_queue", 0, "Requests past --limit-concurrency that wait, first in first out, "
           "for a free slot instead of a 503.", _T, _int_in(0), metavar="N",
           applies=ENGINE, engine_name="admission_queue",
           shown_default="0; a WSGI app without --limit-concurrency: --backlog"),
    Option("timeout_queue", None, "Seconds a queued request may wait before it gets a 503.",
           _T, _seconds(), metavar="SECONDS",
           applies=ENGINE, shown_default="no limit"),
    Option("cancel_on_disconnect", False, "Cancel the app's task (CancelledError) when the "
           "client leaves before the response is complete.", _T, flag=True,
           applies=ENGINE),
    Option("timeout_request", None, "Cancel a request that has not finished in this many "
           "seconds: 504 if nothing was sent, else the connection is cut (a WSGI thread cannot "
           "be cancelled: the client gets the 504, the thread runs on).", _T,
           _seconds(positive=True), metavar="SECONDS",
           applies=ENGINE),
    Option("blocked_loop_warning", 1.0, "Warn, with the Python stack, when the event loop is "
           "blocked this many seconds; 0 turns it off.", _T, _seconds(), metavar="SECONDS",
           applies=WORKER),
    Option("metrics_port", None, "Serve Prometheus metrics (all workers together) at /metrics "
           "on this port.", _T, _int_in(0, 65535), metavar="PORT",
           applies=SUPERVISOR),
    Option("metrics_host", "127.0.0.1", "Address for --metrics-port.", _T, metavar="HOST",
           applies=SUPERVISOR),
    Option("retry_after", 1, "Retry-After seconds sent with a 503 for overload.", _T, _int_in(0),
           metavar="SECONDS",
           applies=ENGINE),
    Option("timeout_keep_alive", 5, "Close idle keep-alive connections after this many "
           "seconds.", _T, _int_in(0), metavar="SECONDS",
           applies=ENGINE),
    Option("timeout_graceful_shutdown", None, "Seconds to wait for open requests on shutdown.",
           _T, _int_in(0), metavar="SECONDS",
           applies=WORKER, shown_default="no limit"),
    Option("limit_request_body", 1 << 30, "Largest request body, in bytes; a larger one gets "
           "413 (at once when its Content-Length says so, else when it gets there, before "
           "the app sees a byte past it); 0 for no limit.", _T, _int_in(0), metavar="BYTES",
           applies=ENGINE),
    Option("limit_request_line", 8190, "Longest request line (method, target, version), in "
           "bytes; a longer one gets 414.", _T, _int_in(64), metavar="BYTES",
           applies=ENGINE),
    Option("limit_request_fields", 100, "Most header fields a request may have; more get "
           "431.", _T, _int_in(1, 10000), metavar="N",
           applies=ENGINE),
    Option("limit_request_field_size", 8190, "Largest header field (name and value), in "
           "bytes; a larger one gets 431.", _T, _int_in(64), metavar="BYTES",
           applies=ENGINE),
    Option("timeout_request_body", 30.0, "Seconds a request body may send nothing while the "
           "app waits for it, and at most for a small body (up to 64 KiB, read before the app "
           "is called) to arrive whole; then 408 (on HTTP/1.1 the connection closes).", _T,
           _seconds(positive=True), metavar="SECONDS",
           applies=ENGINE),
    Option("limit_min_send_rate", 1024, "Slowest a client may take response bytes while it "
           "is behind, in bytes a second over --timeout-slow-send; a slower one is "
           "disconnected (it would hold its response and the app's task forever); 0 for no "
           "floor.", _T, _int_in(0), metavar="BYTES",
           applies=ENGINE),
    Option("timeout_slow_send", 30.0, "Seconds over which --limit-min-send-rate is measured.",
           _T, _seconds(positive=True), metavar="SECONDS",
           applies=ENGINE),
    Option("timeout_header_read", 30.0, "Seconds a client has to send a complete request "
           "head.", _T, _seconds(positive=True), metavar="SECONDS",
           applies=ENGINE),
    Option("workers", None, "Worker processes.", _P,
           _int_in(1), metavar="N",
           applies=SUPERVISOR, shown_default="$WEB_CONCURRENCY or 1"),
    Option("reload", False, "Restart the worker when files change (development).", _P,
           flag=True,
           applies=SUPERVISOR),
    Option("reload_dirs", [], "Directory to watch for --reload; repeatable.", _P, metavar="DIR",
           multiple=True, cli_name="reload_dir",
           applies=SUPERVISOR, shown_default="the current directory"),
    Option("reload_includes", [], "Glob of files that trigger a reload; "
           "repeatable.", _P, metavar="GLOB", multiple=True, cli_name="reload_include",
           applies=SUPERVISOR, shown_default=", ".join(RELOAD_INCLUDES)),
    Option("reload_excludes", [], "Glob of files that never trigger a reload; repeatable.", _P,
           metavar="GLOB", multiple=True,
           cli_name="reload_exclude",
           applies=SUPERVISOR, shown_default=", ".join(RELOAD_EXCLUDES)),
    Option("reload_delay", 0.25, "Seconds to wait for more changes before reloading.", _P,
           _seconds(), metavar="SECONDS",
           applies=SUPERVISOR),
    Option("limit_max_requests", None, "Replace a worker after it served this many requests.",
           _P, _int_in(1), metavar="N",
           applies=WORKER),
    Option("limit_max_requests_jitter", 0, "Add up to this many requests to each worker's "
           "--limit-max-requests, so workers do not restart together.", _P, _int_in(0),
           metavar="N",
           applies=WORKER),
    Option("timeout_worker_healthcheck", 5.0, "Replace a worker whose event loop has not "
           "answered for this many seconds.", _P, _seconds(), metavar="SECONDS",
           applies=SUPERVISOR),
    Option("pid_file", None, "Write the server's process id to this file.", _P,
           metavar="PATH",
           applies=SUPERVISOR),
    Option("http", "auto", "HTTP versions: auto serves HTTP/1.1 and HTTP/2 (ALPN on TLS, "
           "prior knowledge on plain text); h11 and httptools (uvicorn's names) HTTP/1.1 only; "
           "h2 HTTP/2 only.", _H, choices=("auto", "h11", "httptools", "h2"), applies=ENGINE),
    Option("h2_max_concurrent_streams", 100, "HTTP/2 streams one connection may have open at "
           "once (SETTINGS_MAX_CONCURRENT_STREAMS).", _H2, _int_in(1), metavar="N",
           applies=ENGINE),
    Option("h2_max_header_list_size", 65536, "Largest HTTP/2 request header list, in bytes "
           "(SETTINGS_MAX_HEADER_LIST_SIZE); a larger one gets 431.", _H2, _int_in(1024),
           metavar="BYTES", applies=ENGINE),
    Option("h2_initial_stream_window_size", 1 << 20, "Request body bytes a client may send on "
           "one HTTP/2 stream before the app reads them (flow control).", _H2,
           _int_in(65535, 2**31 - 1), metavar="BYTES", applies=ENGINE),
    Option("h2_initial_connection_window_size", 2 << 20, "Request body bytes a client may send "
           "on one HTTP/2 connection, all streams together, before the apps read them.", _H2,
           _int_in(65535, 2**31 - 1), metavar="BYTES", applies=ENGINE),
    Option("h2_keep_alive_interval", None, "Send an HTTP/2 PING this many seconds after the "
           "connection opens and after each answer; close it if no answer comes within 20 s.",
           _H2, _seconds(), metavar="SECONDS", applies=ENGINE, shown_default="off"),
    Option("h2_max_pending_reset_streams", 20, "HTTP/2 streams a client may open and reset "
           "before the server reads them; past it the connection ends with GOAWAY (the rapid "
           "reset attack, CVE-2023-44487).", _H2, _int_in(1), metavar="N", applies=ENGINE),
    Option("ssl_keyfile", None, "Private key of the server's certificate (PEM: PKCS#8, "
           "PKCS#1 RSA or SEC1 EC; PKCS#8 may be encrypted).", _S, metavar="PATH",
           applies=ENGINE),
    Option("ssl_certfile", None, "Server certificate (PEM); a chain file is sent whole, leaf "
           "first. With --ssl-keyfile, every connection is TLS.", _S, metavar="PATH",
           applies=ENGINE),
    Option("ssl_keyfile_password", None, "Password of an encrypted --ssl-keyfile.", _S,
           metavar="PASSWORD", applies=ENGINE),
    Option("ssl_version", 17, "TLS versions, as the stdlib ssl module's PROTOCOL_* numbers "
           "uvicorn takes: 17 or 2 for TLS 1.2 and 1.3, 5 for TLS 1.2 only.", _S, _ssl_version,
           metavar="INT", applies=ENGINE, engine_name="tls_versions"),
    Option("ssl_protocol_min", "tls1.2", "Oldest TLS version accepted.", _S,
           choices=("tls1.2", "tls1.3"), applies=ENGINE, engine_name="tls_versions"),
    Option("ssl_cert_reqs", 0, "Client certificates: 0 not asked, 1 checked when given, 2 "
           "required (the stdlib's ssl.CERT_* numbers).", _S, _int_in(0, 2), metavar="INT",
           applies=ENGINE),
    Option("ssl_ca_certs", None, "CA certificates (PEM) that client certificates must chain "
           "to.", _S, metavar="PATH", applies=ENGINE),
    Option("ssl_ciphers", "TLSv1", "TLS 1.2 cipher suites, OpenSSL or IANA names separated by "
           "':' (TLSv1, DEFAULT or ALL: every suite); TLS 1.3 suites are always on.", _S,
           metavar="CIPHERS", applies=ENGINE),
    Option("gc_policy", "adaptive", "Python's garbage collector while serving: adaptive "
           "freezes what startup allocated and raises the young generation's threshold with "
           "the requests in flight (700 + 25 each, at most 50,000), so thousands of open "
           "streams are not walked by every collection; python leaves the collector as "
           "Python and the app set it (an app that changed the thresholds keeps them either "
           "way).", "Engine", choices=("adaptive", "python"), applies=WORKER),
    Option("engine_threads", None, "Threads of the Rust I/O engine; 0 runs it on the "
           "event-loop thread (fastest for an ASGI app when the worker gets about one core), "
           "moving it to a thread of its own while many streams saturate that thread, if a "
           "core is spare (fewer workers than cores). "
           "A WSGI app's threads need the GIL the loop thread would take for every turn, so "
           "it gets an engine thread.", "Engine", _int_in(0),
           metavar="N",
           applies=ENGINE, engine_name="engine_thread_count", shown_default="0; a WSGI app: 1"),
)
_BY_NAME = {opt.name: opt for opt in OPTIONS}
#: Config attributes Rust reads that no option names: values of the process and constants.
ENGINE_DERIVED = ("metrics_slot", "engine_metrics_addr", "response_high_water",
                  "request_read_ahead")


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# --- Config -------------------------------------------------------------------------------


class Config:
    """All server settings; keyword arguments and defaults come from `OPTIONS`.

    Besides the options, it has the values derived from them that the engine and the
    supervisor read (`src/settings.rs` names each).
    """

    #: Response bytes buffered per request before `send()` waits for a slow client.
    response_high_water = 64 * 1024
    #: Request bytes read ahead of the app's `receive()` (an upload streams in while the app
    #: handles what it has; bounded per request).
    request_read_ahead = 256 * 1024

    def __init__(self, app: Any, **kwargs: Unpack[Options]) -> None:
        values: dict[str, Any] = dict(kwargs)
        unknown = sorted(set(values) - set(_BY_NAME))
        if unknown:
            import difflib

            hints = [
                f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)
                for name in unknown
                for close in [difflib.get_close_matches(name, _BY_NAME, n=1)]
            ]
            raise TypeError(f"Config() got unexpected keyword argument(s): {', '.join(hints)}")
        self.app = app
        for opt in OPTIONS[1:]:
            value = values.get(opt.name, opt.default)
            setattr(self, opt.name, self._coerce(opt, value))
        self._env_loaded = False

    @staticmethod
    def _coerce(opt: Option, value: Any) -> Any:
        try:
            return Config._convert(opt, value)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise ValueError(f"{opt.name}: {exc}") from None

    @staticmethod
    def _convert(opt: Option, value: Any) -> Any:
        if opt.multiple:
            items = [value] if isinstance(value, str) else list(value or [])
            return [opt.from_text(item) if isinstance(item, str) else tuple(item)
                    for item in items]
        if opt.name == "log_level" and isinstance(value, int):
            return value
        if opt.name == "forwarded_allow_ips" and isinstance(value, (list, tuple)):
            return ",".join(value)
        if isinstance(value, str) and (opt.flag or opt.parse is not str):
            return opt.from_text(value)
        check = getattr(opt.parse, "check", None)
        if check is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            check(value)
        if opt.choices and value is not None and value not in opt.choices:
            raise ValueError(f"expected one of {', '.join(opt.choices)}, got {value!r}")
        return value

    def __repr__(self) -> str:
        fields = ", ".join(f"{o.name}={getattr(self, o.name)!r}" for o in OPTIONS)
        return f"Config({fields})"

    # -- derived values --------------------------------------------------------------------

    #: What the loaded app is ("asgi3", "asgi2" or "wsgi"); set by `importer.load_app`.
    app_interface: str | None = None

    @property
    def wsgi(self) -> bool:
        return self.app_interface == "wsgi"

    @property
    def wsgi_thread_count(self) -> int:
        """--wsgi-threads, else 4 per CPU core, at most 32 (threads mostly wait on I/O)."""
        if self.wsgi_threads is not None:
            return int(self.wsgi_threads)
        return max(1, min(32, 4 * usable_cores()))

    @property
    def engine_thread_count(self) -> int:
        """--engine-threads, else 0 (the engine on the loop thread), or 1 for a WSGI app:
        measured on hello, its threads and an engine on the loop thread trade the GIL at
        every turn (35-41k requests/s against 45-53k with an engine thread)."""
        if self.engine_threads is not None:
            return int(self.engine_threads)
        return 1 if self.wsgi else 0

    @property
    def multiprocess(self) -> bool:
        """Whether other worker processes serve the same app (a supervisor says how many)."""
        return int(os.environ.get("FERRICORN_WORKER_PROCESSES", "1")) > 1

    @property
    def admission_limit(self) -> int | None:
        """Requests let in at once: --limit-concurrency, or twice a WSGI app's threads (a
        request past them waits in the engine's queue, never in an unbounded one). The
        second half waits in the threads' own queue, so that a thread that finishes takes
        the next request at once instead of waiting for the engine to let one in: measured
        on wsgi-hello (8 threads), 100-116k requests/s at 10-11 us of CPU each against
        56-72k at 18-23 us with the limit at the thread count."""
        if self.limit_concurrency is not None or not self.wsgi:
            return self.limit_concurrency
        return 2 * self.wsgi_thread_count

    @property
    def admission_queue(self) -> int:
        if self.limit_concurrency is not None or not self.wsgi:
            return int(self.limit_queue)
        return max(int(self.limit_queue), int(self.backlog))

    @property
    def ws_mode(self) -> str:
        return "none" if self.wsgi else str(self.ws)

    @property
    def forwarded_allow_ips_list(self) -> list[str]:
        """Trusted proxy addresses; ["*"] trusts every peer."""
        raw = self.forwarded_allow_ips
        if raw is None:
            raw = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        return [item.strip() for item in raw.split(",") if item.strip()]

    @property
    def worker_count(self) -> int:
        """--workers, else $WEB_CONCURRENCY, else 1."""
        if self.workers is not None:
            return self.workers
        try:
            return max(1, int(os.environ.get("WEB_CONCURRENCY", "1")))
        except ValueError:
            return 1

    @property
    def needs_supervisor(self) -> bool:
        """A supervisor runs when asked for workers (even one: it replaces a worker that
        dies, is recycled by --limit-max-requests or fails its healthcheck) or reload. A
        worker never supervises: it is started with FERRICORN_SUPERVISOR_FD set."""
        if "FERRICORN_SUPERVISOR_FD" in os.environ:
            return False
        return (
            self.reload
            or self.workers is not None
            or "WEB_CONCURRENCY" in os.environ
            or self.limit_max_requests is not None
        )

    def worker_env(self) -> dict[str, str]:
        """FERRICORN_<NAME> variables that give a worker process this configuration: every
        option that is set (less the supervisor's own), defaults included, so that a
        FERRICORN_* variable the supervisor inherited cannot override what it was given."""
        env = {}
        for opt in OPTIONS:
            value = getattr(self, opt.name, None)
            if not opt.for_workers or value is None or value == []:
                continue
            if isinstance(value, dict):  # a log_config dict travels as JSON
                try:
                    env[opt.env] = json.dumps(value)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"{opt.name}: a dict given to workers must be JSON-serialisable"
                        f" ({exc}); use a .json/.yaml/.ini file instead") from None
                continue
            env[opt.env] = _to_text(value)
        return env

    @property
    def max_head_bytes(self) -> int:
        """Limit for request line + headers (h11_max_incomplete_event_size or 65536)."""
        return self.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES

    @property
    def log_level_number(self) -> int | None:
        level = self.log_level
        return LOG_LEVELS[level] if isinstance(level, str) else level

    # -- what the engine reads (src/settings.rs, EngineSettings) ------------------------------

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        """--header values, with `server: ferricorn` first unless turned off or given."""
        headers = [(name, value) for name, value in self.headers]
        if self.server_header and not any(n.lower() == "server" for n, _ in headers):
            headers.insert(0, ("server", "ferricorn"))
        return headers

    @property
    def tls_versions(self) -> list[str]:
        """TLS versions from --ssl-version and --ssl-protocol-min, newest first; none
        without TLS (the two flags then mean nothing, and are not checked against each
        other)."""
        if not self.tls:
            return []
        allowed = SSL_VERSIONS[self.ssl_version]
        if self.ssl_protocol_min == "tls1.3":
            allowed = tuple(v for v in allowed if v == "1.3")
        if not allowed:
            raise ValueError("ssl_version 5 (TLS 1.2 only) and ssl_protocol_min tls1.3 leave "
                             "no TLS version to speak; drop one of them")
        return list(allowed)

    @property
    def tls(self) -> bool:
        return bool(self.ssl_certfile and self.ssl_keyfile)

    @property
    def metrics_slot(self) -> tuple[str, int] | None:
        """A supervised worker counts into its slot of a file the supervisor serves."""
        path = os.environ.get("FERRICORN_METRICS_FILE")
        return (path, int(os.environ["FERRICORN_METRICS_SLOT"])) if path else None

    @property
    def engine_metrics_addr(self) -> tuple[str, int] | None:
        """Where this process serves /metrics itself: only when it is not a supervised
        worker (the supervisor serves all workers' metrics together)."""
        if self.metrics_port is None or "FERRICORN_SUPERVISOR_FD" in os.environ:
            return None
        return (self.metrics_host, self.metrics_port)

    # -- what the supervisor reads (src/settings.rs, SupervisorSettings) ---------------------

    @property
    def worker_processes(self) -> int:
        return 1 if self.reload else self.worker_count

    @property
    def reload_watch_dirs(self) -> list[str]:
        return [os.path.abspath(d) for d in (self.reload_dirs or [os.getcwd()])]

    @property
    def reload_include_globs(self) -> list[str]:
        return list(self.reload_includes or RELOAD_INCLUDES)

    @property
    def reload_exclude_globs(self) -> list[str]:
        return list(self.reload_excludes or RELOAD_EXCLUDES)

    @property
    def supervisor_metrics_addr(self) -> tuple[str, int] | None:
        return None if self.metrics_port is None else (self.metrics_host, self.metrics_port)


def _to_text(value: Any) -> str:
    """The inverse of `Option.from_text`, for passing settings through the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(f"{v[0]}: {v[1]}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)
