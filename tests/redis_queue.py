"""A Celery queue name and a clock leader key of one test's own, on the test Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis


def own_queue(redis_url: str) -> Iterator[tuple[str, str]]:
    """Yield (queue, leader key); both are deleted afterwards. Fails in CI without Redis,
    skips elsewhere. Use as a fixture body: `yield from own_queue(REDIS_URL)`."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.ConnectionError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {redis_url} is required in CI: {e}")
        pytest.skip(f"Redis at {redis_url} is unreachable: {e}")
    name = f"scheduler-test-{uuid.uuid4().hex[:8]}"
    key = f"scheduler:clock:leader:{name}"
    yield name, key
    client.delete(name, key)
