"""Slack: incoming-webhook messages of up to 40,000 characters."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from scheduler.channels.base import Channel, ChannelSettings, PreparedPost, SecretRef
from scheduler.config.secrets import redact


class SlackSettings(ChannelSettings):
    webhook_url: SecretRef  # the URL is the credential


def escape(text: str) -> str:
    """Slack's required escaping of the three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(Channel[SlackSettings]):
    type = "slack"
    max_length: ClassVar[int | None] = 40_000
    Settings = SlackSettings
    secret_fields = ("webhook_url",)

    def count(self, text: str) -> int:
        """Characters as sent, after escaping."""
        return len(escape(text))

    def requests(
        self, parts: list[str], *, key: str, language: str, at: dt.datetime | None = None
    ) -> list[PreparedPost]:
        return [
            PreparedPost(
                method="POST",
                url=redact(self.settings.webhook_url),
                headers={"Content-Type": "application/json"},
                json={"text": escape(text)},
                note=(
                    f"part {index} of {len(parts)}, sent in order; webhooks have no "
                    f"idempotency key, so the ledger entry for {key} guards retries"
                ),
            )
            for index, text in enumerate(parts, 1)
        ]
