"""Telegram: Bot API messages of up to 4096 characters, threaded as replies."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar

from pydantic import Field

from scheduler.channels.base import Channel, ChannelSettings, PreparedPost, SecretRef
from scheduler.config.secrets import redact

API = "https://api.telegram.org"

ChannelUsername = Annotated[str, Field(pattern=r"^@[A-Za-z][A-Za-z0-9_]{3,}$")]


class TelegramSettings(ChannelSettings):
    bot_token: SecretRef
    chat_id: int | ChannelUsername = Field(
        description="numeric chat id (e.g. -1001234567890) or '@channelusername'"
    )
    link_preview: bool = True


class TelegramChannel(Channel[TelegramSettings]):
    type = "telegram"
    max_length: ClassVar[int | None] = 4096
    Settings = TelegramSettings
    secret_fields = ("bot_token",)

    def requests(
        self, parts: list[str], *, key: str, language: str, at: dt.datetime | None = None
    ) -> list[PreparedPost]:
        s = self.settings
        posts = []
        for index, text in enumerate(parts, 1):
            # No parse_mode: the text goes out as plain text, so nothing needs escaping.
            body: dict[str, Any] = {
                "chat_id": s.chat_id,
                "text": text,
                # Only the first part previews its link, so a thread shows one card.
                "link_preview_options": {"is_disabled": not s.link_preview or index > 1},
            }
            note = (
                f"part {index} of {len(parts)}; the Bot API has no idempotency key, "
                f"so the ledger entry for {key} guards retries"
            )
            if index > 1:
                body["reply_parameters"] = {
                    "message_id": f"{{message_id of part {index - 1}}}",
                    "allow_sending_without_reply": True,
                }
                note += f"; replies to part {index - 1}"
            posts.append(
                PreparedPost(
                    method="POST",
                    url=f"{API}/bot{redact(s.bot_token)}/sendMessage",
                    headers={"Content-Type": "application/json"},
                    json=body,
                    note=note,
                )
            )
        return posts
