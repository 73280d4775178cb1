"""The `--env-file` option: KEY=VALUE lines read into `os.environ`.

Owns the .env syntax (comments, `export`, quotes, escaped newlines in double quotes).
Variables already in the environment win, as with python-dotenv's defaults.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferricorn.config import Config

__all__ = ["load_env_file"]


def load_env_file(config: Config) -> None:
    """Read env_file (KEY=VALUE lines) into os.environ; existing variables win. Idempotent."""
    if config._env_loaded or not config.env_file:
        return
    config._env_loaded = True
    with open(config.env_file, encoding="utf-8") as fh:
        for key, value in _parse_env_lines(fh.read().splitlines()):
            os.environ.setdefault(key, value)


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
