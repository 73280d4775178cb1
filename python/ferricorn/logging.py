"""Log formatting and the default logging configuration.

Owns the TRACE level, the uvicorn-look formatters (`DefaultFormatter`,
`AccessFormatter`) and `JsonFormatter`, the default `LOGGING_CONFIG` dictConfig,
`adapt_uvicorn_config`, which lets log configs written for uvicorn run unchanged,
`configure(config)`, which applies `--log-config`, `--log-format`, `--log-level` and
`--access-log`, and `access_target(config)`, what the engine's access log writer needs.

Loggers: "ferricorn" (stderr), "ferricorn.error" (server messages, propagates
to "ferricorn") and "ferricorn.access" (one line per request, stdout). Records about a
request carry its fields as extras (`REQUEST_FIELDS`), for formatters that want them.
"""

from __future__ import annotations

import copy
import http
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from ferricorn.config import Config

__all__ = [
    "TRACE",
    "LOGGING_CONFIG",
    "REQUEST_FIELDS",
    "DefaultFormatter",
    "AccessFormatter",
    "JsonFormatter",
    "adapt_uvicorn_config",
    "configure",
    "request_extra",
]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_ANSI = {
    "blue": "34",
    "cyan": "36",
    "green": "32",
    "yellow": "33",
    "red": "31",
    "bright_red": "91",
    "bright_white": "97",
}


def _paint(text: str, color: str, bold: bool = False) -> str:
    code = _ANSI[color] + (";1" if bold else "")
    return f"\x1b[{code}m{text}\x1b[0m"


class DefaultFormatter(logging.Formatter):
    """Formatter adding `%(levelprefix)s`: "INFO:" padded to 9 columns, colored if enabled.

    `use_colors=None` colors only when the stream is a terminal and NO_COLOR is unset.
    A record carrying a `color_message` extra uses it instead of `msg` when colored.
    """

    level_colors = {
        TRACE: "blue",
        logging.DEBUG: "cyan",
        logging.INFO: "green",
        logging.WARNING: "yellow",
        logging.ERROR: "red",
        logging.CRITICAL: "bright_red",
    }
    default_fmt = "%(levelprefix)s %(message)s"

    def _stream(self) -> TextIO:
        return sys.stderr

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        if use_colors is None:
            stream = self._stream()
            use_colors = bool(
                "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()
            )
        self.use_colors = use_colors
        super().__init__(fmt or self.default_fmt, datefmt, style)

    def level_prefix(self, levelno: int, levelname: str) -> str:
        padding = " " * max(0, 8 - len(levelname))
        if self.use_colors:
            levelname = _paint(levelname, self.level_colors.get(levelno, "bright_white"))
        return f"{levelname}:{padding}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)
        record.levelprefix = self.level_prefix(record.levelno, record.levelname)
        if self.use_colors and "color_message" in record.__dict__:
            msg = record.__dict__["color_message"]
            record.message = msg % record.args if record.args else msg
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Access-log formatter; the server logs with
    args=(client_addr, method, full_path, http_version, status_code).

    Adds `client_addr`, `method`, `full_path`, `http_version`, `request_line` and
    `status_code` ("200 OK", colored by class when colors are on).
    """

    default_fmt = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    status_colors = {1: "bright_white", 2: "green", 3: "yellow", 4: "red", 5: "bright_red"}

    def _stream(self) -> TextIO:
        return sys.stdout

    def status_text(self, status_code: int) -> str:
        try:
            text = f"{status_code} {http.HTTPStatus(status_code).phrase}"
        except ValueError:
            text = str(status_code)
        if self.use_colors:
            text = _paint(text, self.status_colors.get(status_code // 100, "bright_white"))
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:
            return super().formatMessage(record)
        client_addr, method, full_path, http_version, status_code = args
        if isinstance(client_addr, tuple):
            client_addr = f"{client_addr[0]}:{client_addr[1]}"
        record = copy.copy(record)
        record.__dict__.update(
            client_addr=client_addr or "-",
            method=method,
            full_path=full_path,
            http_version=http_version,
            request_line=f"{method} {full_path} HTTP/{http_version}",
            status_code=self.status_text(int(status_code)),
        )
        if self.use_colors:
            record.request_line = _paint(record.request_line, "bright_white", bold=True)
        return super().formatMessage(record)


#: The `LogRecord` extras of access records (all of them) and of error records about a
#: request (those known before it ends: not status, size or duration).
REQUEST_FIELDS = (
    "client_addr",
    "method",
    "path",
    "query",
    "http_version",
    "status_code",
    "response_bytes",
    "duration_ms",
    "request_id",
    "worker_pid",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time` (ISO 8601, UTC), `level`, `logger`, `message`,
    the request's fields when the record is about one (`REQUEST_FIELDS`), and `exc_info`
    (the traceback text) when it carries an exception.

    Accepts and ignores uvicorn's formatter arguments (`fmt`, `use_colors`), so that it can
    replace `DefaultFormatter` or `AccessFormatter` in a dictConfig.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        super().__init__(None, datefmt, style)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in REQUEST_FIELDS:
            if key in fields:
                out[key] = fields[key]
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _iso_time(created: float) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_extra(scope: dict[str, Any]) -> dict[str, Any]:
    """The extras of an error record about the request of `scope` (ASGI): the same keys
    the engine gives the access records, less those only known at the end."""
    client = scope.get("client")
    extensions = scope.get("extensions") or {}
    query = scope.get("query_string", b"")
    return {
        "client_addr": f"{client[0]}:{client[1]}" if client else None,
        "method": scope.get("method", "GET"),
        "path": scope.get("path"),
        "query": query.decode("latin-1") if isinstance(query, bytes) else str(query),
        "http_version": scope.get("http_version"),
        "request_id": extensions.get("ferricorn.request_id"),
        "worker_pid": os.getpid(),
    }


LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "ferricorn.logging.DefaultFormatter",
            "fmt": DefaultFormatter.default_fmt,
            "use_colors": None,
        },
        "access": {
            "()": "ferricorn.logging.AccessFormatter",
            "fmt": AccessFormatter.default_fmt,
            "use_colors": None,
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "ferricorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "ferricorn.error": {"level": "INFO"},
        "ferricorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def adapt_uvicorn_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a dictConfig where uvicorn names also work for ferricorn.

    "uvicorn.logging.X" formatter classes become "ferricorn.logging.X", and settings for
    the "uvicorn", "uvicorn.error" and "uvicorn.access" loggers are also applied to the
    matching "ferricorn*" loggers (unless those are configured explicitly).
    """
    config = copy.deepcopy(config)
    for formatter in (config.get("formatters") or {}).values():
        for key in ("()", "class"):
            value = formatter.get(key) if isinstance(formatter, dict) else None
            if isinstance(value, str) and value.startswith("uvicorn.logging."):
                formatter[key] = "ferricorn.logging." + value[len("uvicorn.logging.") :]
    loggers = config.get("loggers") or {}
    for name in list(loggers):
        if name == "uvicorn" or name.startswith("uvicorn."):
            loggers.setdefault("ferricorn" + name[len("uvicorn") :], copy.deepcopy(loggers[name]))
    return config


