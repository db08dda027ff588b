"""Discord: webhook messages of up to 2000 characters that can never ping anyone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from scheduler.channels.base import Channel, ChannelSettings, PostRef, PreparedPost, SecretRef
from scheduler.channels.post import Post
from scheduler.config.secrets import redact


class DiscordSettings(ChannelSettings):
    webhook_url: SecretRef  # the URL embeds the webhook's token
    username: str | None = Field(default=None, min_length=1, max_length=80)


class DiscordChannel(Channel[DiscordSettings]):
    """Webhooks have no idempotency key: a part whose answer is lost (a timeout after
    Discord took it) is sent again on retry, and may then show twice."""

    type = "discord"
    max_length: ClassVar[int | None] = 2000
    Settings = DiscordSettings
    secret_fields = ("webhook_url",)

    def _request(self, index: int, total: int, text: str, *, key: str, url: str) -> PreparedPost:
        # An empty parse list keeps "@everyone", roles and users in the text inert.
        body: dict[str, Any] = {"content": text, "allowed_mentions": {"parse": []}}
        if self.settings.username:
            body["username"] = self.settings.username
        return PreparedPost(
            method="POST",
            url=f"{url}?wait=true",
            headers={"Content-Type": "application/json"},
            json=body,
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
        response = http.check(
            http.request("POST", req.url, action=action, json_body=req.json),
            action=action,
            hints={
                401: "the webhook URL's token was refused: copy the webhook URL again",
                404: "the webhook does not exist (deleted?): create one and update the variable",
            },
        )
        # ?wait=true answers with the message; its id is what we keep.
        try:
            return PostRef(id=str(response.json()["id"]))
        except (ValueError, KeyError, TypeError):
            return PostRef(id=None)
