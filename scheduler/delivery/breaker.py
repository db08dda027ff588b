"""A circuit breaker per channel: an unreachable server is the channel's state, not a message's.

When a connection cannot be opened (refused, timed out, TLS failed, `421` closing), every
message that needed it fails the same way; counting that against each message would turn a
ten-second outage into permanent failures. Instead the channel *opens* its breaker: every
batch of the channel waits out the same backoff (1 s doubling to `MAX_BACKOFF`), then one
probe goes through; the first success closes the breaker again. No message's attempt count
moves while it is open. Messages fail only when the outage has lasted the channel's
`retry_window` (default 6 hours), measured from the first failure of the outage.

The breaker is shared by every batch and connection of the process (one object per channel
in the `DeliveryContext`), and, when a Redis URL is given (distributed mode), by every
process through one key per channel, so a hundred workers do not each rediscover the outage
and the window runs from when the first of them saw it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# An outage nobody has reported for this long is over as far as we know (its senders gave
# up, were cancelled or stopped): the next failure starts a new one, with a whole window.
STALE_AFTER = 5 * MAX_BACKOFF
_KEY = "scheduler:breaker:{channel}"


@dataclass(frozen=True, slots=True)
class Outage:
    """What the breaker knows about a running outage."""

    since: float  # wall clock (time.time()) of the first failure
    failures: int  # consecutive failed probes
    reason: str  # the last failure, for logs and the ledger
    last: float = 0.0  # wall clock of the latest failure


class Breaker:
    """The breaker of one channel. Thread-safe; optionally mirrored in Redis."""

    def __init__(
        self,
        channel: str,
        *,
        window: float,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self._redis = None
        if redis_url:
            try:
                import redis

                self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)
            except Exception:  # pragma: no cover - redis is a dependency; a bad URL is not fatal
                self._redis = None
        self._key = _KEY.format(channel=channel)

    # --- what the senders report ---------------------------------------------------------

    def failure(self, reason: str) -> Outage:
        """A connection-level failure: open the breaker (or keep it open)."""
        now = self._clock()
        with self._lock:
            current = self._outage
            if self._redis is not None:
                with contextlib.suppress(Exception):
                    current = self._read_shared()  # what every process saw, when it answers
            if current is not None and now - max(current.last, current.since) > STALE_AFTER:
                current = None
            if current is None:
                log.warning("channel %s unreachable: %s; waiting it out", self.channel, reason)
                outage = Outage(since=now, failures=1, reason=reason, last=now)
            else:
                outage = Outage(
                    since=current.since, failures=current.failures + 1, reason=reason, last=now
                )
            self._outage = outage
            self._share(outage)
            return outage

    def success(self) -> None:
        """A message went through: the server is back."""
        with self._lock:
            if self._outage is None:
                return
            down = self._clock() - self._outage.since
            log.warning("channel %s reachable again after %.0fs", self.channel, down)
            self._outage = None
            if self._redis is not None:
                with contextlib.suppress(Exception):
                    self._redis.delete(self._key)

    # --- what the senders ask ------------------------------------------------------------

    @property
    def outage(self) -> Outage | None:
        with self._lock:
            if self._redis is not None:
                # Shared state wins: a success in any process closes the breaker for all.
                # When Redis is down, go on with what this process saw.
                with contextlib.suppress(Exception):
                    self._outage = self._read_shared()
            return self._outage

    def backoff(self) -> float:
        """How long to wait before the next probe (full jitter over a doubling, capped)."""
        outage = self.outage
        failures = outage.failures if outage else 1
        ceiling = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** min(failures - 1, 16))
        return random.uniform(ceiling / 2, ceiling)

    def expired(self) -> bool:
        """The outage has lasted the whole retry window: give up on what waits for it."""
        outage = self.outage
        return outage is not None and self._clock() - outage.since >= self.window

    def down_for(self) -> float:
        outage = self.outage
        return 0.0 if outage is None else self._clock() - outage.since

    # --- Redis -------------------------------------------------------------------------------

    def _read_shared(self) -> Outage | None:
        if self._redis is None:
            return None
        raw = self._redis.hgetall(self._key)
        if not raw:
            return None
        try:
            reason = raw.get(b"reason", b"")
            return Outage(
                since=float(raw[b"since"]),
                failures=int(raw[b"failures"]),
                reason=reason.decode("utf-8", "replace") if isinstance(reason, bytes) else "",
                last=float(raw.get(b"last", raw[b"since"])),
            )
        except (KeyError, ValueError):
            return None

    def _share(self, outage: Outage) -> None:
        if self._redis is None:
            return
        try:
            pipe = self._redis.pipeline()
            pipe.hset(
                self._key,
                mapping={
                    "since": repr(outage.since),
                    "last": repr(outage.last),
                    "failures": outage.failures,
                    "reason": outage.reason[:500],
                },
            )
            # An outage nobody reports any more (every sender gone) is forgotten.
            pipe.expire(self._key, int(MAX_BACKOFF * 10))
            pipe.execute()
        except Exception:
            pass
