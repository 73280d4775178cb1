"""Loading the app: "module:attribute" strings to Python objects, its interface and check.

Owns `import_from_string` and its error type, and `load_app(config)`. Only mistakes in the
import string itself become an `ImportFromStringError` (one clear message); an ImportError
raised from inside the user's own module is re-raised untouched so the traceback points at
the real bug. `load_app()` turns the error into `AppLoadError("Error loading ASGI app.
<message>")`; the server logs that and exits with `exits.APP_NOT_LOADED`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferricorn.config import Config

__all__ = ["AppLoadError", "ImportFromStringError", "import_from_string", "load_app"]


class ImportFromStringError(Exception):
    """The import string is malformed, or names a module/attribute that does not exist."""


def _names_missing_module(module_str: str, missing: str | None) -> bool:
    """True when `missing` is `module_str` itself or one of its parent packages."""
    if not missing:
        return False
    return module_str == missing or module_str.startswith(missing + ".")


def import_from_string(import_str: Any) -> Any:
    """Return the object named by "package.module:attr.sub"; non-strings are returned as-is."""
    if not isinstance(import_str, str):
        return import_str

    module_str, sep, attrs_str = import_str.partition(":")
    if not sep or not module_str or not attrs_str:
        raise ImportFromStringError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>".'
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if not _names_missing_module(module_str, exc.name):
            raise
        raise ImportFromStringError(f'Could not import module "{module_str}".') from None

    obj: Any = module
    try:
        for attr in attrs_str.split("."):
            obj = getattr(obj, attr)
    except AttributeError:
        raise ImportFromStringError(
            f'Attribute "{attrs_str}" not found in module "{module_str}".'
        ) from None
    return obj


class AppLoadError(Exception):
    """The app could not be loaded; str() is the full one-line message to log before exit 1."""


def load_app(config: Config) -> Any:
    """Return the app callable and set `config.app_interface` ("asgi3", "asgi2" or "wsgi",
    from --interface or told from the callable). Raises AppLoadError (message starts with
    "Error loading ASGI app."); exceptions raised by the user's code propagate."""
    from ferricorn.envfile import load_env_file

    load_env_file(config)
    if config.app_dir is not None and config.app_dir not in sys.path:
        sys.path.insert(0, config.app_dir)
    try:
        app = import_from_string(config.app)
    except ImportFromStringError as exc:
        raise AppLoadError(f"Error loading ASGI app. {exc}") from None
    if config.factory:
        if not callable(app):
            raise AppLoadError(f"Error loading ASGI app. Factory {app!r} is not callable.")
        app = app()
    if not callable(app):
        raise AppLoadError(f"Error loading ASGI app. {app!r} is not callable.")
    from ferricorn.wsgi import detect_interface

    interface = config.interface if config.interface != "auto" else detect_interface(app)
    config.app_interface = interface
    if interface == "asgi3":
        _check_signature(app, config.factory, 3, "an ASGI 3 application: it must accept "
                         "(scope, receive, send)")
    elif interface == "wsgi":
        _check_signature(app, config.factory, 2, "a WSGI application: it must accept "
                         "(environ, start_response)")
    elif not inspect.isclass(app):
        _check_signature(app, config.factory, 1, "an ASGI 2 application: it must accept "
                         "(scope)")
    return app


def _check_signature(app: Any, factory: bool, count: int, what: str) -> None:
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return  # builtins and odd callables: trust them
    try:
        signature.bind(*([None] * count))
    except TypeError:
        hint = "" if factory else " If it is an application factory, pass --factory."
        raise AppLoadError(
            f"Error loading ASGI app. {app!r} is not {what}.{hint}"
        ) from None
