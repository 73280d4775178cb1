"""The `--loop` option: which asyncio event loop a worker runs.

Owns the choice between uvloop and asyncio's own loop; `auto` takes uvloop when it is
installed (as uvicorn does), `uvloop` insists on it.
"""

from __future__ import annotations

import asyncio

__all__ = ["new_event_loop"]


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A new event loop for `--loop` `choice` (auto: uvloop if importable)."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
