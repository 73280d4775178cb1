"""The `ferricorn` console script: command line -> Config -> server.

Owns `main()`. Parsing (and --help, --version and usage errors) happens before
`ferricorn.server` is imported, so those paths never load the Rust engine.
"""

from __future__ import annotations

import sys

from ferricorn import exits
from ferricorn.cli import parse_cli
from ferricorn.config import Config

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run the server as `ferricorn [OPTIONS] APP` would; always ends with sys.exit."""
    options = parse_cli(sys.argv[1:] if argv is None else argv)
    config = Config(options.pop("app"), **options)
    if config.reload and config.worker_count > 1:
        print(
            "Error: --reload and --workers > 1 cannot be combined: reload restarts a single "
            "worker. Drop one of them.",
            file=sys.stderr,
        )
        sys.exit(exits.USAGE)
    if config.needs_supervisor:
        from ferricorn.supervisor import run_supervisor

        sys.exit(run_supervisor(config))

    from ferricorn.server import run_config

    sys.exit(run_config(config))


if __name__ == "__main__":
    main()
