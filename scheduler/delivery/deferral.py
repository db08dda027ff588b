"""A message's own temporary failure: try again later, or fail now that its window is over.

`450 4.2.1 mailbox busy`, a `452` for one recipient, a platform's 429 or 503 for one request:
the server is there and says "not now" to this message. (A server that cannot be reached at
all is the channel's state, handled by `breaker.py`.) Such a message fails permanently only
once the channel's `retry_window` (default 6 hours) has passed since its *first* temporary
failure, never because a count of attempts ran out.

Where it waits depends on how long: a short wait (the first few tries, seconds apart) is
spent in the batch, the sender holding the delivery; a longer one is handed to the ledger —
the delivery goes back to `pending` with `next_attempt_at`, and is claimed again by whoever
sends its occurrence after that time: the clock's sweep (embedded or through Celery), or
`scheduler send` run again. The claim is the ledger's one conditional UPDATE, so a deferred
message is still sent at most once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deferral:
    """A delivery handed back to the ledger, to be tried again at `retry_at`."""

    id: int
    retry_at: dt.datetime
    first_failed_at: dt.datetime
    response: str


def next_wait(
    first_failed_at: dt.datetime, now: dt.datetime, window: dt.timedelta, delay: float
) -> float | None:
    """How many seconds from `now` to try a message again after a temporary failure:
    `delay`, but never past the end of its retry window (so the last try is at the window's
    end); None when the window, counted from its first temporary failure, is over: fail it."""
    left = (first_failed_at + window - now).total_seconds()
    if left <= 0:
        return None
    return min(max(delay, 0.0), left)


def window_reason(window_text: str) -> str:
    """Why a message failed once its retry window ran out (its last reply follows)."""
    return f"temporary failures for the whole retry window ({window_text})"
