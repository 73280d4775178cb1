"""End-to-end: `ferricorn.Server(config).serve()` inside an event loop the test runs (as
pytest fixtures and notebooks run uvicorn's), stopped with `should_exit`; and `--version`.

Served app: tests/apps/logs_app.py (`app`, with lifespan) and a lifespan-recording app here.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from pathlib import Path

import ferricorn
import httpx
import pytest
import tomllib
from conftest import PYTHON, REPO, base_env, free_port

EVENTS: list[str] = []


async def recording_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            EVENTS.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"served {scope['path']}".encode()})


def test_serve_inside_asyncio_run_then_should_exit():
    EVENTS.clear()
    port = free_port()
    config = ferricorn.Config(recording_app, port=port, log_config={}, access_log=False)
    server = ferricorn.Server(config)
    seen: dict[str, object] = {}

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), "serve() ended before it started"
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{port}/inside")
            seen["body"] = response.text
            # A request in flight when should_exit is set still gets its answer.
            slow = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow"))
            await asyncio.sleep(0.1)
            server.should_exit = True
            seen["slow"] = (await slow).text
        await asyncio.wait_for(task, 10)
        seen["loop_still_runs"] = True

    asyncio.run(main())
    assert seen == {"body": "served /inside", "slow": "served /slow", "loop_still_runs": True}
    assert EVENTS == ["lifespan.startup", "lifespan.shutdown"]
    assert server.exit_code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_serve_on_a_thread_that_is_not_the_main_one():
    port = free_port()
    server = ferricorn.Server(
        ferricorn.Config(recording_app, port=port, log_config={}, lifespan="off")
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started
        assert httpx.get(f"http://127.0.0.1:{port}/t", timeout=10).text == "served /t"
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()
    assert server.exit_code == 0


def test_serve_refuses_workers_and_reload():
    for options in ({"workers": 2}, {"reload": True}):
        server = ferricorn.Server(ferricorn.Config(recording_app, log_config={}, **options))
        with pytest.raises(ValueError, match="workers and reload need ferricorn.run"):
            asyncio.run(server.serve())


def test_serve_with_an_app_that_cannot_load():
    server = ferricorn.Server(ferricorn.Config("apps.no_such_module:app", log_config={}))
    asyncio.run(server.serve())
    assert not server.started
    assert server.exit_code == 1


def test_version_comes_from_cargo_toml():
    version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    assert ferricorn.__version__ == version
    from ferricorn import _ferricorn

    assert _ferricorn.__version__ == version
    out = subprocess.run([PYTHON, "-m", "ferricorn", "--version"], env=base_env(),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    impl = sys.implementation.name.replace("cpython", "CPython")
    assert re.fullmatch(
        rf"Running ferricorn {re.escape(version)} with {impl} "
        rf"{re.escape('.'.join(map(str, sys.version_info[:3])))} on Linux\n",
        out.stdout,
    ), out.stdout
    assert Path(ferricorn.__file__).with_name("py.typed").exists()
