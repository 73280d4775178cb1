"""ferricorn: an ASGI server with a Rust engine, usable as a drop-in for uvicorn.

Owns the public API: `run()`, `Config`, `Server` (serving inside the caller's event loop)
and `__version__`. Importing the package is cheap: the engine (`ferricorn.server`) loads
only when something is served, and `__version__` is looked up on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferricorn.config import Config
from ferricorn.embedded import Server
from ferricorn.options import Options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Config", "Options", "Server", "run", "__version__"]


def run(app: Any, **kwargs: Unpack[Options]) -> None:
    """Serve `app` (an ASGI3 callable or "module:attr") like `uvicorn.run(app, **kwargs)`.

    Keyword arguments are the `Config` options (`ferricorn.Options` lists them with their
    types). Returns after a clean shutdown; raises SystemExit with the server's exit code
    otherwise.
    """
    config = Config(app, **kwargs)
    if config.reload and config.worker_count > 1:
        raise ValueError("reload=True and workers > 1 cannot be combined: drop one of them")
    if config.needs_supervisor:
        from ferricorn.supervisor import run_supervisor

        code = run_supervisor(config)
    else:
        from ferricorn.server import run_config

        code = run_config(config)
    if code:
        raise SystemExit(code)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # One source, Cargo.toml's version: maturin writes it into the package metadata and
        # compiles it into the extension (read only when the metadata is missing, since
        # loading the engine is what `--version` must not cost).
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("ferricorn")
        except PackageNotFoundError:
            from ferricorn._ferricorn import __version__ as value
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'ferricorn' has no attribute {name!r}")
