"""`ferricorn.Server`: serving inside an event loop the caller runs (tests, notebooks, apps
that start their own server), as uvicorn's `Server` is used.

Owns `Server(config)`, its `serve()` coroutine, and the flags a caller reads or sets
(`started`, `should_exit`, `force_exit`). Must not: start processes or pick the event loop:
`workers` and `reload` need `ferricorn.run()` or the command line, and `loop` is ignored
(the caller's loop serves).
"""

from __future__ import annotations

import asyncio

from ferricorn import exits
from ferricorn import logging as ferricorn_logging
from ferricorn.config import Config

__all__ = ["Server"]


class Server:
    """One server in the running event loop.

    ```python
    server = ferricorn.Server(ferricorn.Config(app, port=0))
    task = asyncio.create_task(server.serve())
    ...
    server.should_exit = True   # drains in-flight requests, runs lifespan shutdown
    await task
    ```

    `started` turns True once the socket listens; `should_exit` is looked at ten times a
    second; `force_exit` stops waiting for in-flight requests. SIGINT and SIGTERM stop it
    too when `serve()` runs on the main thread. `exit_code` is 0 after a clean stop, or the
    code `ferricorn.run()` would have exited with.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.exit_code: int | None = None

    async def serve(self) -> None:
        """Serves until `should_exit` (or a signal); returns after lifespan shutdown.

        Raises ValueError for options only a separate process can have (workers, reload).
        """
        from ferricorn import server

        config = self.config
        if config.worker_count > 1 or config.reload:
            raise ValueError(
                "Server.serve() serves in this process and this event loop: workers and "
                "reload need ferricorn.run() or the ferricorn command"
            )
        ferricorn_logging.configure(config)
        app = server.load_for_serving(config)
        if app is None:
            self.exit_code = exits.FAILED
            return
        self.exit_code = await server.serve(config, app, control=self)

    def run(self) -> None:
        """`asyncio.run(self.serve())`, for a caller without a loop."""
        asyncio.run(self.serve())
