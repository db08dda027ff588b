"""Mastodon: statuses of up to 500 characters, threaded as replies."""

from __future__ import annotations

import datetime as dt
import re
from typing import ClassVar, Literal

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    HttpsOrigin,
    PreparedPost,
    SecretRef,
    find_urls,
    graphemes,
)
from scheduler.config.secrets import redact

# Mastodon counts every link as 23 characters, however long (StatusLengthValidator).
URL_LENGTH = 23
# Account::MENTION_RE: a remote mention counts as its local part, "@user@domain" -> "@user".
_MENTION = re.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)(?:@[\w.-]+\w)?", re.IGNORECASE
)


class MastodonSettings(ChannelSettings):
    instance: HttpsOrigin
    token: SecretRef
    visibility: Literal["public", "unlisted", "private"] = "public"


class MastodonChannel(Channel[MastodonSettings]):
    type = "mastodon"
    max_length: ClassVar[int | None] = 500
    Settings = MastodonSettings
    secret_fields = ("token",)

    def count(self, text: str) -> int:
        """Graphemes, with each URL as 23 and each mention as its username, as Mastodon does."""
        pieces: list[str] = []
        pos = 0
        for start, end in find_urls(text):
            pieces.append(_MENTION.sub(r"@\1", text[pos:start]))
            pieces.append("x" * URL_LENGTH)
            pos = end
        pieces.append(_MENTION.sub(r"@\1", text[pos:]))
        return len(graphemes("".join(pieces)))

    def requests(
        self, parts: list[str], *, key: str, language: str, at: dt.datetime | None = None
    ) -> list[PreparedPost]:
        s = self.settings
        posts = []
        for index, text in enumerate(parts, 1):
            body: dict[str, object] = {
                "status": text,
                "visibility": s.visibility,
                "language": language,
            }
            note = "Idempotency-Key makes a retry within an hour return the first status"
            if index > 1:
                body["in_reply_to_id"] = f"{{id of part {index - 1}}}"
                note += f"; replies to part {index - 1} (its id comes from that response)"
            posts.append(
                PreparedPost(
                    method="POST",
                    url=f"{redact(s.instance)}/api/v1/statuses",
                    headers={
                        "Authorization": f"Bearer {redact(s.token)}",
                        "Idempotency-Key": f"{key}/{index}",
                        "Content-Type": "application/json",
                    },
                    json=body,
                    note=note,
                )
            )
        return posts
