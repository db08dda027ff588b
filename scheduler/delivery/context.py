"""What a process needs to deliver: the project, the store, and long-lived connections.

Built once per process (the embedded runner, each Celery worker process) and reused by every
batch, so SMTP connections and rendered messages are not rebuilt per batch.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from scheduler import channels, settings
from scheduler.calendar import Occurrence
from scheduler.channels import AnyChannel, Runtime, SmtpChannel
from scheduler.channels.http import DEFAULT_TIMEOUT
from scheduler.config.model import Config, parse_duration
from scheduler.config.project import Project
from scheduler.content.render import Renderer
from scheduler.delivery.breaker import Breaker
from scheduler.delivery.emailing import EmailComposer
from scheduler.mail.dkim import DkimSigner
from scheduler.mail.transport import TransportPool

BROKER_ENV = settings.BROKER_URL.name
DEFAULT_BROKER = settings.BROKER_URL.default


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a message again after its own temporary failure (a 4xx for it, a
    platform's 429 or 503 for one request): a doubling wait with jitter, from `base_seconds`
    up to `cap_seconds`. The first `hold_tries` waits of one claim, each no longer than
    `hold_seconds`, are spent in the batch; after that the delivery waits in the ledger for
    its next attempt. Whether it fails is the channel's retry window's call, not a count
    (see delivery/deferral.py)."""

    base_seconds: float = field(default_factory=settings.retry_base_seconds)
    cap_seconds: float = 1800.0
    hold_tries: int = 4
    hold_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(max(attempt - 1, 0), 30))
        return random.uniform(ceiling / 2, ceiling)

    def holds(self, tries_here: int, delay: float) -> bool:
        """Wait `delay` here, holding the delivery, rather than hand it to the ledger."""
        return tries_here < self.hold_tries and delay <= self.hold_seconds


@dataclass
class DeliveryContext:
    project: Project
    engine: Engine
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long a sender owns the deliveries it claimed; renewed at half-time while it works
    # (and while it waits for a server). A sender that dies releases them when the lease
    # runs out: a re-run waits at most this long for a crashed run's remainder.
    lease: dt.timedelta = field(
        default_factory=lambda: dt.timedelta(seconds=settings.lease_seconds())
    )
    # Rate limits are shared through Redis when a URL is given (distributed mode).
    redis_url: str | None = None
    sleep: Callable[[float], None] = time.sleep
    # Set when the process is stopping: a send finishes the batch in hand and stops there;
    # the rest stays pending for the next start.
    stop: threading.Event | None = None
    # (connect, read) seconds for every call to a posting platform.
    http_timeout: tuple[float, float] = DEFAULT_TIMEOUT
    _renderer: Renderer | None = None
    _channels: dict[str, AnyChannel] = field(default_factory=dict)
    _composers: dict[tuple[str, str], EmailComposer] = field(default_factory=dict)
    _breakers: dict[str, Breaker] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # List files this process imported, and what they held then (path, size, hash): an
    # unchanged file is not read again, so the clock can sync a list ahead of an instant and
    # the fire at the instant skips it. Held while syncing: one sync of a list at a time.
    synced_lists: dict[str, tuple[tuple[str, int, str], int]] = field(default_factory=dict)
    sync_lock: threading.Lock = field(default_factory=threading.Lock)
    _users: int = 0
    _closing: bool = False

    @property
    def config(self) -> Config:
        return self.project.config

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(self.project)
        return self._renderer

    def composer(self, occ: Occurrence, channel: str) -> EmailComposer:
        key = (occ.id, channel)
        with self._lock:
            if key not in self._composers:
                # Each message is dated when it is composed, just before it is sent (never
                # the scheduled instant: a message sent early or late says when it went).
                self._composers[key] = EmailComposer(self.renderer, occ, channel)
            return self._composers[key]

    def email_channel(self, name: str) -> SmtpChannel:
        """The email channel `name`: its connections, rate limiter and DKIM signer live
        there, made once per process."""
        channel = self.channel(name)
        if not isinstance(channel, SmtpChannel):
            raise TypeError(f"channel {name!r} does not send email")
        return channel

    def pool(self, channel: str) -> TransportPool:
        """The email channel's connections (see `SmtpChannel.pool`)."""
        return self.email_channel(channel).pool()

    def dkim_signer(self, channel: str, sender_domain: str) -> DkimSigner | None:
        """The email channel's DKIM signer, if it signs (see `SmtpChannel.dkim_signer`)."""
        return self.email_channel(channel).dkim_signer(sender_domain)

    def retry_window(self, channel: str) -> dt.timedelta:
        """How long the channel's messages wait for an unreachable server (`retry_window`)."""
        return parse_duration(self.retry_window_text(channel))

    def retry_window_text(self, channel: str) -> str:
        """The channel's `retry_window` as written (`6h` by default), for messages."""
        return str(dict(self.config.channels[channel].model_extra or {}).get("retry_window", "6h"))

    def breaker(self, channel: str) -> Breaker:
        """The channel's circuit breaker, shared by every batch of this process (and through
        Redis by every process, in distributed mode)."""
        with self._lock:
            if channel not in self._breakers:
                window = self.retry_window(channel).total_seconds()
                self._breakers[channel] = Breaker(channel, window=window, redis_url=self.redis_url)
            return self._breakers[channel]

    @contextmanager
    def in_use(self) -> Iterator[None]:
        with self._lock:
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                close = self._closing and self._users == 0
            if close:
                self.close()

    @property
    def busy(self) -> bool:
        """A send is using this context right now."""
        with self._lock:
            return self._users > 0

    def close_when_idle(self) -> None:
        """Close once no send is using this context (after a reload replaced it)."""
        with self._lock:
            self._closing = True
            idle = self._users == 0
        if idle:
            self.close()

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def channel(self, name: str) -> AnyChannel:
        """The channel `name`, built once per process: SMTP connections, HTTP sessions, a
        Bluesky login and a Mastodon instance's limits are reused by every batch."""
        with self._lock:
            if name not in self._channels:
                runtime = Runtime(
                    base_dir=self.project.base_dir,
                    redis_url=self.redis_url,
                    timeout=self.http_timeout,
                )
                self._channels[name] = channels.from_config(
                    name, self.config.channels[name], runtime=runtime
                )
            return self._channels[name]

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._composers.clear()


def broker_url() -> str:
    return settings.broker_url()
