"""Pause Python's cycle collector while bulk work creates many objects that form no cycles.

Reading a 100,000-row list keeps 100,000 rows (each with a dict and a few strings) alive;
every few hundred allocations the collector walks the young objects, and as the kept ones
age it walks them again: about a fifth of the read went there. Rows, batches and tuples
hold no cycles, so nothing waits for the collector; reference counting frees them as usual.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # pauses in progress, in any thread
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cycle collector inside the block; it comes back on when the last of
    (possibly nested, possibly concurrent) pauses ends, if it was on before the first."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
