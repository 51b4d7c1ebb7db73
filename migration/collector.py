"""Python's cyclic garbage collector paused while a migration runs.

The copy and the read-back make millions of row tuples, and a migration that imports MLflow (schema,
source upgrade, probe) holds some 1,700 modules' objects. Every collection those tuples trigger walks
the young objects, and every full one walks everything, to find nothing: rows hold no cycles, and
reference counting frees them (bench/README.md has what pausing saved when measured). The few cycles
made meanwhile (the traceback of a rolled-back attempt) are collected once the collector runs again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """Disable automatic collection for the block; re-enable it after, unless it was already off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
