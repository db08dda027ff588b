"""Telegram: Bot API messages of up to 4096 characters, HTML parse mode, threaded as replies."""

from __future__ import annotations

import html
import json
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
from scheduler.channels.post import Media, Post
from scheduler.config.secrets import redact
from scheduler.content.images import ImageLimits

API = "https://api.telegram.org"
CAPTION_LIMIT = 1024  # a photo's caption, after entity parsing
MAX_GROUP = 10  # photos in one sendMediaGroup

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
    # sendPhoto: at most 10 MB, width + height at most 10000, ratio at most 20.
    image_limits = ImageLimits(
        max_bytes=10 * 1000 * 1000, max_side_sum=10_000, min_aspect=1 / 20, max_aspect=20
    )

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
        if reply_to is not None:
            body["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
            note += f"; replies to part {index - 1}" if index > 1 else "; replies to the photos"
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
        posts = []
        first = 1
        if post.media:
            caption = post.text(1) if self._caption_fits(post) else None
            posts.append(self._photo_request(post, caption, token))
            first = 2 if caption is not None else 1
        for index in range(first, len(parts) + 1):
            reply_to = f"{{message_id of part {index - 1}}}" if index > 1 else None
            if index == 1 and post.media:
                reply_to = "{message_id of the photos}"
            posts.append(
                self._request(
                    index, len(parts), parts[index - 1], key=key, token=token, reply_to=reply_to
                )
            )
        return posts

    # --- photos ---------------------------------------------------------------------------

    def _caption_fits(self, post: Post) -> bool:
        return len(post.text(1)) <= CAPTION_LIMIT

    def to_upload(self, post: Post) -> tuple[Media, ...]:
        # Photos whose caption cannot hold the first part go first, on their own; the text
        # follows as a reply. Recorded as an upload, so a retry does not send them again.
        if post.media and not self._caption_fits(post):
            return post.media[:1]
        return ()

    def upload(self, media: Media, post: Post, env: Mapping[str, str] | None) -> str:
        return self._send_photos(post, caption=None, env=env)

    def _photo_request(self, post: Post, caption: str | None, token: str) -> PreparedPost:
        s = self.settings
        images = post.media[:MAX_GROUP]
        body: dict[str, Any] = {"chat_id": s.chat_id}
        if len(images) == 1:
            method = "sendPhoto"
            body["photo"] = f"{{file {images[0].name}}}"
            if caption is not None:
                body |= {"caption": escape(caption), "parse_mode": "HTML"}
        else:
            method = "sendMediaGroup"
            body["media"] = [
                {"type": "photo", "media": f"attach://photo{n}"}
                | (
                    {"caption": escape(caption), "parse_mode": "HTML"}
                    if n == 0 and caption is not None
                    else {}
                )
                for n, _ in enumerate(images)
            ]
        return PreparedPost(
            method="POST",
            url=f"{s.api_base}/bot{token}/{method}",
            headers={"Content-Type": "multipart/form-data"},
            json=body,
            note="multipart: the photos as files; Telegram shows no alt text",
        )

    def _send_photos(
        self, post: Post, *, caption: str | None, env: Mapping[str, str] | None
    ) -> str:
        req = self._photo_request(post, caption, self.secret("bot_token", env))
        images = post.media[:MAX_GROUP]
        files: dict[str, tuple[str, bytes, str]] = {}
        for n, m in enumerate(images):
            encoded = self.encoded(m)
            field = "photo" if len(images) == 1 else f"photo{n}"
            files[field] = (m.path.name, encoded.data, encoded.mime)
        form = {
            k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in req.json.items()
            if k != "photo"
        }
        http = self.client(env)
        action = "sending the photos"
        response = http.check(
            http.request("POST", req.url, action=action, form=form, files=files),
            action=action,
            hints=_HINTS,
        )
        try:
            result = response.json()["result"]
            first = result[0] if isinstance(result, list) else result
            return str(first["message_id"])
        except (ValueError, KeyError, TypeError, IndexError):
            raise PermanentPostError(
                f"{self.what()}: {action}: Telegram answered without a message id"
            ) from None

    # --- sending ------------------------------------------------------------------------------

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
        if index == 1 and post.media:
            if self._caption_fits(post):
                return PostRef(id=self._send_photos(post, caption=post.text(1), env=env))
            photos = post.uploaded.get(post.media[0].name)
            reply_to: int | None = int(photos) if photos else None
        else:
            reply_to = int(refs[-1].id) if index > 1 and refs[-1].id else None
        req = self._request(
            index,
            len(parts),
            parts[index - 1],
            key=key,
            token=self.secret("bot_token", env),
            reply_to=reply_to,
        )
        http = self.client(env)
        action = f"posting part {index} of {len(parts)}"
        response = http.check(
            http.request("POST", req.url, action=action, json_body=req.json),
            action=action,
            hints=_HINTS,
        )
        try:
            return PostRef(id=str(response.json()["result"]["message_id"]))
        except (ValueError, KeyError, TypeError):
            raise PermanentPostError(
                f"{self.what()}: {action}: Telegram answered without a message id"
            ) from None


_HINTS = {
    401: "the bot token was refused: get it from @BotFather and update the variable",
    400: "Telegram rejected the message (is chat_id right, is the bot a member?)",
    403: "the bot may not post in that chat: add it as an administrator",
}
