"""Where messages go: one module per platform behind the `Channel` interface.

Adding a platform is one new module with a `Channel` subclass and one line in
`scheduler/channel_registry.py`.
"""

from __future__ import annotations

import importlib
from typing import Any

from scheduler.channel_registry import CHANNEL_TYPES
from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    PartPosted,
    PostRef,
    PreparedPost,
    ProjectFacts,
    Runtime,
    SettingProblem,
    split_thread,
)
from scheduler.channels.bluesky import BlueskyChannel
from scheduler.channels.discord import DiscordChannel
from scheduler.channels.facebook import FacebookPageChannel
from scheduler.channels.instagram import InstagramChannel
from scheduler.channels.mastodon import MastodonChannel
from scheduler.channels.post import LinkCard, Media, Post
from scheduler.channels.slack import SlackChannel
from scheduler.channels.smtp import SmtpChannel
from scheduler.channels.telegram import TelegramChannel
from scheduler.channels.threads import ThreadsChannel
from scheduler.channels.webhook import WebhookChannel
from scheduler.config import model

AnyChannel = Channel[Any]


_loaded: dict[str, type[AnyChannel]] = {}


def get_channel_class(channel_type: str) -> type[AnyChannel]:
    """The class for a campaigns.yaml channel `type` (imported on first use)."""
    path = CHANNEL_TYPES.get(channel_type)
    if path is None:
        known = ", ".join(sorted(CHANNEL_TYPES))
        raise ValueError(f"unknown channel type {channel_type!r}; use one of: {known}")
    if path not in _loaded:
        module, _, name = path.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Channel)) or cls.type != channel_type:
            raise TypeError(f"channel registry: {path} is not the channel of type {channel_type!r}")
        _loaded[path] = cls
    return _loaded[path]


# Every registered type, loaded now, so a wrong registry line fails at import.
CHANNEL_CLASSES: dict[str, type[AnyChannel]] = {t: get_channel_class(t) for t in CHANNEL_TYPES}


def from_config(name: str, channel: model.Channel, *, runtime: Runtime | None = None) -> AnyChannel:
    """Build the channel a campaigns.yaml entry describes; raises pydantic's ValidationError."""
    return get_channel_class(channel.type).from_config(name, channel, runtime=runtime)


def sends_email(channel: model.Channel) -> bool:
    """Whether a campaigns.yaml channel sends email (to subscribers) rather than posts."""
    return get_channel_class(channel.type).kind == "email"


__all__ = [
    "CHANNEL_CLASSES",
    "AnyChannel",
    "BlueskyChannel",
    "Channel",
    "ChannelSettings",
    "DiscordChannel",
    "FacebookPageChannel",
    "InstagramChannel",
    "LinkCard",
    "MastodonChannel",
    "Media",
    "PartPosted",
    "Post",
    "PostRef",
    "PreparedPost",
    "ProjectFacts",
    "Runtime",
    "SettingProblem",
    "SlackChannel",
    "SmtpChannel",
    "TelegramChannel",
    "ThreadsChannel",
    "WebhookChannel",
    "from_config",
    "get_channel_class",
    "sends_email",
    "split_thread",
]
