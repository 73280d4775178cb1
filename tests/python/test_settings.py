"""One declaration per option: the table in `ferricorn.config` is the only list, and the
command line, `--help`, `run()`'s typed keywords, the README and the typed settings Rust
reads (src/settings.rs) all agree with it."""

from __future__ import annotations

import re
import typing

import ferricorn._ferricorn as engine
import pytest
from conftest import REPO
from ferricorn.cli import build_parser
from ferricorn.config import (
    ENGINE,
    ENGINE_DERIVED,
    OPTIONS,
    RELOAD_EXCLUDES,
    SUPERVISOR,
    WORKER,
    Config,
)
from ferricorn.options import Options


def test_run_keywords_are_the_table():
    assert set(typing.get_type_hints(Options)) == {o.name for o in OPTIONS} - {"app"}


def test_every_option_says_where_it_applies():
    for opt in OPTIONS:
        assert opt.places and set(opt.places) <= {SUPERVISOR, WORKER, ENGINE}, opt.name


def test_engine_settings_are_the_engine_options():
    """Every engine option reaches Rust (under its name or its `engine_name`), and Rust reads
    nothing but engine options and the few values of the process named in ENGINE_DERIVED."""
    from_table = {o.engine_name or o.name for o in OPTIONS if ENGINE in o.places}
    assert set(engine.ENGINE_SETTINGS) == from_table | set(ENGINE_DERIVED)


def test_rust_reads_attributes_that_exist():
    config = Config("m:a")
    for name in [*engine.ENGINE_SETTINGS, *engine.SUPERVISOR_SETTINGS]:
        assert hasattr(config, name), name


def test_supervisor_options_stay_with_the_supervisor():
    config = Config("m:a", workers=2, reload_delay=0.5, port=9000, log_level="debug",
                    timeout_keep_alive=7)
    env = config.worker_env()
    for opt in OPTIONS:
        if opt.places == (SUPERVISOR,) or opt.name == "app":
            assert opt.env not in env, opt.name
    assert env["FERRICORN_TIMEOUT_KEEP_ALIVE"] == "7"
    assert env["FERRICORN_LOG_LEVEL"] == "debug"


def test_readme_lists_every_flag_of_the_table():
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- options:.*?-->(.*?)<!-- /options -->", text, re.S)
    assert block, "README.md has no options table"
    listed = set(re.findall(r"^\| `(--[a-z0-9-]+)", block.group(1), re.M))
    assert listed == {o.flag_name for o in OPTIONS[1:]}


def help_line(flag: str) -> str:
    """The --help text of one flag, joined onto one line."""
    text = build_parser().format_help()
    match = re.search(rf"^  {re.escape(flag)}\b(.*?)(?=^  -)", text, re.S | re.M)
    assert match, flag
    return " ".join(match.group(1).split())


@pytest.mark.parametrize(
    ("flag", "shown"),
    [
        ("--backlog", "[default: 2048]"),
        ("--timeout-keep-alive", "[default: 5]"),
        ("--ws-max-size", "[default: 16777216]"),
        ("--access-log", "[default: on]"),
        ("--h11-max-incomplete-event-size", "[default: 65536]"),
        ("--reload-exclude", f"[default: {', '.join(RELOAD_EXCLUDES)}]"),
    ],
)
def test_help_defaults_are_rendered_from_the_declaration(flag, shown):
    assert shown in help_line(flag)


def test_reload_defaults_in_help_are_the_ones_used():
    config = Config("m:a", reload=True)
    assert config.reload_exclude_globs == list(RELOAD_EXCLUDES)
    assert ", ".join(config.reload_include_globs) in help_line("--reload-include")
