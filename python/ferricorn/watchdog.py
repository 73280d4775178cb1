"""The blocked-event-loop warning (--blocked-loop-warning).

A synchronous call inside `async def` (a `model.predict()`, `time.sleep`, a blocking HTTP
client) stops every request of the worker. The loop thread beats a heartbeat a few times a
second with `call_later`; a daemon thread checks it, and when the loop has not come back
for the configured time it logs one warning with the loop thread's Python stack, so the
line that blocks is in the log. Nothing runs per request.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

logger = logging.getLogger("ferricorn.error")


class LoopWatchdog:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        report: Callable[[float], None] | None = None,
    ) -> None:
        self.loop = loop
        self.report = report
        self.threshold = threshold
        self.interval = max(threshold / 4, 0.01)
        self.blocked_seconds_total = 0.0
        self._last_beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(
            target=self._watch, name="ferricorn-loop-watchdog", daemon=True
        )

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        self._handle = self.loop.call_later(self.interval, self._beat)

    def _watch(self) -> None:
        reported_for = None
        while not self._stop.wait(self.interval):
            beat = self._last_beat
            stalled = time.monotonic() - beat - self.interval
            if stalled < self.threshold or reported_for == beat:
                continue
            reported_for = beat
            self.blocked_seconds_total += stalled
            if self.report is not None:
                self.report(stalled)
            frame = sys._current_frames().get(self._loop_thread)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            logger.warning(
                "Event loop blocked for %.1f s (--blocked-loop-warning %g): every request of "
                "this worker waits meanwhile. Move blocking work off the loop (for example "
                "`await asyncio.to_thread(...)`). The loop thread is at:\n%s",
                stalled,
                self.threshold,
                stack,
            )
