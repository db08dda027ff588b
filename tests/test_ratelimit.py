"""Rate limits: in one process with a fake clock, and shared through the real Redis."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from scheduler.mail.ratelimit import (
    KEY_PREFIX,
    LocalRateLimiter,
    RedisRateLimiter,
    make_limiter,
)

REDIS_URL = os.environ.get("SCHEDULER_TEST_REDIS", "redis://127.0.0.1:6379/0")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def fake_limiter(
    per_second: float | None = None, per_hour: int | None = None
) -> tuple[LocalRateLimiter, FakeClock]:
    clock = FakeClock()
    return LocalRateLimiter(per_second, per_hour, clock=clock, sleep=clock.sleep), clock


def test_local_limiter_spaces_permits_by_the_rate() -> None:
    limiter, clock = fake_limiter(per_second=10)
    start = clock.now
    for _ in range(50):
        limiter.acquire()
    assert clock.now - start == pytest.approx(49 / 10)


def test_local_limiter_does_not_save_up_idle_time() -> None:
    limiter, clock = fake_limiter(per_second=10)
    limiter.acquire()
    clock.now += 60  # idle for a minute: no burst of 600 afterwards
    start = clock.now
    for _ in range(11):
        limiter.acquire()
    assert clock.now - start == pytest.approx(1.0)


def test_the_stricter_limit_wins() -> None:
    limiter, clock = fake_limiter(per_second=100, per_hour=720)  # 720/h = one per 5 s
    start = clock.now
    for _ in range(4):
        limiter.acquire()
    assert clock.now - start == pytest.approx(15.0)


def test_local_limiter_is_thread_safe() -> None:
    limiter, _ = fake_limiter(per_second=10)  # the fake clock stands still
    waits: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        for _ in range(250):
            wait = limiter.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(round(w * 10) for w in waits) == list(range(1000))


def test_make_limiter() -> None:
    assert make_limiter(None, None, None) is None
    assert isinstance(make_limiter(5, None, None), LocalRateLimiter)
    with pytest.raises(ValueError):
        LocalRateLimiter(per_second=0)


# --- Redis ---------------------------------------------------------------------------------


@pytest.fixture
def redis_key() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as e:
        reason = f"Redis at {REDIS_URL} is unreachable: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: a missing Redis is a failure, not a skip)")
        pytest.skip(reason)
    key = f"test-{uuid.uuid4().hex}"
    yield key
    client.delete(KEY_PREFIX + key)
    client.close()


@pytest.mark.redis
def test_redis_limiters_sharing_a_key_keep_the_rate_together(redis_key: str) -> None:
    # Two clients stand for two worker processes.
    limiters = [
        RedisRateLimiter(redis.Redis.from_url(REDIS_URL), redis_key, per_second=20)
        for _ in range(2)
    ]
    granted: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + 1.0

    def send_until_deadline(limiter: RedisRateLimiter) -> None:
        while time.monotonic() < deadline:
            limiter.acquire()
            now = time.monotonic()
            with lock:
                granted.append(now)

    threads = [threading.Thread(target=send_until_deadline, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    in_window = [t for t in granted if t < deadline]
    # 20/s spaced evenly: slots at 0, 0.05, ... 0.95 s, and perhaps one exactly at 1.0 s.
    assert 15 <= len(in_window) <= 21 + 1


@pytest.mark.redis
def test_redis_limiter_reserves_the_next_slot(redis_key: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(client, redis_key, per_hour=3600)  # one a second
    assert limiter.reserve() == 0
    assert 0.5 < limiter.reserve() <= 1.0
    assert 1.5 < limiter.reserve() <= 2.0
    ttl = client.pttl(KEY_PREFIX + redis_key)
    assert 0 < ttl <= 4000  # the key goes away once it no longer matters


@pytest.mark.redis
def test_make_limiter_with_redis(redis_key: str) -> None:
    limiter = make_limiter(10, None, REDIS_URL, key=redis_key)
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.key == KEY_PREFIX + redis_key
    limiter.acquire()
