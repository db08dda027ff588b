"""The registry of channel types: each campaigns.yaml channel `type` and the class behind it.

The one list of channel types. The config checks `type` against it and `scheduler.channels`
builds `CHANNEL_CLASSES` from it. The classes are named by import path, not imported: the
channel modules build on the config, so the config must not import them.

Adding a platform is one module under `scheduler/channels/` and one line here.
"""

from __future__ import annotations

CHANNEL_TYPES: dict[str, str] = {
    "smtp": "scheduler.channels.smtp:SmtpChannel",
    "mastodon": "scheduler.channels.mastodon:MastodonChannel",
    "bluesky": "scheduler.channels.bluesky:BlueskyChannel",
    "discord": "scheduler.channels.discord:DiscordChannel",
    "slack": "scheduler.channels.slack:SlackChannel",
    "telegram": "scheduler.channels.telegram:TelegramChannel",
    "webhook": "scheduler.channels.webhook:WebhookChannel",
    "facebook": "scheduler.channels.facebook:FacebookPageChannel",
    "instagram": "scheduler.channels.instagram:InstagramChannel",
    "threads": "scheduler.channels.threads:ThreadsChannel",
}
