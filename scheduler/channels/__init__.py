"""Where messages go: one module per platform behind the `Channel` interface.

Adding a platform is one new module with a `Channel` subclass and one line in
`CHANNEL_CLASSES`.
"""

from __future__ import annotations

from typing import Any

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
from scheduler.channels.mastodon import MastodonChannel
from scheduler.channels.post import LinkCard, Media, Post
from scheduler.channels.slack import SlackChannel
from scheduler.channels.smtp import SmtpChannel
from scheduler.channels.telegram import TelegramChannel
from scheduler.channels.webhook import WebhookChannel
from scheduler.config import model

AnyChannel = Channel[Any]

CHANNEL_CLASSES: dict[str, type[AnyChannel]] = {
    "smtp": SmtpChannel,
    "mastodon": MastodonChannel,
    "bluesky": BlueskyChannel,
    "discord": DiscordChannel,
    "slack": SlackChannel,
    "telegram": TelegramChannel,
    "webhook": WebhookChannel,
}


def get_channel_class(channel_type: str) -> type[AnyChannel]:
    """The class for a campaigns.yaml channel `type`."""
    try:
        return CHANNEL_CLASSES[channel_type]
    except KeyError:
        known = ", ".join(sorted(CHANNEL_CLASSES))
        raise ValueError(f"unknown channel type {channel_type!r}; use one of: {known}") from None


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
    "WebhookChannel",
    "from_config",
    "get_channel_class",
    "sends_email",
    "split_thread",
]
