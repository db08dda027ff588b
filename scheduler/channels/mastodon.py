"""Mastodon: statuses of up to 500 characters (or what the instance allows), threaded as
replies, each sent with an Idempotency-Key so a retry never posts twice."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

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
from scheduler.channels.post import Media, Post
from scheduler.config.secrets import redact
from scheduler.content.images import ImageLimits
from scheduler.errors import UploadExpiredError

if TYPE_CHECKING:
    import requests

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
    # Mastodon 4's defaults (configuration.media_attachments in /api/v2/instance).
    image_limits = ImageLimits(max_bytes=16 * 1024 * 1024, max_pixels=33_177_600)
    # A 202 upload is processed in the background: ask again this often, this many times.
    poll_seconds: ClassVar[float] = 1.0
    poll_attempts: ClassVar[int] = 30

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

    def to_upload(self, post: Post) -> tuple[Media, ...]:
        return post.media

    def _upload_request(self, media: Media, token: str) -> PreparedPost:
        return PreparedPost(
            method="POST",
            url=f"{self.settings.instance}/api/v2/media",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data"},
            json={"file": f"{{{media.name}: {media.mime}}}", "description": media.alt},
            note="202: processed in the background, polled with GET /api/v1/media/{id}",
        )

    def upload(self, media: Media, post: Post, env: Mapping[str, str] | None) -> str:
        """POST /api/v2/media with the alt text as `description`; a 202 is polled until the
        instance has processed it (GET /api/v1/media/:id answers 206 until then)."""
        token = self.secret("token", env)
        req = self._upload_request(media, token)
        encoded = self.encoded(media)
        http = self.client(env)
        action = f"uploading {media.name}"
        headers = {"Authorization": f"Bearer {token}"}
        response = http.check(
            http.request(
                "POST",
                req.url,
                action=action,
                headers=headers,
                form={"description": media.alt},
                files={"file": (media.path.name, encoded.data, encoded.mime)},
            ),
            action=action,
            hints={422: "the instance refused the image (format or size)"},
        )
        media_id = _field(response, "id", self.what(), action)
        status = response.status_code
        for _ in range(self.poll_attempts):
            if status == 200:
                return media_id
            time.sleep(self.poll_seconds)
            polled = http.check(
                http.request(
                    "GET",
                    f"{self.settings.instance}/api/v1/media/{media_id}",
                    action=f"{action}: waiting for processing",
                    headers=headers,
                ),
                action=f"{action}: waiting for processing",
            )
            status = polled.status_code
        raise TransientPostError(
            f"{self.what()}: {action}: still processing after "
            f"{self.poll_attempts * self.poll_seconds:g}s"
        )

    def _request(
        self,
        index: int,
        text: str,
        *,
        key: str,
        language: str,
        token: str,
        reply_to: str | None,
        media_ids: list[str] | None = None,
    ) -> PreparedPost:
        s = self.settings
        body: dict[str, object] = {"status": text, "visibility": s.visibility, "language": language}
        if media_ids:
            body["media_ids"] = media_ids
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
        token = redact(self.settings.token)
        posts = [self._upload_request(m, token) for m in post.media]
        for index, text in enumerate(parts, 1):
            req = self._request(
                index,
                text,
                key=key,
                language=language,
                token=token,
                reply_to=f"{{id of part {index - 1}}}" if index > 1 else None,
                media_ids=[f"{{id of {m.name}}}" for m in post.media] if index == 1 else None,
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
            media_ids=[post.uploaded[m.name] for m in post.media] if index == 1 else None,
        )
        http = self.client(env)
        action = f"posting part {index} of {len(parts)}"
        sent = http.request("POST", req.url, action=action, json_body=req.json, headers=req.headers)
        if sent.status_code == 422 and index == 1 and post.media and _about_media(sent):
            # Unattached uploads are removed by the instance after a while.
            raise UploadExpiredError(f"{self.what()}: {action}: the uploaded image is gone")
        response = http.check(
            sent,
            action=action,
            hints={
                401: "the token was refused (revoked or expired): create a new access token "
                "with the write:statuses scope and update the environment variable",
                422: "the instance rejected the status",
            },
        )
        return PostRef(id=_field(response, "id", self.what(), action))


def _about_media(response: requests.Response) -> bool:
    try:
        error = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        return False
    return "media" in error.lower()


def _field(response: requests.Response, name: str, what: str, action: str) -> str:
    try:
        return str(response.json()[name])
    except (ValueError, KeyError, TypeError):
        raise PermanentPostError(
            f"{what}: {action}: the instance answered without {name}"
        ) from None
