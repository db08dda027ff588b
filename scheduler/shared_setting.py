"""A process-wide setting that the first of several blocks changes and the last puts back.

Bulk work tunes the interpreter for its duration (the cycle collector paused, the lock handed
over sooner), and such blocks nest (an import inside a sync) or run at once in two threads
(two lists synced together): the setting must change once and come back only when the last
block ends, as it was before the first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SharedSetting:
    """`change()` makes the change and returns how to undo it (None: nothing to undo);
    `held()` is the block during which the change holds."""

    def __init__(self, change: Callable[[], Callable[[], None] | None]) -> None:
        self._change = change
        self._lock = threading.Lock()
        self._depth = 0  # blocks in progress, in any thread
        self._undo: Callable[[], None] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._undo = self._change()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._undo is not None:
                    self._undo()
                    self._undo = None
