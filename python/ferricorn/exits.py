"""The process exit codes, in one place (uvicorn's where it has one).

`run()` raises `SystemExit` with these; the `ferricorn` command exits with them.
"""

from __future__ import annotations

__all__ = ["OK", "FAILED", "USAGE", "STARTUP_FAILED", "SHUTDOWN_FAILED"]

#: Served and stopped cleanly (SIGINT/SIGTERM).
OK = 0
#: The app could not be loaded, the socket could not be bound, or a worker setup failed.
FAILED = 1
#: Bad command line or environment variable (argparse's code).
USAGE = 2
#: The app's lifespan startup failed (`lifespan.startup.failed` or an exception with
#: `--lifespan on`), as uvicorn exits.
STARTUP_FAILED = 3
#: Served, then the app's lifespan shutdown failed (`lifespan.shutdown.failed` or an
#: exception): what it had to clean up may not be.
SHUTDOWN_FAILED = 4