def configure(config: Config) -> None:
    """Apply the config's log_config (None = built-in config, {} = leave logging alone), log_level
    and access_log."""
    import logging.config

    from ferricorn.envfile import load_env_file

    load_env_file(config)
    source = config.log_config
    if source is None:
        _apply_dict(builtin_config(config), config.use_colors)
    elif isinstance(source, dict):
        if source:
            _apply_dict(source, config.use_colors)
    elif str(source).lstrip().startswith("{"):  # a dict handed to a worker as JSON
        parsed = json.loads(source)
        if parsed:
            _apply_dict(parsed, config.use_colors)
    elif str(source).endswith(".json"):
        with open(source, encoding="utf-8") as fh:
            _apply_dict(json.load(fh), config.use_colors)
    elif str(source).endswith((".yaml", ".yml")):
        import yaml  # optional dependency, only for YAML configs

        with open(source, encoding="utf-8") as fh:
            _apply_dict(yaml.safe_load(fh), config.use_colors)
    else:
        logging.config.fileConfig(source, disable_existing_loggers=False)

    level = config.log_level_number
    if level is not None:
        for name in ("ferricorn", "ferricorn.error", "ferricorn.access"):
            logging.getLogger(name).setLevel(level)
    if not config.access_log:
        access = logging.getLogger("ferricorn.access")
        access.handlers.clear()
        access.propagate = False
        access.disabled = True


def builtin_config(config: Config) -> dict[str, Any]:
    """`LOGGING_CONFIG` as `--log-format` and `--access-log-format` shape it."""
    built = copy.deepcopy(LOGGING_CONFIG)
    formatters = built["formatters"]
    if config.log_format == "json":
        for name in ("default", "access"):
            formatters[name] = {"()": "ferricorn.logging.JsonFormatter"}
    elif config.access_log_format:
        # The line is the format's, whole: no level prefix, as gunicorn writes it.
        formatters["access"]["fmt"] = ACCESS_ATOMS_FMT
    return built


#: The access formatter's format with `--access-log-format` (the engine renders the line).
ACCESS_ATOMS_FMT = "%(message)s"


def access_target(config: Config) -> dict[str, Any] | None:
    """What the engine's access log writer needs (`src/access_log/mod.rs` `AccessTarget`),
    or None when no access line would be printed.

    When the "ferricorn.access" logger is configured as shipped (one StreamHandler, its
    AccessFormatter in the default format, no colors, no filters), the writer writes the
    lines to a duplicate of the stream's descriptor itself, without a `LogRecord` each;
    otherwise it calls the logger, with the request's fields as extras.
    """
    logger = logging.getLogger("ferricorn.access")
    if not config.access_log or logger.disabled or not logger.isEnabledFor(logging.INFO):
        return None
    target: dict[str, Any] = {
        "info": logger.info,
        "fd": None,
        "prefix": "",
        "phrases": [(status.value, status.phrase) for status in http.HTTPStatus],
    }
    direct = _direct_stream(logger, config)
    if direct is not None:
        stream, formatter = direct
        stream.flush()
        target["fd"] = os.dup(stream.fileno())
        if config.access_log_format is None:
            target["prefix"] = formatter.level_prefix(logging.INFO, "INFO") + " "
    return target


def _direct_stream(
    logger: logging.Logger, config: Config
) -> tuple[TextIO, AccessFormatter] | None:
    if logger.filters or logger.propagate or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if type(handler) is not logging.StreamHandler or handler.filters:
        return None
    if handler.level > logging.INFO:
        return None
    formatter = handler.formatter
    if type(formatter) is not AccessFormatter or formatter.use_colors:
        return None
    wanted = AccessFormatter.default_fmt if config.access_log_format is None \
        else ACCESS_ATOMS_FMT
    if formatter._fmt != wanted:
        return None
    stream = handler.stream
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # not a real file (captured output): through logging
    return stream, formatter


def _apply_dict(config: dict, use_colors: bool | None) -> None:
    import logging.config

    config = adapt_uvicorn_config(config)
    if use_colors is not None:
        for formatter in (config.get("formatters") or {}).values():
            target = formatter.get("()", "") if isinstance(formatter, dict) else ""
            if str(target).startswith("ferricorn.logging."):
                formatter["use_colors"] = use_colors
    logging.config.dictConfig(config)
