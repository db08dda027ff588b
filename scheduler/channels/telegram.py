"""Telegram: Bot API messages of up to 4096 characters, HTML parse mode, threaded as replies."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    HttpsOrigin,
    PostRef,
    PreparedPost,
    SecretRef,
)
from scheduler.channels.http import PermanentPostError
from scheduler.channels.post import Post
from scheduler.config.secrets import redact

API = "https://api.telegram.org"

ChannelUsername = Annotated[str, Field(pattern=r"^@[A-Za-z][A-Za-z0-9_]{3,}$")]


class TelegramSettings(ChannelSettings):
    bot_token: SecretRef
    chat_id: int | ChannelUsername = Field(
        description="numeric chat id (e.g. -1001234567890) or '@channelusername'"
    )
    link_preview: bool = True
    api_base: HttpsOrigin = API  # a local Bot API server, or a test double


def escape(text: str) -> str:
    """Text for parse_mode HTML: only &, < and > are special outside tags."""
    return html.escape(text, quote=False)


class TelegramChannel(Channel[TelegramSettings]):
    """The Bot API has no idempotency key: a part whose answer is lost is sent again on
    retry, and may then show twice."""

    type = "telegram"
    # Counted after entity parsing, so on the text as written, not as escaped.
    max_length: ClassVar[int | None] = 4096
    Settings = TelegramSettings
    secret_fields = ("bot_token",)

    def _request(
        self, index: int, total: int, text: str, *, key: str, token: str, reply_to: object
    ) -> PreparedPost:
        s = self.settings
        # HTML rather than plain text so a template could add markup one day; the text
        # itself is escaped, so nothing in a statement is read as a tag.
        body: dict[str, Any] = {
            "chat_id": s.chat_id,
            "text": escape(text),
            "parse_mode": "HTML",
            # Only the first part previews its link, so a thread shows one card.
            "link_preview_options": {"is_disabled": not s.link_preview or index > 1},
        }
        note = (
            f"part {index} of {total}; the Bot API has no idempotency key, "
            f"so the ledger entry for {key} guards retries"
        )
        if index > 1:
            body["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
            note += f"; replies to part {index - 1}"
        return PreparedPost(
            method="POST",
            url=f"{s.api_base}/bot{token}/sendMessage",
            headers={"Content-Type": "application/json"},
            json=body,
            note=note,
        )

    def requests(self, post: Post) -> list[PreparedPost]:
        parts, key = post.parts, post.key
        token = redact(self.settings.bot_token)
        return [
            self._request(
                index,
                len(parts),
                text,
                key=key,
                token=token,
                reply_to=f"{{message_id of part {index - 1}}}",
            )
            for index, text in enumerate(parts, 1)
        ]

    def send_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        *,
        maybe_posted: bool,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        parts, key = post.parts, post.key
        reply_to = int(refs[-1].id) if index > 1 and refs[-1].id else None
        req = self._request(
            index,
            len(parts),
            parts[index - 1],
            key=key,
            token=self.secret("bot_token", env),
            reply_to=reply_to,
        )
        if reply_to is None:
            req.json.pop("reply_parameters", None)
        http = self.client(env)
        action = f"posting part {index} of {len(parts)}"
        response = http.check(
            http.request("POST", req.url, action=action, json_body=req.json),
            action=action,
            hints={
                401: "the bot token was refused: get it from @BotFather and update the variable",
                400: "Telegram rejected the message (is chat_id right, is the bot a member?)",
                403: "the bot may not post in that chat: add it as an administrator",
            },
        )
        try:
            return PostRef(id=str(response.json()["result"]["message_id"]))
        except (ValueError, KeyError, TypeError):
            raise PermanentPostError(
                f"{self.what()}: {action}: Telegram answered without a message id"
            ) from None
