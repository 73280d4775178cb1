"""Type stubs for the Rust extension `ferricorn._ferricorn` (src/lib.rs): what the Python
package uses of it. The classes behind the awaitables that `receive()` and `send()` return
are left out: apps only await them."""

from asyncio import AbstractEventLoop
from collections.abc import Awaitable, Callable, Coroutine
from logging import Logger
from typing import Any, TypeAlias, final

from typing_extensions import Self

from ferricorn.config import Config

__version__: str
#: The `Config` attributes the engine reads (src/settings.rs, EngineSettings).
ENGINE_SETTINGS: list[str]
#: The `Config` attributes the supervisor reads (src/settings.rs, SupervisorSettings).
SUPERVISOR_SETTINGS: list[str]

_Message: TypeAlias = dict[str, Any]

@final
class Server:
    """Owns the Rust engine for one listening socket and feeds its requests to the app."""

    def __new__(
        cls,
        fd: int,
        unix_path: str | None,
        config: Config,
        event_loop: AbstractEventLoop,
        app: Callable[..., Awaitable[None]],
        runner: Callable[
            [Any, dict[str, Any], HttpCycle | WebSocketCycle], Coroutine[Any, Any, None]
        ],
        state: dict[str, Any] | None,
        error_log: Logger,
        access_log: dict[str, Any] | None,
        wsgi: WsgiHost | None = None,
    ) -> Self: ...
    def fileno(self) -> int: ...
    def on_readable(self) -> None: ...
    def drain(self) -> None: ...
    def reload_tls(self) -> tuple[str, str] | None: ...
    def connections_open(self) -> int: ...
    def requests_total(self) -> int: ...
    def publish_gauges(self) -> None: ...
    def add_loop_blocked(self, seconds: float) -> None: ...
    def requests_in_flight(self) -> int: ...
    def check_deadlines(self) -> None: ...
    def turn(self) -> None: ...
    def tick(self) -> None: ...
    def enable_assist(
        self,
        assist_chunks: float | None = None,
        assist_load: float | None = None,
        resume_chunks: float | None = None,
        assist_idle_cores: float | None = None,
    ) -> None: ...
    @property
    def assisted(self) -> bool: ...
    @property
    def local(self) -> bool: ...
    def shutdown(self, timeout: float) -> None: ...

def check_access_log_format(text: str) -> None:
    """Raises ValueError naming what is wrong with an --access-log-format."""

def supervise(
    command: list[str],
    env: list[tuple[str, str]],
    config: Config,
    listen_fd: int | None = None,
    listen_path: str | None = None,
) -> int:
    """Runs and supervises worker processes until SIGINT/SIGTERM; returns the exit code."""

@final
class HttpCycle:
    """One request: the app's `receive` and `send`."""

    def receive(self) -> Awaitable[_Message]: ...
    def send(self, message: _Message) -> Awaitable[None]: ...
    def app_returned(self) -> str | None: ...
    def app_failed(self) -> bool: ...
    @property
    def response_complete(self) -> bool: ...

@final
class WebSocketCycle:
    """One WebSocket session: the app's `receive` and `send`."""

    def receive(self) -> Awaitable[_Message]: ...
    def send(self, message: _Message) -> Awaitable[None]: ...
    def app_returned(self) -> str | None: ...
    def app_failed(self) -> bool: ...

@final
class WsgiHost:
    """What a worker's WSGI threads share: the app, the request pool, the loggers."""

    def __new__(
        cls,
        app: Callable[..., Any],
        root_path: str,
        multiprocess: bool,
        errors: Any,
        file_wrapper: Callable[..., Any],
        error_log: Logger,
    ) -> Self: ...
    def run(self) -> None: ...
    def close(self) -> None: ...
    def running(self) -> int: ...

@final
class WsgiInput:
    """`wsgi.input`: the request body, streamed."""

    def read(self, size: int | None = None) -> bytes: ...
    def readline(self, size: int | None = None) -> bytes: ...
    def readlines(self, hint: int | None = None) -> list[bytes]: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> bytes: ...

@final
class WsgiResponse:
    """`start_response`; its `write` method is PEP 3333's `write()`."""

    def __call__(
        self, status: str, response_headers: Any, exc_info: Any = None
    ) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...
