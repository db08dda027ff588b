"""Discord: webhook messages of up to 2000 characters that can never ping anyone."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from pydantic import Field

from scheduler.channels.base import Channel, ChannelSettings, PreparedPost, SecretRef
from scheduler.config.secrets import redact


class DiscordSettings(ChannelSettings):
    webhook_url: SecretRef  # the URL embeds the webhook's token
    username: str | None = Field(default=None, min_length=1, max_length=80)


class DiscordChannel(Channel[DiscordSettings]):
    type = "discord"
    max_length: ClassVar[int | None] = 2000
    Settings = DiscordSettings
    secret_fields = ("webhook_url",)

    def requests(
        self, parts: list[str], *, key: str, language: str, at: dt.datetime | None = None
    ) -> list[PreparedPost]:
        posts = []
        for index, text in enumerate(parts, 1):
            # An empty parse list keeps "@everyone", roles and users in the text inert.
            body: dict[str, Any] = {"content": text, "allowed_mentions": {"parse": []}}
            if self.settings.username:
                body["username"] = self.settings.username
            posts.append(
                PreparedPost(
                    method="POST",
                    url=f"{redact(self.settings.webhook_url)}?wait=true",
                    headers={"Content-Type": "application/json"},
                    json=body,
                    note=(
                        f"part {index} of {len(parts)}, sent in order; webhooks have no "
                        f"idempotency key, so the ledger entry for {key} guards retries"
                    ),
                )
            )
        return posts
