"""What one post is made of, as one value: the parts of its thread, its images, its link
card, its language and the key that makes it idempotent. Channels take a `Post` whole, so a
new kind of content is one new field here, not a new argument in every platform module."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One image of a post, as the statement's front matter names it.

    `name` is stable (the file's path under the statements folder): the ledger records each
    upload under it. `url` is where `scheduler web` serves it, for platforms that fetch
    images themselves (Slack, Instagram, Threads, Facebook) and for webhooks.
    """

    name: str
    path: Path
    alt: str
    mime: str
    width: int
    height: int
    size: int
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkCard:
    """The statement's link as a card: what an unfurled link shows."""

    url: str
    title: str
    description: str = ""
    image: Media | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Post:
    """One post or thread for one channel.

    `key` is the delivery's stable name (platform idempotency keys, Bluesky record keys and
    webhook ids derive from it). `at` is the publication time shown in previews; None while
    sending means "now". `metadata` describes the occurrence for channels that pass it on.
    """

    key: str
    language: str
    parts: tuple[str, ...]
    media: tuple[Media, ...] = ()
    link: LinkCard | None = None
    hashtags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    at: dt.datetime | None = None

    @property
    def total(self) -> int:
        return len(self.parts)

    def text(self, index: int) -> str:
        """Part `index`, 1-based."""
        return self.parts[index - 1]

    def replace(self, **changes: Any) -> Post:
        return dataclasses.replace(self, **changes)
