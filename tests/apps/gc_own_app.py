"""apps.streams_app with a garbage-collection policy of its own, set at import."""

import gc

from apps.streams_app import app  # noqa: F401

gc.set_threshold(1234, 5, 5)
