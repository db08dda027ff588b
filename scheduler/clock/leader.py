"""One leader among several `scheduler clock` processes: a Redis key with a TTL.

The leader renews the key from its heartbeat; if it dies or stalls, the key expires and
another process takes over within the TTL. Two leaders at once (a paused process waking up)
cannot double-fire: the store's unique occurrence claim lets only one firing through.
"""

from __future__ import annotations

import contextlib
import uuid

import redis

from scheduler import settings

KEY = settings.LEADER_KEY.default or "scheduler:clock:leader"

# Renew only our own lock; take a free one. Returns 1 when we hold it afterwards.
_ACQUIRE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: redis.Redis, *, ttl_seconds: float = 15.0, key: str = KEY) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self.is_leader = False
        self._acquire = client.register_script(_ACQUIRE_OR_RENEW)
        self._release = client.register_script(_RELEASE)

    def heartbeat(self) -> bool:
        """Take or keep the lead; False (and not leader) if Redis cannot be reached."""
        try:
            self.is_leader = bool(self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]))
        except redis.RedisError:
            self.is_leader = False
        return self.is_leader

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self._release(keys=[self.key], args=[self.token])
        self.is_leader = False
