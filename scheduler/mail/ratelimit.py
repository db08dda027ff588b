"""Messages per second / per hour: a limiter in this process, or one shared through Redis.

Both limiters space permits evenly (GCRA, the token bucket's scheduling form, with a burst
of one): at `per_second=10` permit n is granted at `start + n/10 s`, so no window of any
length sees more than its share plus one. Given both limits, the stricter spacing wins, so
`per_hour=500` sends one message every 7.2 s rather than 500 at once and then nothing.

A permit is reserved, not polled: `reserve()` books the next free slot and says how long to
wait for it, which costs one Redis round trip per message and keeps waiting workers in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

# Every Redis key this module writes starts with this prefix.
KEY_PREFIX = "scheduler:ratelimit:"


class RateLimiter(Protocol):
    """Hands out permits to send, one message per permit."""

    def reserve(self) -> float:
        """Book the next permit; return the seconds to wait before using it (0 = now)."""
        ...

    def acquire(self) -> None:
        """Block until one message may be sent."""
        ...


def spacing(per_second: float | None, per_hour: int | None) -> float:
    """Seconds between two permits under both limits (0 when there is none)."""
    gaps = [0.0]
    if per_second is not None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        gaps.append(1.0 / per_second)
    if per_hour is not None:
        if per_hour <= 0:
            raise ValueError("per_hour must be positive")
        gaps.append(3600.0 / per_hour)
    return max(gaps)


class LocalRateLimiter:
    """A limiter for the threads of one process."""

    def __init__(
        self,
        per_second: float | None = None,
        per_hour: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._gap = spacing(per_second, per_hour)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = float("-inf")  # when the next permit becomes available

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            slot = max(self._next, now)
            self._next = slot + self._gap
            return slot - now

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


# KEYS[1]: the bucket; ARGV[1]: microseconds between permits. Holds the next free slot in
# microseconds of Redis TIME, so every process agrees on the clock. Returns the wait in µs.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gap = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local nxt = slot + gap
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.floor((nxt - now) / 1000) + 1000)
return slot - now
"""


class RedisRateLimiter:
    """A limiter shared by every process that uses the same Redis and `key`."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        per_second: float | None = None,
        per_hour: int | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = KEY_PREFIX + key
        self._gap_us = max(1, round(spacing(per_second, per_hour) * 1_000_000))
        self._script = client.register_script(_RESERVE)
        self._sleep = sleep

    def reserve(self) -> float:
        wait_us = self._script(keys=[self.key], args=[self._gap_us])
        return int(wait_us) / 1_000_000

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


def make_limiter(
    per_second: float | None,
    per_hour: int | None,
    redis_url: str | None,
    *,
    key: str = "smtp",
) -> RateLimiter | None:
    """The limiter for a channel's limits: shared through Redis when `redis_url` is given
    (pass the channel name as `key` so channels do not share a bucket), None without limits."""
    if per_second is None and per_hour is None:
        return None
    if redis_url is None:
        return LocalRateLimiter(per_second, per_hour)
    import redis  # here, not at the top: a send without a shared limit never needs it

    return RedisRateLimiter(redis.Redis.from_url(redis_url), key, per_second, per_hour)
