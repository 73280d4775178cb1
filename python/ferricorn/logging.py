"""Log formatting and the default logging configuration.

Owns the TRACE level, the uvicorn-look formatters (`DefaultFormatter`,
`AccessFormatter`), the default `LOGGING_CONFIG` dictConfig,
`adapt_uvicorn_config`, which lets log configs written for uvicorn run unchanged, and
`configure(config)`, which applies `--log-config`, `--log-level` and `--access-log`.

Loggers: "ferricorn" (stderr), "ferricorn.error" (server messages, propagates
to "ferricorn") and "ferricorn.access" (one line per request, stdout).
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
    "DefaultFormatter",
    "AccessFormatter",
    "adapt_uvicorn_config",
    "configure",
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
        _apply_dict(LOGGING_CONFIG, config.use_colors)
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


def _apply_dict(config: dict, use_colors: bool | None) -> None:
    import logging.config

    config = adapt_uvicorn_config(config)
    if use_colors is not None:
        for formatter in (config.get("formatters") or {}).values():
            target = formatter.get("()", "") if isinstance(formatter, dict) else ""
            if str(target).startswith("ferricorn.logging."):
                formatter["use_colors"] = use_colors
    logging.config.dictConfig(config)
