"""Counting requests per key (an IP, an address) so the forms cannot be used to flood.

`MemoryHits` serves one process (embedded mode, tests); `RedisHits` is shared by every web
process through Redis when `SCHEDULER_BROKER_URL` answers. Keys are hashed before they are
stored, so no address ever sits in Redis in clear.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

log = logging.getLogger(__name__)

# Every Redis key this module writes starts with this prefix.
KEY_PREFIX = "scheduler:web:hits:"


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Limits:
    """How often each form may be used. Sign-ups per address are few: the form sends mail to
    whatever address it is given, and the owner of that address never asked for more."""

    signup_per_ip: Limit = Limit(20, 3600)
    signup_per_address: Limit = Limit(3, 86400)
    login_per_ip: Limit = Limit(10, 900)


class HitCounter(Protocol):
    def hit(self, key: str, limit: Limit) -> bool:
        """Count one hit on `key`; False when that is more than `limit` allows."""
        ...


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class MemoryHits:
    """A sliding window per key, for the threads of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: Limit) -> bool:
        now = self._clock()
        digest = _digest(key)
        with self._lock:
            if len(self._hits) >= self._max_keys:
                self._forget_idle(now, limit.seconds)
            times = self._hits.setdefault(digest, deque())
            while times and times[0] <= now - limit.seconds:
                times.popleft()
            if len(times) >= limit.count:
                return False
            times.append(now)
            return True

    def _forget_idle(self, now: float, seconds: float) -> None:
        for digest in [d for d, t in self._hits.items() if not t or t[-1] <= now - seconds]:
            del self._hits[digest]


class RedisHits:
    """A fixed window per key in Redis (INCR + EXPIRE), shared by every web process.

    When Redis stops answering, counting falls back to this process rather than letting
    every request through or refusing everyone.
    """

    def __init__(self, client: redis.Redis, fallback: MemoryHits | None = None) -> None:
        self._redis = client
        self._fallback = fallback or MemoryHits()

    def hit(self, key: str, limit: Limit) -> bool:
        window = int(time.time() // limit.seconds)
        name = f"{KEY_PREFIX}{_digest(key)}:{int(limit.seconds)}:{window}"
        try:
            pipe = self._redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, int(limit.seconds) + 1)
            count, _ = pipe.execute()
        except redis.RedisError as e:
            log.warning("event=ratelimit_redis_unavailable error=%s", type(e).__name__)
            return self._fallback.hit(key, limit)
        return int(count) <= limit.count


def make_hit_counter(redis_url: str | None) -> HitCounter:
    """Redis when `redis_url` answers a PING within half a second, else this process."""
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            client.ping()
        except (redis.RedisError, OSError):
            log.info("event=ratelimit_local reason=redis_unreachable")
        else:
            return RedisHits(client)
    return MemoryHits()
