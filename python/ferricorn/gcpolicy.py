"""The worker's garbage-collection policy (`--gc-policy`).

Owns what the cyclic collector does while a worker serves: what is frozen after startup and
how often young collections run. Must not collect on a request's path nor touch an app that
set its own policy.

Why: a server with thousands of live requests (token streams, long inference calls) keeps
tens of objects alive per request (Task, coroutine, frames, timer, the cycle objects). With
Python's default thresholds (700, 10, 10) those objects are promoted while they live, and
every full collection walks all of them: at 10,000 open streams, full collections of about
120 ms each took 20% of the worker's CPU and added their length to every stream's delay
(bench/RESULTS-earlier.md, "Session 10"). Raising the young generation's threshold with the
requests in flight lets short-lived objects die before a collection sees them, and freezing
what startup allocated (the app, its modules) keeps it out of every later full collection.
The threshold is kept small for a server with few requests in flight, so cyclic garbage
(an exception's traceback holding a large body) is collected as often as Python would.
"""

from __future__ import annotations

import gc
import logging

#: Python's own thresholds; an app that changed them has a policy of its own.
PYTHON_DEFAULT = (700, 10, 10)
#: Young-generation threshold: Python's, plus this much per request in flight ...
PER_REQUEST = 25
#: ... up to this (10 ms for a young collection of this size, measured at 10,000 streams).
MAX_YOUNG = 50_000


def young_threshold(in_flight: int) -> int:
    """The young generation's threshold for this many requests in flight."""
    return min(PYTHON_DEFAULT[0] + PER_REQUEST * max(in_flight, 0), MAX_YOUNG)


class GcPolicy:
    """Applies `--gc-policy adaptive`: `start()` once serving begins, `update()` a few times a
    second, `stop()` at shutdown (it gives back what it changed, for an embedding caller)."""

    def __init__(self, mode: str, logger: logging.Logger) -> None:
        self._logger = logger
        self._active = mode == "adaptive"
        self._threshold = PYTHON_DEFAULT[0]
        self._saved: tuple[int, int, int] | None = None

    def start(self) -> bool:
        """Freezes what startup built; returns whether `update()` has anything to do."""
        if not self._active:
            return False
        if not gc.isenabled() or gc.get_threshold() != PYTHON_DEFAULT:
            self._logger.debug("--gc-policy adaptive: the app set its own collector "
                               "(enabled: %s, thresholds %s); leaving it", gc.isenabled(),
                               gc.get_threshold())
            self._active = False
            return False
        self._saved = gc.get_threshold()
        # What startup left behind goes now; what it built stays, outside later collections.
        gc.collect()
        gc.freeze()
        return True

    def update(self, in_flight: int) -> None:
        if not self._active:
            return
        wanted = young_threshold(in_flight)
        # Only a real change is applied: set_threshold is cheap, but this runs 20 times a
        # second and the count moves by a request or two all the time.
        if abs(wanted - self._threshold) * 8 > self._threshold:
            self._threshold = wanted
            _, middle, old = gc.get_threshold()
            gc.set_threshold(wanted, middle, old)

    def stop(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None
        self._active = False
