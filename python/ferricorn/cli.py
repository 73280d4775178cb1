"""The command line and FERRICORN_<NAME> environment variables, derived from `OPTIONS`.

Owns `build_parser()` (argparse, grouped --help with defaults) and `parse_cli()`
(argv, then environment, then defaults -> Config keyword arguments). Usage
errors print one "Error: ..." line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Mapping
from typing import Any

from ferricorn import exits
from ferricorn.config import _SAME, OPTIONS, Option

__all__ = ["build_parser", "parse_cli", "version_line"]


def version_line() -> str:
    from ferricorn import __version__

    impl, pyver = platform.python_implementation(), platform.python_version()
    return f"Running ferricorn {__version__} with {impl} {pyver} on {platform.system()}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        self.exit(exits.USAGE, f"Error: {message}\n")


class _Version(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_line())
        parser.exit(0)


def _describe_default(opt: Option) -> str:
    """" [default: X]" from the declaration: the default itself, or what a placeholder
    default (None, empty) stands for."""
    if opt.shown_default is not None:
        return f" [default: {opt.shown_default}]"
    value = opt.default_for_cli
    if value is None or value in ([], ""):
        return ""
    if opt.flag:
        value = "on" if value else "off"
    return f" [default: {value}]"


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; options absent from the command line are left out of the result."""
    parser = _Parser(
        prog="ferricorn",
        usage="ferricorn [OPTIONS] APP",
        description="Serve an ASGI or WSGI application with ferricorn, a Rust-powered ASGI and "
        "WSGI server.",
        epilog="Every option can also be set through the environment as FERRICORN_<NAME>, "
        "e.g. FERRICORN_PORT=9000 or FERRICORN_ACCESS_LOG=false (repeatable options take one "
        "value per line). Command-line flags take precedence.",
        allow_abbrev=False,
        add_help=False,
    )
    groups: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.name == "app":
            parser.add_argument("app", nargs="?", default=None, metavar=opt.metavar,
                                help=opt.help)
            continue
        if opt.group not in groups:
            groups[opt.group] = parser.add_argument_group(opt.group)
        # argparse %-formats help texts: the access log atoms' signs must be doubled.
        text = (opt.help + _describe_default(opt)).replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": opt.name, "default": argparse.SUPPRESS, "help": text}
        if opt.flag:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=opt.parse, metavar=opt.metavar or opt.name.upper())
            if opt.choices:
                kwargs.update(choices=opt.choices, metavar="{" + "|".join(opt.choices) + "}")
            if opt.multiple:
                kwargs["action"] = "append"
            if opt.const is not _SAME:
                kwargs.update(nargs="?", const=opt.const)
        groups[opt.group].add_argument(opt.flag_name, **kwargs)
    info = parser.add_argument_group("Information")
    info.add_argument("--version", action=_Version, help="Show the version and exit.")
    info.add_argument("-h", "--help", action="help", help="Show this message and exit.")
    return parser


def parse_cli(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> dict:
    """Return Config keyword arguments (app included) from argv, then env vars, then defaults.

    Exits with status 2 and a one-line "Error: ..." on bad input.
    """
    environ = os.environ if environ is None else environ
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        if given.get(opt.name) is not None:
            values[opt.name] = given[opt.name]
            continue
        text = environ.get(opt.env)
        if text is None or (text == "" and (opt.parse is not str or opt.flag)):
            values[opt.name] = opt.default_for_cli
            continue
        try:
            if opt.multiple:
                values[opt.name] = [opt.from_text(line) for line in text.splitlines() if line]
            else:
                values[opt.name] = opt.from_text(text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"environment variable {opt.env}: {exc}")
    if not values["app"]:
        parser.error("missing argument APP (e.g. 'ferricorn main:app'; see --help)")
    return values
