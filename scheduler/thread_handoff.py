"""Hand the interpreter lock over sooner while threads that wait on I/O share the process with
one that computes.

A thread coming back from a round trip (a PostgreSQL import lane whose merge finished) must
wait for the interpreter lock, and the thread that holds it (the one parsing the file) lets
go only when asked, after `sys.getswitchinterval()`: 5 ms by default, per round trip. An
import lane makes three or four round trips a batch, and those waits kept the server idle for
a tenth of a 100,000-row import (measured: 41,500 rows/s at 5 ms, 47,100 at 0.5 ms, median of
six alternating runs each). The cost is a lock handover a little more often (a few
microseconds per 0.5 ms), only while such work runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

from scheduler.shared_setting import SharedSetting

QUICK = 0.0005  # seconds


def _shorten() -> Callable[[], None] | None:
    before = sys.getswitchinterval()
    # Not set at all when shorter already: the interpreter keeps whole microseconds, and
    # setting a value it returned can round it down.
    if before <= QUICK:
        return None
    sys.setswitchinterval(QUICK)
    return lambda: sys.setswitchinterval(before)


_quick = SharedSetting(_shorten)


def quick_handoff() -> AbstractContextManager[None]:
    """The switch interval at `QUICK` inside the block (unless it is shorter already); it is
    set back when the last of (possibly nested, possibly concurrent) blocks ends."""
    return _quick.held()
