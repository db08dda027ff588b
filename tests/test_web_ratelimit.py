"""The form limits: a sliding window in the process, a shared window in Redis."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from scheduler.web import Limit, MemoryHits, RedisHits, make_hit_counter
from scheduler.web.ratelimit import KEY_PREFIX

REDIS_URL = os.environ.get("SCHEDULER_TEST_REDIS", "redis://127.0.0.1:6379/0")


def test_memory_window_slides() -> None:
    now = [0.0]
    hits = MemoryHits(clock=lambda: now[0])
    limit = Limit(2, 10)
    assert [hits.hit("a", limit) for _ in range(3)] == [True, True, False]
    assert hits.hit("b", limit)  # another key has its own count
    now[0] = 10.5
    assert hits.hit("a", limit)


def test_unreachable_redis_falls_back_to_the_process() -> None:
    assert isinstance(make_hit_counter("redis://127.0.0.1:1/0"), MemoryHits)
    assert isinstance(make_hit_counter(None), MemoryHits)


@pytest.mark.redis
def test_redis_counts_are_shared_and_keys_hashed() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as e:
        reason = f"Redis at {REDIS_URL} is unreachable: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: a missing Redis is a failure, not a skip)")
        pytest.skip(reason)
    key = f"signup-address:{uuid.uuid4().hex}@example.org"
    first, second = RedisHits(client), RedisHits(redis.Redis.from_url(REDIS_URL))
    limit = Limit(3, 60)
    assert [first.hit(key, limit), second.hit(key, limit), first.hit(key, limit)] == [True] * 3
    assert not second.hit(key, limit)
    stored = [k.decode() for k in client.scan_iter(f"{KEY_PREFIX}*")]
    assert stored and not any("example.org" in k for k in stored)
    assert isinstance(make_hit_counter(REDIS_URL), RedisHits)
