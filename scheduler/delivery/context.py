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
from pathlib import Path

from sqlalchemy.engine import Engine

from scheduler import channels, settings
from scheduler.calendar import Occurrence
from scheduler.channels import AnyChannel
from scheduler.channels.http import DEFAULT_TIMEOUT
from scheduler.config import secrets
from scheduler.config.model import Config
from scheduler.config.project import Project
from scheduler.content.render import Renderer
from scheduler.delivery.emailing import EmailComposer
from scheduler.mail.dkim import DkimSigner
from scheduler.mail.ratelimit import RateLimiter, make_limiter
from scheduler.mail.transport import Transport, TransportPool, open_transport

BROKER_ENV = settings.BROKER_URL.name
DEFAULT_BROKER = settings.BROKER_URL.default


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter for 4xx replies and dropped connections."""

    max_attempts: int = 5
    base_seconds: float = 2.0
    cap_seconds: float = 120.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))


@dataclass
class DeliveryContext:
    project: Project
    engine: Engine
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long a sender owns the deliveries it claimed; renewed while it works. A sender
    # that dies releases them when the lease runs out.
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
    _pools: dict[str, TransportPool] = field(default_factory=dict)
    _signers: dict[str, DkimSigner | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
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
                # One Date for every message of the occurrence: retries resend identical bytes.
                self._composers[key] = EmailComposer(self.renderer, occ, channel, date=occ.instant)
            return self._composers[key]

    def channel_setting(self, channel: str, name: str, default: object = None) -> object:
        return dict(self.config.channels[channel].model_extra or {}).get(name, default)

    def transport_url(self, channel: str) -> str:
        """The channel's URL, with a relative `file:` folder taken from campaigns.yaml's
        folder. SMTP URLs stay unresolved: the transport reads their secrets itself and
        keeps them out of every message it writes."""
        raw = str(self.channel_setting(channel, "url"))
        url = secrets.resolve(raw)
        if url.startswith("file:"):
            path = Path(url.removeprefix("file:").removeprefix("//"))
            if not path.is_absolute():
                path = self.project.base_dir / path
            return f"file:{path}"
        return raw

    def pool(self, channel: str) -> TransportPool:
        with self._lock:
            if channel not in self._pools:
                url = self.transport_url(channel)
                connections = int(str(self.channel_setting(channel, "connections", 4)))
                if url.startswith("file:"):
                    connections = 1
                limiter: RateLimiter | None = make_limiter(
                    _float(self.channel_setting(channel, "rate_per_second")),
                    _int(self.channel_setting(channel, "rate_per_hour")),
                    self.redis_url,
                    key=channel,
                )

                def factory(url: str = url) -> Transport:
                    return open_transport(url)

                self._pools[channel] = TransportPool(factory, connections, limiter)
            return self._pools[channel]

    def dkim_signer(self, channel: str, sender_domain: str) -> DkimSigner | None:
        """The channel's DKIM signer, if it signs; loaded once per process."""
        with self._lock:
            if channel not in self._signers:
                selector = self.channel_setting(channel, "dkim_selector")
                key_file = self.channel_setting(channel, "dkim_private_key_file")
                signer = None
                if selector and key_file:
                    path = Path(secrets.resolve(str(key_file)))
                    if not path.is_absolute():
                        path = self.project.base_dir / path
                    domain = str(self.channel_setting(channel, "dkim_domain") or sender_domain)
                    signer = DkimSigner(str(selector), domain, path.read_bytes())
                self._signers[channel] = signer
            return self._signers[channel]

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
        """The posting channel `name`, built once per process: its HTTP session, a Bluesky
        login and a Mastodon instance's limits are reused by every batch."""
        with self._lock:
            if name not in self._channels:
                channel = channels.from_config(name, self.config.channels[name])
                channel.timeout = self.http_timeout
                self._channels[name] = channel
            return self._channels[name]

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
            self._composers.clear()


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


def broker_url() -> str:
    return settings.broker_url()
