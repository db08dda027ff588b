"""Slack: incoming-webhook messages of up to 40,000 characters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from scheduler.channels.base import Channel, ChannelSettings, PostRef, PreparedPost, SecretRef
from scheduler.channels.post import Post
from scheduler.config.secrets import redact


class SlackSettings(ChannelSettings):
    webhook_url: SecretRef  # the URL is the credential


def escape(text: str) -> str:
    """Slack's required escaping of the three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(Channel[SlackSettings]):
    """Incoming webhooks answer `ok` in plain text, with no message id and no idempotency:
    a part whose answer is lost is sent again on retry, and may then show twice."""

    type = "slack"
    max_length: ClassVar[int | None] = 40_000
    Settings = SlackSettings
    secret_fields = ("webhook_url",)

    def count(self, text: str) -> int:
        """Characters as sent, after escaping."""
        return len(escape(text))

    def _request(self, index: int, total: int, text: str, *, key: str, url: str) -> PreparedPost:
        return PreparedPost(
            method="POST",
            url=url,
            headers={"Content-Type": "application/json"},
            json={"text": escape(text)},
            note=(
                f"part {index} of {total}, sent in order; webhooks have no "
                f"idempotency key, so the ledger entry for {key} guards retries"
            ),
        )

    def requests(self, post: Post) -> list[PreparedPost]:
        parts, key = post.parts, post.key
        url = redact(self.settings.webhook_url)
        return [
            self._request(index, len(parts), text, key=key, url=url)
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
        url = self.secret("webhook_url", env)
        req = self._request(index, len(parts), parts[index - 1], key=key, url=url)
        http = self.client(env)
        action = f"posting part {index} of {len(parts)}"
        # Errors come as plain text ("invalid_payload", "channel_is_archived", ...).
        http.check(
            http.request("POST", req.url, action=action, json_body=req.json),
            action=action,
            hints={
                403: "the app may not post to that channel (action_prohibited?)",
                404: "the webhook or its channel is gone: create a new incoming webhook",
                410: "the channel is archived: create a webhook for another channel",
            },
        )
        return PostRef(id=None)
