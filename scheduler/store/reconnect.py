"""Store calls that outlast a lost database connection (PostgreSQL restarted, a proxy or a
firewall cut the connection while a statement or its commit was on the wire).

Deliveries need this most at one point: the messages of a batch have gone out and their
outcomes are being written. If that write died with the connection, the rows would stay
`sending` until their lease ran out and be sent again. So the calls a batch makes to the
store are wrapped in `survives_connection_loss`: on a lost connection the pool is already
invalidated by SQLAlchemy (the next checkout opens a new connection), and the call runs
again, with backoff, for up to `SCHEDULER_STORE_RETRY_SECONDS` (30 s by default: half a
default lease, so the batch still owns its rows when the write lands).

Only idempotent calls are wrapped: reads, and writes whose WHERE makes a second run a no-op
(an outcome is written only to a row still `sending`). A commit whose reply was lost may
have landed; running such a write again changes nothing, which is what makes this safe.
(One exception, on purpose: `ledger.count_attempt` may count a try twice; see there.)
Other errors (a constraint, a syntax error, SQLite's own errors) are raised at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import sqlalchemy as sa

from scheduler import settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# SQLSTATE classes of a connection that is gone or cannot be had: 08 connection exception,
# 57P01-57P03 admin/crash shutdown and "cannot connect now" (the server is starting).
_LOST_STATES = ("08", "57P01", "57P02", "57P03")

_FIRST_WAIT = 0.05
_LONGEST_WAIT = 2.0

# A wrapped call made inside another one does not retry on its own: the outer call runs
# again as a whole, so one budget covers the lot.
_inside = threading.local()


def is_connection_loss(error: BaseException) -> bool:
    """True when `error` says the connection to the database was lost or could not be made."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError):
        return False
    # PostgreSQL's driver names its errors by SQLSTATE; a refused connection has none.
    # SQLite's errors have no `sqlstate` at all and are never a lost connection.
    if not hasattr(error.orig, "sqlstate"):
        return False
    state = getattr(error.orig, "sqlstate", None)
    return state is None or state.startswith(_LOST_STATES)


def survives_connection_loss(call: Callable[P, T]) -> Callable[P, T]:
    """`call`, run again while the database connection is lost, up to the retry budget."""

    @functools.wraps(call)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        if getattr(_inside, "depth", 0):
            return call(*args, **kwargs)
        # Set at the first loss: a call that succeeds (nearly all, several per batch) reads
        # neither the clock nor the setting.
        deadline: float | None = None
        wait = _FIRST_WAIT
        tries = 0
        while True:
            _inside.depth = 1
            try:
                return call(*args, **kwargs)
            except sa.exc.DBAPIError as e:
                tries += 1
                if not is_connection_loss(e):
                    raise
                if deadline is None:
                    deadline = time.monotonic() + settings.store_retry_seconds()
                if time.monotonic() + wait > deadline:
                    if tries > 1:
                        log.error("store: %s still failing after %d tries", call.__name__, tries)
                    raise
                log.warning(
                    "store: connection lost in %s (%s); trying again in %.2f s",
                    call.__name__,
                    type(e.orig).__name__,
                    wait,
                )
            finally:
                _inside.depth = 0
            time.sleep(wait)
            wait = min(wait * 2, _LONGEST_WAIT)

    return wrapped
