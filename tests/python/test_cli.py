"""Tests of ferricorn's Python layer that need no Rust engine.

Covers the command line (help, version, usage errors, env vars), Config, the
import-string loader, log formatters and configs, .env files, socket binding and
the lifespan protocol. `ferricorn.server` is replaced by a fake where needed.

Until the package is installed, run from the repository root with:

    PYTHONPATH=python pytest tests/python/test_cli.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
from ferricorn import Config, run, sockets
from ferricorn import logging as ferricorn_logging
from ferricorn.cli import parse_cli
from ferricorn.config import OPTIONS
from ferricorn.envfile import load_env_file
from ferricorn.importer import AppLoadError, ImportFromStringError, import_from_string, load_app
from ferricorn.lifespan import Lifespan
from ferricorn.logging import LOGGING_CONFIG, AccessFormatter, DefaultFormatter
from ferricorn.main import main

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "ferricorn", *args],
        capture_output=True, text=True, env=full_env, timeout=60,
    )


@pytest.fixture(autouse=True)
def restore_ferricorn_loggers():
    names = ("ferricorn", "ferricorn.error", "ferricorn.access")
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


@pytest.fixture
def fake_server(monkeypatch):
    """Install a fake ferricorn.server whose run_config records the Config."""
    module = types.ModuleType("ferricorn.server")
    module.calls = []
    module.code = 0

    def run_config(config):
        module.calls.append(config)
        return module.code

    module.run_config = run_config
    monkeypatch.setitem(sys.modules, "ferricorn.server", module)
    return module


# --- command line (subprocess) ---------------------------------------------------------


def test_help_lists_options_with_defaults():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # undo line wrapping
    assert out.startswith("usage: ferricorn [OPTIONS] APP Serve an ASGI or WSGI application "
                          "with ferricorn, a Rust-powered ASGI and WSGI server. ")
    assert ("--timeout-request SECONDS Cancel a request that has not finished in this many "
            "seconds: 504 if nothing was sent, else the connection is cut (a WSGI thread "
            "cannot be cancelled: the client gets the 504, the thread runs on).") in out
    for flag in ("--host", "--port", "--uds", "--fd", "--lifespan", "--log-level",
                 "--no-access-log", "--header", "--forwarded-allow-ips", "--factory",
                 "--timeout-keep-alive", "--engine-threads", "--version"):
        assert flag in out
    assert "[default: 8000]" in out and "[default: 127.0.0.1]" in out
    assert "FERRICORN_PORT=9000" in out


def test_version_line():
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"Running ferricorn \S+ with \w+ \d+\.\d+\.\d+\S* on \w+\n",
                        result.stdout)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bogus", "main:app"], "unrecognized arguments: --bogus"),
        (["--port", "abc", "main:app"], "argument --port: invalid int value: 'abc'"),
        (["--port", "70000", "main:app"], "argument --port"),
        (["--loop", "foo", "main:app"], "argument --loop: invalid choice: 'foo'"),
        (["--header", "no-colon", "main:app"], "argument --header"),
        (["--header", "X-Team: caf\u00e9", "main:app"], "printable ASCII"),
        (["--header", "Bad Name: x", "main:app"], "not a valid header name"),
        (["--timeout-request", "0", "main:app"], "must be more than 0 seconds"),
        (["--timeout-header-read", "-1", "main:app"], "must be more than 0 seconds"),
        (["--blocked-loop-warning", "-1", "main:app"], "must be at least 0 seconds"),
        (["--timeout-queue", "nan", "main:app"], "must be at least 0 seconds"),
        ([], "APP"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and needle in lines[0]


def test_bad_env_value_exits_2():
    result = run_cli("main:app", env={"FERRICORN_PORT": "abc"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: environment variable FERRICORN_PORT: invalid int value: 'abc'"
    )


def test_help_version_and_errors_do_not_import_the_engine():
    code = (
        "import sys\n"
        "from ferricorn.main import main\n"
        "for argv in (['--help'], ['--version'], ['--bogus'], ['--port', 'x', 'a:b']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = [m for m in ('ferricorn.server', 'ferricorn._ferricorn') if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr


# --- parse_cli / main / run (in process) -------------------------------------------------


def test_cli_defaults_match_uvicorn():
    values = parse_cli(["main:app"], environ={})
    assert values["app"] == "main:app"
    assert values["host"] == "127.0.0.1" and values["port"] == 8000
    assert values["app_dir"] == "."  # CLI default; Config default is ""
    assert values["backlog"] == 2048 and values["timeout_keep_alive"] == 5
    assert values["lifespan"] == "auto" and values["loop"] == "auto"
    assert values["access_log"] is True and values["use_colors"] is None
    assert values["headers"] == [] and values["log_level"] is None
    assert set(values) == {opt.name for opt in OPTIONS}


def test_env_vars_apply_and_cli_wins():
    environ = {
        "FERRICORN_PORT": "9000",
        "FERRICORN_HOST": "0.0.0.0",
        "FERRICORN_ACCESS_LOG": "false",
        "FERRICORN_LOG_LEVEL": "DEBUG",
        "FERRICORN_TIMEOUT_HEADER_READ": "2.5",
        "FERRICORN_HEADERS": "X-A: 1\nX-B: two",
        "FERRICORN_APP": "envapp:app",
    }
    values = parse_cli(["--port", "7000"], environ=environ)
    assert values["port"] == 7000  # CLI beats env
    assert values["host"] == "0.0.0.0"
    assert values["access_log"] is False
    assert values["log_level"] == "debug"
    assert values["timeout_header_read"] == 2.5
    assert values["headers"] == [("X-A", "1"), ("X-B", "two")]
    assert values["app"] == "envapp:app"
    config = Config(values.pop("app"), **values)
    assert config.port == 7000 and config.access_log is False


def test_flag_pairs_and_repeated_headers():
    values = parse_cli(
        ["--no-access-log", "--no-server-header", "--use-colors", "--factory",
         "--header", "X-Team: ml", "--header", "Cache-Control: no-store, max-age=0",
         "pkg.mod:make"],
        environ={"FERRICORN_ACCESS_LOG": "true"},
    )
    assert values["access_log"] is False and values["server_header"] is False
    assert values["use_colors"] is True and values["factory"] is True
    assert values["headers"] == [("X-Team", "ml"), ("Cache-Control", "no-store, max-age=0")]


def test_bad_header_in_process_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        parse_cli(["--header", "nocolon", "a:b"], environ={})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: argument --header")


def test_main_passes_config_and_exit_code(fake_server):
    fake_server.code = 3
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--lifespan", "on", "main:app"])
    assert info.value.code == 3
    (config,) = fake_server.calls
    assert isinstance(config, Config)
    assert config.app == "main:app" and config.port == 0 and config.lifespan == "on"


def test_run_raises_only_on_failure(fake_server):
    assert run("main:app", port=1234) is None
    assert fake_server.calls[-1].port == 1234
    fake_server.code = 1
    with pytest.raises(SystemExit) as info:
        run("main:app")
    assert info.value.code == 1


# --- Config -----------------------------------------------------------------------------


def test_config_defaults_and_unknown_kwargs():
    config = Config("main:app")
    assert config.app_dir == "" and config.h11_max_incomplete_event_size is None
    assert config.max_head_bytes == 65536
    assert config.timeout_header_read == 30.0 and config.engine_thread_count == 0
    with pytest.raises(TypeError, match=r"'prot' \(did you mean 'port'\?\).*'zzz'"):
        Config("main:app", prot=1, zzz=2)


def test_config_coerces_and_validates():
    config = Config("m:a", port="9000", headers=["X-A: b", ("X-C", "d")], log_level="INFO")
    assert config.port == 9000 and config.log_level == "info"
    assert config.headers == [("X-A", "b"), ("X-C", "d")]
    assert config.log_level_number == logging.INFO
    with pytest.raises(ValueError, match="loop"):
        Config("m:a", loop="tokio")
    with pytest.raises(ValueError, match="port"):
        Config("m:a", port="http")


def test_numbers_given_to_config_are_range_checked():
    with pytest.raises(ValueError, match="timeout_request: must be more than 0 seconds"):
        Config("m:a", timeout_request=0)
    with pytest.raises(ValueError, match="ws_ping_interval: must be at least 0 seconds"):
        Config("m:a", ws_ping_interval=-5)
    with pytest.raises(ValueError, match="workers: must be at least 1"):
        Config("m:a", workers=0)
    assert Config("m:a", timeout_keep_alive=0).timeout_keep_alive == 0


def test_worker_env_carries_every_set_option_faithfully():
    config = Config("m:a", workers=2, log_level=logging.DEBUG, access_log=True,
                    log_config={"version": 1, "disable_existing_loggers": False})
    env = config.worker_env()
    # Defaults travel too, so an inherited FERRICORN_ACCESS_LOG=false cannot win.
    assert env["FERRICORN_ACCESS_LOG"] == "true"
    assert "FERRICORN_WORKERS" not in env  # the supervisor's own
    # What a worker reads back is what the supervisor was given.
    worker = Config("m:a", **{
        opt.name: env[opt.env] for opt in OPTIONS if opt.env in env
    })
    assert worker.log_level_number == logging.DEBUG
    assert json.loads(worker.log_config) == config.log_config
    with pytest.raises(ValueError, match="JSON-serialisable"):
        Config("m:a", workers=2, log_config={"version": 1, "x": object()}).worker_env()


def test_forwarded_allow_ips(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config("m:a").forwarded_allow_ips_list == ["127.0.0.1"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.2")
    assert Config("m:a").forwarded_allow_ips_list == ["10.0.0.1", "10.0.0.2"]
    assert Config("m:a", forwarded_allow_ips="*").forwarded_allow_ips_list == ["*"]
    assert Config("m:a", forwarded_allow_ips=["1.2.3.4"]).forwarded_allow_ips_list == ["1.2.3.4"]


# --- importer and load_app ---------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    (tmp_path / "goodapp.py").write_text(
        "async def app(scope, receive, send):\n    pass\n"
        "class Holder:\n    inner = app\n"
        "def make():\n    return app\n"
        "not_callable = 42\n"
        "def two_args(scope, receive):\n    pass\n"
    )
    (tmp_path / "brokenapp.py").write_text("import surely_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_import_from_string(app_dir):
    import goodapp

    assert import_from_string("goodapp:app") is goodapp.app
    assert import_from_string("goodapp:Holder.inner") is goodapp.app
    obj = object()
    assert import_from_string(obj) is obj


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("goodapp", 'Import string "goodapp" must be in format "<module>:<attribute>".'),
        ("goodapp:", 'Import string "goodapp:" must be in format "<module>:<attribute>".'),
        ("nosuchmod_q:app", 'Could not import module "nosuchmod_q".'),
        ("nosuchpkg_q.sub:app", 'Could not import module "nosuchpkg_q.sub".'),
        ("goodapp:nope", 'Attribute "nope" not found in module "goodapp".'),
        ("goodapp:Holder.nope", 'Attribute "Holder.nope" not found in module "goodapp".'),
    ],
)
def test_import_errors(app_dir, target, message):
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(target)
    assert str(info.value) == message


def test_users_own_import_error_is_not_hidden(app_dir):
    with pytest.raises(ModuleNotFoundError, match="surely_missing_dependency_xyz"):
        import_from_string("brokenapp:app")


def test_load_app(app_dir):
    import goodapp

    assert load_app(Config("goodapp:app")) is goodapp.app
    assert load_app(Config("goodapp:make", factory=True)) is goodapp.app
    assert load_app(Config(goodapp.app)) is goodapp.app
    with pytest.raises(AppLoadError) as info:
        load_app(Config("goodapp:missing"))
    assert str(info.value) == (
        'Error loading ASGI app. Attribute "missing" not found in module "goodapp".'
    )
    with pytest.raises(AppLoadError, match="not callable"):
        load_app(Config("goodapp:not_callable"))
    with pytest.raises(AppLoadError, match="--factory"):
        load_app(Config("goodapp:make"))
    with pytest.raises(AppLoadError, match=r"\(scope, receive, send\)"):
        load_app(Config("goodapp:two_args", interface="asgi3"))
    # Under --interface auto, a plain callable of two arguments is a WSGI app.
    config = Config("goodapp:two_args")
    assert load_app(config) is goodapp.two_args and config.app_interface == "wsgi"
    with pytest.raises(AppLoadError, match=r"\(environ, start_response\)"):
        load_app(Config("goodapp:app", interface="wsgi"))


def test_load_app_inserts_app_dir(tmp_path):
    sub = tmp_path / "srv"
    sub.mkdir()
    (sub / "appdirmod_q.py").write_text("async def app(scope, receive, send):\n    pass\n")
    try:
        app = load_app(Config("appdirmod_q:app", app_dir=str(sub)))
        assert callable(app) and sys.path[0] == str(sub)
    finally:
        sys.path.remove(str(sub))
        sys.modules.pop("appdirmod_q", None)


# --- logging ------------------------------------------------------------------------------


def make_record(level, msg, args=()):
    return logging.LogRecord("ferricorn.error", level, __file__, 1, msg, args, None)


def test_default_formatter_plain_and_colored():
    plain = DefaultFormatter(use_colors=False)
    assert plain.format(make_record(logging.INFO, "hello %s", ("x",))) == "INFO:     hello x"
    assert plain.format(make_record(logging.WARNING, "w")) == "WARNING:  w"
    assert plain.format(make_record(logging.CRITICAL, "c")) == "CRITICAL: c"
    assert plain.format(make_record(5, "t")) == "TRACE:    t"
    colored = DefaultFormatter(use_colors=True).format(make_record(logging.INFO, "hi"))
    assert "\x1b[" in colored and re.sub(r"\x1b\[[0-9;]*m", "", colored) == "INFO:     hi"


def test_access_formatter():
    args = ("127.0.0.1:50312", "GET", "/items?id=1", "1.1", 200)
    record = make_record(logging.INFO, '%s - "%s %s HTTP/%s" %d', args)
    line = AccessFormatter(use_colors=False).format(record)
    assert line == 'INFO:     127.0.0.1:50312 - "GET /items?id=1 HTTP/1.1" 200 OK'
    record = make_record(logging.INFO, '%s - "%s %s HTTP/%s" %d',
                         (("10.0.0.9", 80), "POST", "/", "1.0", 599))
    assert AccessFormatter(use_colors=False).format(record).endswith(
        '10.0.0.9:80 - "POST / HTTP/1.0" 599'
    )
    record = make_record(logging.INFO, '%s - "%s %s HTTP/%s" %d', args)
    colored = AccessFormatter(use_colors=True).format(record)
    assert "\x1b[" in colored
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == line


def test_configure_logging_default_and_level(capsys):
    ferricorn_logging.configure(Config("m:a", log_level="warning", use_colors=False))
    logging.getLogger("ferricorn.error").info("hidden")
    logging.getLogger("ferricorn.error").warning("shown")
    logging.getLogger("ferricorn.access").info('%s - "%s %s HTTP/%s" %d',
                                               "1.2.3.4:5", "GET", "/", "1.1", 200)
    out, err = capsys.readouterr()
    assert err == "WARNING:  shown\n" and out == ""
    assert logging.getLogger("ferricorn.access").propagate is False


def test_access_log_off(capsys):
    ferricorn_logging.configure(Config("m:a", access_log=False, use_colors=False))
    logging.getLogger("ferricorn.access").info('%s - "%s %s HTTP/%s" %d',
                                               "1.2.3.4:5", "GET", "/", "1.1", 200)
    logging.getLogger("ferricorn.error").info("still here")
    out, err = capsys.readouterr()
    assert out == "" and err == "INFO:     still here\n"


def test_uvicorn_style_json_log_config(tmp_path, capsys):
    config = json.loads(json.dumps(LOGGING_CONFIG).replace("ferricorn", "uvicorn"))
    config["formatters"]["default"]["fmt"] = "U %(levelprefix)s %(message)s"
    config["formatters"]["default"]["use_colors"] = False
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    ferricorn_logging.configure(Config("m:a", log_config=str(path)))
    logging.getLogger("ferricorn.error").info("no")
    logging.getLogger("ferricorn.error").error("boom")
    assert capsys.readouterr().err == "U ERROR:    boom\n"


def test_yaml_and_ini_log_configs(tmp_path, capsys):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "log.yaml"
    path.write_text(yaml.safe_dump(LOGGING_CONFIG))
    ferricorn_logging.configure(Config("m:a", log_config=str(path), use_colors=False))
    logging.getLogger("ferricorn.error").info("from yaml")
    assert capsys.readouterr().err == "INFO:     from yaml\n"

    ini = tmp_path / "log.ini"
    ini.write_text(
        "[loggers]\nkeys=root,ferr\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
        "[logger_root]\nhandlers=\n"
        "[logger_ferr]\nhandlers=h\nqualname=ferricorn\npropagate=0\nlevel=INFO\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
        "[formatter_f]\nclass=ferricorn.logging.DefaultFormatter\nformat=INI %(message)s\n"
    )
    ferricorn_logging.configure(Config("m:a", log_config=str(ini)))
    logging.getLogger("ferricorn.error").info("from ini")
    assert capsys.readouterr().err == "INI from ini\n"


# --- env file ------------------------------------------------------------------------------


def test_env_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text(
        "# comment\n\n"
        "FERRI_T_PLAIN=value\n"
        "export FERRI_T_EXPORTED=yes\n"
        'FERRI_T_DQ="spaced value # not a comment"\n'
        "FERRI_T_SQ='single'\n"
        "FERRI_T_TRAILING=abc # comment\n"
        "FERRI_T_EQ=a=b\n"
        "FERRI_T_EXISTING=from-file\n"
        "not a pair\n"
    )
    for key in ("PLAIN", "EXPORTED", "DQ", "SQ", "TRAILING", "EQ"):
        monkeypatch.delenv(f"FERRI_T_{key}", raising=False)
    monkeypatch.setenv("FERRI_T_EXISTING", "from-env")
    load_env_file(Config("m:a", env_file=str(path)))
    assert os.environ["FERRI_T_PLAIN"] == "value"
    assert os.environ["FERRI_T_EXPORTED"] == "yes"
    assert os.environ["FERRI_T_DQ"] == "spaced value # not a comment"
    assert os.environ["FERRI_T_SQ"] == "single"
    assert os.environ["FERRI_T_TRAILING"] == "abc"
    assert os.environ["FERRI_T_EQ"] == "a=b"
    assert os.environ["FERRI_T_EXISTING"] == "from-env"
    for key in ("PLAIN", "EXPORTED", "DQ", "SQ", "TRAILING", "EQ"):
        monkeypatch.delenv(f"FERRI_T_{key}")


# --- sockets ------------------------------------------------------------------------------


def test_bind_tcp_port_zero():
    config = Config("m:a", host="127.0.0.1", port=0)
    sock = sockets.bind(config)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port != 0
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert sockets.listen_message(sock) == (
            f"Ferricorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)"
        )
    finally:
        sock.close()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_bind_ipv6():
    try:
        sock = sockets.bind(Config("m:a", host="::1", port=0))
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    try:
        assert sock.family == socket.AF_INET6
        assert sockets.listen_message(sock).startswith("Ferricorn running on http://[::1]:")
    finally:
        sock.close()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no UNIX sockets")
def test_bind_uds_replaces_stale_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # leaves the file behind
    config = Config("m:a", uds=path)
    sock = sockets.bind(config)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.close()
        assert sockets.listen_message(sock) == (
            f"Ferricorn running on unix socket {path} (Press CTRL+C to quit)"
        )
    finally:
        sock.close()


def test_bind_from_fd():
    original = socket.socket()
    original.bind(("127.0.0.1", 0))
    sock = sockets.bind(Config("m:a", fd=os.dup(original.fileno())))
    try:
        assert sock.getsockname() == original.getsockname()
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass
    finally:
        sock.close()
        original.close()


# --- lifespan -------------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=0)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def log():
    logger = logging.getLogger("test.ferricorn.lifespan")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = ListHandler()
    logger.addHandler(handler)
    logger.messages = lambda level=0: [r.getMessage() for r in handler.records
                                       if r.levelno >= level]
    yield logger
    logger.removeHandler(handler)


def test_lifespan_full_cycle(log):
    events = []

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
        message = await receive()
        events.append(message["type"])
        scope["state"]["model"] = "loaded"
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        events.append(message["type"])
        await send({"type": "lifespan.shutdown.complete"})

    async def scenario():
        lifespan = Lifespan(app, "auto", log)
        await lifespan.startup()
        assert not lifespan.should_exit and lifespan.state == {"model": "loaded"}
        await lifespan.shutdown()
        return lifespan

    lifespan = asyncio.run(scenario())
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert not lifespan.startup_failed and not lifespan.shutdown_failed
    assert log.messages() == [
        "Waiting for application startup.", "Application startup complete.",
        "Waiting for application shutdown.", "Application shutdown complete.",
    ]


async def http_only_app(scope, receive, send):
    assert scope["type"] == "http"


def test_lifespan_auto_tolerates_unsupported_app(log):
    async def scenario():
        lifespan = Lifespan(http_only_app, "auto", log)
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    lifespan = asyncio.run(scenario())
    assert not lifespan.should_exit and not lifespan.startup_failed
    assert "ASGI 'lifespan' protocol appears unsupported." in log.messages(logging.DEBUG)
    assert log.messages(logging.WARNING) == []


def test_lifespan_on_treats_exception_as_fatal(log):
    async def scenario():
        lifespan = Lifespan(http_only_app, "on", log)
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    lifespan = asyncio.run(scenario())
    assert lifespan.should_exit and lifespan.startup_failed
    errors = log.messages(logging.ERROR)
    assert any("Exception in 'lifespan' protocol" in m for m in errors)


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_lifespan_startup_failed_message(log, mode):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "GPU not found"})

    async def scenario():
        lifespan = Lifespan(app, mode, log)
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    lifespan = asyncio.run(scenario())
    assert lifespan.should_exit and lifespan.startup_failed
    assert "GPU not found" in log.messages(logging.ERROR)
    assert "Waiting for application shutdown." not in log.messages()


def test_lifespan_unknown_message_type_is_logged(log):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.done"})

    async def scenario():
        lifespan = Lifespan(app, "on", log)
        await lifespan.startup()
        return lifespan

    lifespan = asyncio.run(scenario())
    assert lifespan.should_exit
    errors = [r for r in log.handlers[0].records if r.levelno == logging.ERROR and r.exc_info]
    assert errors and isinstance(errors[0].exc_info[1], RuntimeError)
    assert "lifespan.startup.done" in str(errors[0].exc_info[1])


def test_lifespan_shutdown_failed(log):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})

    async def scenario():
        lifespan = Lifespan(app, "auto", log)
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    lifespan = asyncio.run(scenario())
    assert lifespan.shutdown_failed and not lifespan.startup_failed
    assert "flush failed" in log.messages(logging.ERROR)
    assert "Application shutdown complete." not in log.messages()


def test_lifespan_off_never_calls_app(log):
    called = []

    async def app(scope, receive, send):
        called.append(scope)

    async def scenario():
        lifespan = Lifespan(app, "off", log)
        await lifespan.startup()
        await lifespan.shutdown()

    asyncio.run(scenario())
    assert called == [] and log.messages() == []
