"""Resolve "module:attribute" strings to Python objects.

Owns `import_from_string` and its error type. Only mistakes in the import
string itself become an `ImportFromStringError` (one clear message); an
ImportError raised from inside the user's own module is re-raised untouched so
the traceback points at the real bug. `Config.load_app()` turns the error into
`AppLoadError("Error loading ASGI app. <message>")`; the server logs that and exits 1.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportFromStringError", "import_from_string"]


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
