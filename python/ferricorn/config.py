"""Server configuration: the option table and the `Config` built from it.

Owns `OPTIONS`, the single list of settings (name, parser, default, help,
choices, flag/multiple). `Config`'s keyword arguments, defaults and validation
come from it, and so do the command line and FERRICORN_<NAME> environment
variables (see cli.py). `Config` also loads the .env file, logging setup and
app, and binds the listening socket.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferricorn import sockets
from ferricorn.importer import ImportFromStringError, import_from_string

if TYPE_CHECKING:
    import asyncio

__all__ = ["OPTIONS", "Option", "Config", "AppLoadError", "LOG_LEVELS"]

_SAME = object()  # "CLI default = Config default"
LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}
DEFAULT_MAX_HEAD_BYTES = 65536


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
    cli_default: Any = _SAME
    cli_name: str | None = None

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
_P, _W = "Processes", "WebSockets"
#: Options the supervisor keeps for itself; a worker gets the others (see `worker_env`).
SUPERVISOR_ONLY = frozenset({
    "app", "host", "port", "uds", "fd", "backlog", "workers", "reload", "reload_dirs",
    "reload_includes", "reload_excludes", "reload_delay", "timeout_worker_healthcheck",
    "pid_file", "metrics_port", "metrics_host",
})
OPTIONS: tuple[Option, ...] = (
    Option("app", None, 'ASGI application as "<module>:<attribute>", e.g. main:app.', "",
           metavar="APP"),
    Option("host", "127.0.0.1", "Bind to this address (0.0.0.0 for all IPv4, :: for IPv6).", _B),
    Option("port", 8000, "Bind to this TCP port; 0 picks a free one.", _B, _int_in(0, 65535)),
    Option("uds", None, "Bind to a UNIX domain socket at this path.", _B, metavar="PATH"),
    Option("fd", None, "Use the already-open socket with this file descriptor.", _B,
           _int_in(0)),
    Option("backlog", 2048, "Maximum number of connections waiting to be accepted.", _B,
           _int_in(1)),
    Option("app_dir", "", "Directory prepended to sys.path before importing APP.", _A,
           metavar="DIR", cli_default="."),
    Option("factory", False, "APP is a factory: call it without arguments to get the app.",
           _A, flag=True),
    Option("lifespan", "auto", "Lifespan protocol: auto tolerates apps that lack it.", _A,
           choices=("auto", "on", "off")),
    Option("loop", "auto", "Event loop; auto uses uvloop when installed.", _A,
           choices=("auto", "asyncio", "uvloop")),
    Option("env_file", None, "Load environment variables from this .env file.", _A,
           metavar="PATH"),
    Option("root_path", "", "ASGI root_path, for apps served below a URL prefix by a proxy "
           "that strips it; prepended to path and raw_path, as uvicorn does.", _A,
           metavar="PATH"),
    Option("log_config", None, "Logging configuration file (.json, .yaml, .yml or .ini).", _L,
           metavar="PATH"),
    Option("log_level", None, "Log level [default: info].", _L, _log_level,
           choices=tuple(LOG_LEVELS)),
    Option("access_log", True, "Log one line per request.", _L, flag=True),
    Option("use_colors", None, "Colored log output [default: when writing to a terminal].",
           _L, flag=True),
    Option("proxy_headers", True, "Trust X-Forwarded-Proto and X-Forwarded-For from the "
           "addresses in --forwarded-allow-ips.", _H, flag=True),
    Option("forwarded_allow_ips", None, "Comma-separated proxy IPs to trust, or '*' for all "
           "[default: $FORWARDED_ALLOW_IPS or 127.0.0.1].", _H, metavar="IPS"),
    Option("server_header", True, "Send a Server header.", _H, flag=True),
    Option("date_header", True, "Send a Date header.", _H, flag=True),
    Option("headers", [], "Extra response header, e.g. 'X-Team: ml'; repeatable.", _H, _header,
           metavar="'NAME: VALUE'", multiple=True, cli_name="header"),
    Option("h11_max_incomplete_event_size", None, "Maximum size in bytes of a request head "
           f"[default: {DEFAULT_MAX_HEAD_BYTES}].", _H, _int_in(1), metavar="BYTES"),
    Option("ws", "auto", "WebSocket support: none hands upgrade requests to the app as plain "
           "HTTP; every other choice is ferricorn's own engine (the names are uvicorn's).", _W,
           choices=("auto", "none", "websockets", "websockets-sansio", "wsproto")),
    Option("ws_max_size", 16 * 1024 * 1024, "Largest WebSocket message accepted, in bytes; "
           "a bigger one closes the socket with 1009.", _W, _int_in(1), metavar="BYTES"),
    Option("ws_max_queue", 32, "WebSocket messages read ahead of the app; past it the socket "
           "is not read (backpressure).", _W, _int_in(1), metavar="N"),
    Option("ws_ping_interval", 20.0, "Seconds between keepalive pings; 0 turns them off.", _W,
           _seconds(), metavar="SECONDS"),
    Option("ws_ping_timeout", 20.0, "Seconds to wait for any frame after a ping before "
           "closing with 1011; 0 waits forever.", _W, _seconds(), metavar="SECONDS"),
    Option("ws_per_message_deflate", True, "Accept permessage-deflate compression (RFC 7692) "
           "when the client offers it.",
           _W, flag=True),
    Option("limit_concurrency", None, "Requests and WebSocket sessions (not connections) allowed "
           "in the app at once; "
           "past it, 503 with Retry-After.", _T, _int_in(1), metavar="N"),
    Option("limit_queue", 0, "Requests past --limit-concurrency that wait, first in first out, "
           "for a free slot instead of a 503.", _T, _int_in(0), metavar="N"),
    Option("timeout_queue", None, "Seconds a queued request may wait before it gets a 503 "
           "[default: no limit].", _T, _seconds(), metavar="SECONDS"),
    Option("cancel_on_disconnect", False, "Cancel the app's task (CancelledError) when the "
           "client leaves before the response is complete.", _T, flag=True),
    Option("timeout_request", None, "Cancel a request that has not finished in this many "
           "seconds: 504 if nothing was sent, else the connection is cut.", _T,
           _seconds(positive=True), metavar="SECONDS"),
    Option("blocked_loop_warning", 1.0, "Warn, with the Python stack, when the event loop is "
           "blocked this many seconds; 0 turns it off.", _T, _seconds(), metavar="SECONDS"),
    Option("metrics_port", None, "Serve Prometheus metrics (all workers together) at /metrics "
           "on this port.", _T, _int_in(0, 65535), metavar="PORT"),
    Option("metrics_host", "127.0.0.1", "Address for --metrics-port.", _T, metavar="HOST"),
    Option("retry_after", 1, "Retry-After seconds sent with a 503 for overload.", _T, _int_in(0),
           metavar="SECONDS"),
    Option("timeout_keep_alive", 5, "Close idle keep-alive connections after this many "
           "seconds.", _T, _int_in(0), metavar="SECONDS"),
    Option("timeout_graceful_shutdown", None, "Seconds to wait for open requests on shutdown "
           "[default: no limit].", _T, _int_in(0), metavar="SECONDS"),
    Option("timeout_header_read", 30.0, "Seconds a client has to send a complete request "
           "head.", _T, _seconds(positive=True), metavar="SECONDS"),
    Option("workers", None, "Worker processes [default: $WEB_CONCURRENCY or 1].", _P,
           _int_in(1), metavar="N"),
    Option("reload", False, "Restart the worker when files change (development).", _P,
           flag=True),
    Option("reload_dirs", [], "Directory to watch for --reload [default: the current "
           "directory]; repeatable.", _P, metavar="DIR", multiple=True, cli_name="reload_dir"),
    Option("reload_includes", [], "Glob of files that trigger a reload [default: *.py]; "
           "repeatable.", _P, metavar="GLOB", multiple=True, cli_name="reload_include"),
    Option("reload_excludes", [], "Glob of files that never trigger a reload [default: .*, "
           ".py[cod], .sw.*, ~*]; repeatable.", _P, metavar="GLOB", multiple=True,
           cli_name="reload_exclude"),
    Option("reload_delay", 0.25, "Seconds to wait for more changes before reloading.", _P,
           _seconds(), metavar="SECONDS"),
    Option("limit_max_requests", None, "Replace a worker after it served this many requests.",
           _P, _int_in(1), metavar="N"),
    Option("limit_max_requests_jitter", 0, "Add up to this many requests to each worker's "
           "--limit-max-requests, so workers do not restart together.", _P, _int_in(0),
           metavar="N"),
    Option("timeout_worker_healthcheck", 5.0, "Replace a worker whose event loop has not "
           "answered for this many seconds.", _P, _seconds(), metavar="SECONDS"),
    Option("pid_file", None, "Write the server's process id to this file.", _P,
           metavar="PATH"),
    Option("engine_threads", 0, "Threads of the Rust I/O engine; 0 runs it on the event-loop "
           "thread (fastest when the worker gets about one core).", "Engine", _int_in(0),
           metavar="N"),
)
_BY_NAME = {opt.name: opt for opt in OPTIONS}


# --- Config -------------------------------------------------------------------------------


class AppLoadError(Exception):
    """The app could not be loaded; str() is the full one-line message to log before exit 1."""


class Config:
    """All server settings; keyword arguments and defaults come from `OPTIONS`."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(_BY_NAME))
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
            value = kwargs.get(opt.name, opt.default)
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
            if opt.name in SUPERVISOR_ONLY or value is None or value == []:
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

    # -- environment, logging, app --------------------------------------------------------

    def load_env_file(self) -> None:
        """Read env_file (KEY=VALUE lines) into os.environ; existing variables win. Idempotent."""
        if self._env_loaded or not self.env_file:
            return
        self._env_loaded = True
        with open(self.env_file, encoding="utf-8") as fh:
            for key, value in _parse_env_lines(fh.read().splitlines()):
                os.environ.setdefault(key, value)

    def configure_logging(self) -> None:
        """Apply log_config (None = built-in config, {} = leave logging alone), log_level
        and access_log."""
        import logging.config

        from ferricorn import logging as flog

        self.load_env_file()
        source = self.log_config
        if source is None:
            _apply_dict(flog.LOGGING_CONFIG, self.use_colors)
        elif isinstance(source, dict):
            if source:
                _apply_dict(source, self.use_colors)
        elif str(source).lstrip().startswith("{"):  # a dict handed to a worker as JSON
            parsed = json.loads(source)
            if parsed:
                _apply_dict(parsed, self.use_colors)
        elif str(source).endswith(".json"):
            with open(source, encoding="utf-8") as fh:
                _apply_dict(json.load(fh), self.use_colors)
        elif str(source).endswith((".yaml", ".yml")):
            import yaml  # optional dependency, only for YAML configs

            with open(source, encoding="utf-8") as fh:
                _apply_dict(yaml.safe_load(fh), self.use_colors)
        else:
            logging.config.fileConfig(source, disable_existing_loggers=False)

        level = self.log_level_number
        if level is not None:
            for name in ("ferricorn", "ferricorn.error", "ferricorn.access"):
                logging.getLogger(name).setLevel(level)
        if not self.access_log:
            access = logging.getLogger("ferricorn.access")
            access.handlers.clear()
            access.propagate = False
            access.disabled = True

    def load_app(self) -> Any:
        """Return the ASGI3 callable. Raises AppLoadError (message starts with
        "Error loading ASGI app."); exceptions raised by the user's code propagate."""
        self.load_env_file()
        if self.app_dir is not None and self.app_dir not in sys.path:
            sys.path.insert(0, self.app_dir)
        try:
            app = import_from_string(self.app)
        except ImportFromStringError as exc:
            raise AppLoadError(f"Error loading ASGI app. {exc}") from None
        if self.factory:
            if not callable(app):
                raise AppLoadError(f"Error loading ASGI app. Factory {app!r} is not callable.")
            app = app()
        if not callable(app):
            raise AppLoadError(f"Error loading ASGI app. {app!r} is not callable.")
        _check_asgi3_signature(app, self.factory)
        return app

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new event loop per the `loop` option (auto: uvloop if importable)."""
        import asyncio

        if self.loop in ("auto", "uvloop"):
            try:
                import uvloop
            except ImportError:
                if self.loop == "uvloop":
                    raise
            else:
                return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    # -- sockets ---------------------------------------------------------------------------

    def bind_socket(self) -> socket.socket:
        """A listening, non-blocking socket from fd, else uds, else host/port.
        OSError (e.g. address in use) propagates."""
        if self.fd is not None:
            sock = sockets.from_fd(self.fd)
        elif self.uds:
            sock = sockets.bind_unix(self.uds)
        else:
            sock = sockets.bind_tcp(self.host, self.port)
        sock.listen(self.backlog)
        sock.setblocking(False)
        return sock

    def listen_message(self, sock: socket.socket) -> str:
        """Startup line: "Ferricorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)"."""
        return f"Ferricorn running on {sockets.describe(sock)} (Press CTRL+C to quit)"


def _to_text(value: Any) -> str:
    """The inverse of `Option.from_text`, for passing settings through the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(f"{v[0]}: {v[1]}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def _check_asgi3_signature(app: Any, factory: bool) -> None:
    import inspect

    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return  # builtins and odd callables: trust them
    try:
        signature.bind(None, None, None)
    except TypeError:
        hint = "" if factory else " If it is an application factory, pass --factory."
        raise AppLoadError(
            f"Error loading ASGI app. {app!r} is not an ASGI 3 application: it must accept "
            f"(scope, receive, send).{hint}"
        ) from None


def _apply_dict(config: dict, use_colors: bool | None) -> None:
    import logging.config

    from ferricorn.logging import adapt_uvicorn_config

    config = adapt_uvicorn_config(config)
    if use_colors is not None:
        for formatter in (config.get("formatters") or {}).values():
            target = formatter.get("()", "") if isinstance(formatter, dict) else ""
            if str(target).startswith("ferricorn.logging."):
                formatter["use_colors"] = use_colors
    logging.config.dictConfig(config)


def _parse_env_lines(lines: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        pairs.append((key, value))
    return pairs
