"""Mastodon: statuses of up to 500 characters (or what the instance allows), threaded as
replies, each sent with an Idempotency-Key so a retry never posts twice."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import ClassVar, Literal

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    HttpsOrigin,
    PostRef,
    PreparedPost,
    SecretRef,
    find_urls,
    graphemes,
)
from scheduler.channels.http import PermanentPostError, TransientPostError
from scheduler.channels.post import Post
from scheduler.config.secrets import redact

log = logging.getLogger(__name__)

# Mastodon counts every link as 23 characters, however long (StatusLengthValidator).
URL_LENGTH = 23
# Account::MENTION_RE: a remote mention counts as its local part, "@user@domain" -> "@user".
_MENTION = re.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)(?:@[\w.-]+\w)?", re.IGNORECASE
)

# Instance limits, read once per process per instance: origin -> (max characters, URL weight).
_LIMITS: dict[str, tuple[int, int]] = {}
_LIMITS_LOCK = threading.Lock()


class MastodonSettings(ChannelSettings):
    instance: HttpsOrigin
    token: SecretRef
    visibility: Literal["public", "unlisted", "private"] = "public"


class MastodonChannel(Channel[MastodonSettings]):
    type = "mastodon"
    max_length: ClassVar[int | None] = 500
    Settings = MastodonSettings
    secret_fields = ("token",)
    idempotent = True

    @property
    def _limits(self) -> tuple[int, int]:
        return _LIMITS.get(self.settings.instance, (self.max_length or 500, URL_LENGTH))

    @property
    def limit(self) -> int | None:
        return self._limits[0]

    def count(self, text: str) -> int:
        """Graphemes, with each URL as 23 (or the instance's weight) and each mention as
        its username, as Mastodon does."""
        url_length = self._limits[1]
        pieces: list[str] = []
        pos = 0
        for start, end in find_urls(text):
            pieces.append(_MENTION.sub(r"@\1", text[pos:start]))
            pieces.append("x" * url_length)
            pos = end
        pieces.append(_MENTION.sub(r"@\1", text[pos:]))
        return len(graphemes("".join(pieces)))

    def prepare(self, env: Mapping[str, str] | None = None) -> None:
        """Read the instance's status limits (GET /api/v2/instance) once per process.

        When the instance cannot tell us, the defaults (500, URLs as 23) stand for this
        delivery and the next one asks again.
        """
        origin = self.settings.instance
        with _LIMITS_LOCK:
            if origin in _LIMITS:
                return
        http = self.client(env)
        try:
            response = http.check(
                http.request("GET", f"{origin}/api/v2/instance", action="reading its limits"),
                action="reading its limits",
            )
            statuses = response.json()["configuration"]["statuses"]
            limits = (int(statuses["max_characters"]), int(statuses["characters_reserved_per_url"]))
        except (TransientPostError, PermanentPostError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: using the default limits (%s)", self.what(), e)
            return
        with _LIMITS_LOCK:
            _LIMITS[origin] = limits

    def _request(
        self, index: int, text: str, *, key: str, language: str, token: str, reply_to: str | None
    ) -> PreparedPost:
        s = self.settings
        body: dict[str, object] = {"status": text, "visibility": s.visibility, "language": language}
        note = "Idempotency-Key makes a retry within an hour return the first status"
        if reply_to is not None:
            body["in_reply_to_id"] = reply_to
            note += f"; replies to part {index - 1} (its id comes from that response)"
        return PreparedPost(
            method="POST",
            url=f"{s.instance}/api/v1/statuses",
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": f"{key}/{index}",
                "Content-Type": "application/json",
            },
            json=body,
            note=note,
        )

    def requests(self, post: Post) -> list[PreparedPost]:
        parts, key, language = post.parts, post.key, post.language
        posts = []
        for index, text in enumerate(parts, 1):
            req = self._request(
                index,
                text,
                key=key,
                language=language,
                token=redact(self.settings.token),
                reply_to=f"{{id of part {index - 1}}}" if index > 1 else None,
            )
            posts.append(
                PreparedPost(
                    method=req.method,
                    url=redact(req.url),
                    headers=req.headers,
                    json=req.json,
                    note=req.note,
                )
            )
        return posts

    def send_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        *,
        maybe_posted: bool,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        parts, key, language = post.parts, post.key, post.language
        # A part the instance took before its answer was lost comes back as the same
        # status: the Idempotency-Key is the same on every attempt.
        req = self._request(
            index,
            parts[index - 1],
            key=key,
            language=language,
            token=self.secret("token", env),
            reply_to=refs[-1].id if index > 1 else None,
        )
        http = self.client(env)
        action = f"posting part {index} of {len(parts)}"
        sent = http.request("POST", req.url, action=action, json_body=req.json, headers=req.headers)
        response = http.check(
            sent,
            action=action,
            hints={
                401: "the token was refused (revoked or expired): create a new access token "
                "with the write:statuses scope and update the environment variable",
                422: "the instance rejected the status",
            },
        )
        try:
            return PostRef(id=str(response.json()["id"]))
        except (ValueError, KeyError, TypeError):
            raise PermanentPostError(
                f"{self.what()}: {action}: the instance answered without a status id"
            ) from None
