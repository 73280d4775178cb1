"""The ASGI lifespan protocol (spec_version 2.0), driven from the server's event loop.

Owns `Lifespan`: runs the app once with a "lifespan" scope in its own asyncio task,
feeds it the startup/shutdown events and records the outcome. The server reads
`should_exit` after `startup()` (exit code 3 when set) and shares `state` with
every request scope (a shallow copy per request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Lifespan"]

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]

_SHUTDOWN_GRACE = 1.0  # seconds the app task may linger after answering shutdown
_UNSUPPORTED = "ASGI 'lifespan' protocol appears unsupported."


class Lifespan:
    """Lifespan driver. mode: "auto" (tolerate apps without lifespan), "on", "off"."""

    def __init__(self, app: ASGIApp, mode: str = "auto", logger: logging.Logger | None = None):
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan mode must be auto, on or off, not {mode!r}")
        self.app = app
        self.mode = mode
        self.logger = logger or logging.getLogger("ferricorn.error")
        self.state: dict[str, Any] = {}
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self.supported = False  # True once the app answered the startup event
        self._phase = "idle"  # idle -> startup -> running|failed -> shutdown -> done
        self._engaged = False  # the app received or sent a lifespan message
        self._queue: asyncio.Queue[Message] | None = None
        self._answered: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def scope(self) -> dict[str, Any]:
        return {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }

    async def startup(self) -> None:
        """Send lifespan.startup and wait for the app's answer (or its exit)."""
        if self.mode == "off":
            return
        self.logger.info("Waiting for application startup.")
        self._queue = asyncio.Queue()
        self._answered = asyncio.Event()
        self._phase = "startup"
        self._task = asyncio.get_running_loop().create_task(self._run_app())
        await self._queue.put({"type": "lifespan.startup"})
        await self._answered.wait()
        if self.startup_failed:
            self.should_exit = True
        elif self.supported:
            self.logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        """Send lifespan.shutdown and wait for the answer; no-op when lifespan is not in use."""
        task = self._task
        if task is None or self._queue is None or task.done() or self.startup_failed:
            self._phase = "done"
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return
        self.logger.info("Waiting for application shutdown.")
        self._answered = asyncio.Event()
        self._phase = "shutdown"
        await self._queue.put({"type": "lifespan.shutdown"})
        await self._answered.wait()
        if not self.shutdown_failed:
            self.logger.info("Application shutdown complete.")
        self._phase = "done"
        done, _ = await asyncio.wait({task}, timeout=_SHUTDOWN_GRACE)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run_app(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_app_error(exc)
        else:
            if self._phase == "startup":  # returned without answering startup
                level = logging.WARNING if self.mode == "on" else logging.DEBUG
                self.logger.log(level, _UNSUPPORTED)
        finally:
            if self._answered is not None:
                self._answered.set()

    def _on_app_error(self, exc: BaseException) -> None:
        if self._phase == "startup" and self.mode == "auto":
            # Apps without lifespan support typically raise on the unknown scope type
            # before touching receive/send; that is expected and only worth a debug line.
            if self._engaged:
                self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
                self.logger.info(_UNSUPPORTED)
            else:
                self.logger.debug(_UNSUPPORTED)
            return
        if self._phase == "startup":
            self.startup_failed = True
        elif self._phase == "shutdown":
            self.shutdown_failed = True
        self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        if self._phase == "startup":
            self.logger.error("Application startup failed. Exiting.")
        elif self._phase == "shutdown":
            self.logger.error("Application shutdown failed. Exiting.")

    async def _receive(self) -> Message:
        assert self._queue is not None
        message = await self._queue.get()
        self._engaged = True
        return message

    async def _send(self, message: Message) -> None:
        self._engaged = True
        kind = message.get("type")
        expected = {
            "startup": ("lifespan.startup.complete", "lifespan.startup.failed"),
            "shutdown": ("lifespan.shutdown.complete", "lifespan.shutdown.failed"),
        }.get(self._phase, ())
        if kind not in expected:
            where = f"during {self._phase}" if expected else f"in phase {self._phase!r}"
            raise RuntimeError(f"Unexpected ASGI lifespan message type {kind!r} {where}.")
        assert self._answered is not None
        if kind == "lifespan.startup.complete":
            self.supported = True
            self._phase = "running"
        elif kind == "lifespan.startup.failed":
            self.supported = self.startup_failed = True
            self._phase = "failed"
            self._log_failure("startup", message)
        elif kind == "lifespan.shutdown.failed":
            self.shutdown_failed = True
            self._log_failure("shutdown", message)
        if kind.startswith("lifespan.shutdown."):
            self._phase = "done"
        self._answered.set()

    def _log_failure(self, what: str, message: Message) -> None:
        text = message.get("message") or ""
        if text:
            self.logger.error(text)
        self.logger.error(f"Application {what} failed. Exiting.")
