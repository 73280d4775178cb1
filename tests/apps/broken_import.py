"""Imports a module that does not exist: loading this app must show the real error."""

import a_module_that_is_not_installed  # noqa: F401

app = None
