"""The channel's circuit breaker: one outage per channel, shared through Redis, with a
window measured in time."""

from __future__ import annotations

import os
import uuid

import pytest

from scheduler.delivery.breaker import MAX_BACKOFF, STALE_AFTER, Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_opens_backs_off_and_closes_on_success() -> None:
    clock = Clock()
    breaker = Breaker("email", window=3600, clock=clock)
    assert breaker.outage is None and not breaker.expired()
    breaker.failure("connection refused")
    first = breaker.backoff()
    assert 0.5 <= first <= 1.0
    for _ in range(20):
        breaker.failure("connection refused")
    assert MAX_BACKOFF / 2 <= breaker.backoff() <= MAX_BACKOFF
    for _ in range(71):  # probing every 50 s for an hour less a minute
        clock.now += 50
        breaker.failure("connection refused")
    assert not breaker.expired()
    clock.now += 50
    assert breaker.expired()
    breaker.success()
    assert breaker.outage is None and not breaker.expired()


def test_a_stale_outage_is_not_counted_against_the_next_one() -> None:
    clock = Clock()
    breaker = Breaker("email", window=600, clock=clock)
    breaker.failure("refused")
    clock.now += STALE_AFTER + 1
    breaker.failure("refused")
    assert breaker.down_for() == 0 and not breaker.expired()


def test_processes_share_the_outage_through_redis() -> None:
    url = os.environ.get("SCHEDULER_TEST_REDIS", "redis://127.0.0.1:6379/0")
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis at {url} is unreachable")
    channel = f"test-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    one = Breaker(channel, window=600, redis_url=url, clock=clock)
    two = Breaker(channel, window=600, redis_url=url, clock=clock)
    try:
        one.failure("refused")
        clock.now += 200
        assert two.outage is not None and two.down_for() == 200  # the first one's outage
        two.failure("refused")
        clock.now += 200
        one.failure("refused")
        clock.now += 200
        assert two.expired() and one.expired()
        one.success()
        assert two.outage is None
    finally:
        redis.Redis.from_url(url).delete(f"scheduler:breaker:{channel}")
