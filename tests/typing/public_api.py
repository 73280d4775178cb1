"""The public API as users call it, type-checked with `mypy --strict` in `make lint`: the
keywords of `run()` and `Config()` are typed (a misspelt option or a wrong type is an error
in the editor, not at startup)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import ferricorn
from ferricorn import Config, Options

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [[b"x", b"y"]]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve() -> None:
    options: Options = {"host": "127.0.0.1", "port": 8000, "log_level": "info"}
    config = Config(app, port=8001, timeout_keep_alive=5, headers=[("x-team", "ml")])
    print(config)
    ferricorn.run("example:app", host="0.0.0.0", port=8000, workers=2, reload=False)
    ferricorn.run(app, **options)
    ferricorn.run(app, loop="uvloop", lifespan="on", ws="none", timeout_request=30.0)


async def serve_in_my_loop() -> None:
    config = Config(app, port=0, log_format="json", access_log_format="%(h)s %(s)s",
                    request_id_header="X-Request-ID")
    server = ferricorn.Server(config)
    server.should_exit = False
    await server.serve()
    started: bool = server.started
    code: int | None = server.exit_code
    print(started, code, ferricorn.__version__)
