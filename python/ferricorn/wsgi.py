"""The Python side of serving WSGI apps and legacy ASGI 2 apps.

Owns telling the three interfaces apart (`detect_interface`, the way uvicorn does for ASGI
2 and 3, extended to WSGI by the callable's arity), `wsgi.errors` (`ErrorStream`),
`wsgi.file_wrapper` (`FileWrapper`), the ASGI 2 shim, and starting and stopping the WSGI
threads. The request path itself (environ, `wsgi.input`, `start_response`) is Rust:
`ferricorn._ferricorn.WsgiHost`. Must not: parse HTTP or touch sockets.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["ErrorStream", "FileWrapper", "WsgiThreads", "detect_interface", "asgi2_to_asgi3"]

logger = logging.getLogger("ferricorn.error")

#: How long shutdown waits for WSGI threads to return once the pool is closed.
_JOIN_TIMEOUT = 1.0


def _accepts(app: Any, count: int) -> bool:
    try:
        inspect.signature(app).bind(*([None] * count))
    except TypeError:
        return False
    return True


def detect_interface(app: Any) -> str:
    """"asgi3", "asgi2" or "wsgi" for `--interface auto`.

    A class is ASGI 2 unless its instances are awaitable (uvicorn's rule) or it is made
    from (environ, start_response), PEP 3333's class application; a coroutine
    function (or an object whose `__call__` is one) is ASGI 3; any other callable is told by
    how many positional arguments it takes: three ASGI 3 (a plain function returning a
    coroutine), two WSGI (environ, start_response), one ASGI 2 (scope).
    """
    if inspect.isclass(app):
        if hasattr(app, "__await__"):
            return "asgi3"
        # PEP 3333's class application: instantiated with (environ, start_response).
        return "wsgi" if _accepts(app, 2) and not _accepts(app, 1) else "asgi2"
    call = type(app).__call__ if not inspect.isroutine(app) else None
    if asyncio.iscoroutinefunction(app) or asyncio.iscoroutinefunction(call):
        return "asgi3"
    try:
        inspect.signature(app)
    except (TypeError, ValueError):
        return "asgi3"  # builtins and odd callables: the ASGI 3 default
    if _accepts(app, 3):
        return "asgi3"
    if _accepts(app, 2):
        return "wsgi"
    if _accepts(app, 1):
        return "asgi2"
    return "asgi3"


def asgi2_to_asgi3(app: Any) -> Callable[..., Any]:
    """Serves a legacy ASGI 2 app (`app(scope)` returns `instance(receive, send)`) through
    the ASGI 3 path."""

    async def asgi3(scope: dict, receive: Any, send: Any) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi3.__qualname__ = f"asgi2({getattr(app, '__qualname__', type(app).__name__)})"
    return asgi3


class ErrorStream(io.TextIOBase):
    """`wsgi.errors`: what the app writes goes to the error log, a line per record.

    Shared by all threads, so it keeps no partial line: each `write` is logged as it comes
    (a bare newline, as `print` writes after its text, is skipped).
    """

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self._log = log

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, got {type(text).__name__}")
        message = text.rstrip("\r\n")
        if message:
            self._log.error("%s", message)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


class FileWrapper:
    """`wsgi.file_wrapper`: a file-like object as the response iterable, read in blocks;
    `close()` closes the file (PEP 3333, "Optional Platform-Specific File Handling")."""

    def __init__(self, filelike: IO[bytes], block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.block_size
        while True:
            block = read(size)
            if not block:
                return
            yield block


class WsgiThreads:
    """The WSGI threads of one worker: each runs `host.run()` until `stop()`."""

    def __init__(self, host: Any, count: int) -> None:
        self.host = host
        self.threads = [
            threading.Thread(target=self._run, name=f"ferricorn-wsgi-{i}", daemon=True)
            for i in range(count)
        ]

    def _run(self) -> None:
        try:
            self.host.run()
        except BaseException:  # noqa: BLE001 - a dying thread must say why
            logger.exception("A WSGI thread stopped")

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """No more requests; waits briefly for the threads (a thread still inside the app
        is left to finish, as a daemon)."""
        self.host.close()
        for t in self.threads:
            t.join(_JOIN_TIMEOUT)
