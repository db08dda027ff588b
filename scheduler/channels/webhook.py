"""Any HTTP endpoint, signed per Standard Webhooks (https://www.standardwebhooks.com)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    PostRef,
    PreparedPost,
    SecretRef,
    placeholder_time,
)
from scheduler.channels.http import PermanentPostError
from scheduler.channels.post import Post
from scheduler.config.secrets import redact, resolve

EVENT_TYPE = "statement.published"
SECRET_PREFIX = "whsec_"

HttpUrl = Annotated[str, Field(pattern=r"^(https?://[^\s]+|\$\{[A-Za-z_][A-Za-z0-9_]*\})$")]


class WebhookSettings(ChannelSettings):
    url: HttpUrl
    secret: SecretRef  # "whsec_" + base64 of the signing key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1," + base64(HMAC-SHA256(key, f"{id}.{ts}.{body}"))."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(
            "a Standard Webhooks secret is 'whsec_' followed by base64; check the variable"
        ) from None
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class WebhookChannel(Channel[WebhookSettings]):
    """One JSON event per part, signed per Standard Webhooks. The `webhook-id` is the same on
    every attempt, so a receiver that drops ids it has seen gets each part once."""

    type = "webhook"
    max_length: ClassVar[int | None] = None
    Settings = WebhookSettings
    secret_fields = ("secret",)
    idempotent = True  # by the spec's contract on the receiver's side

    @staticmethod
    def message_id(key: str, index: int, total: int) -> str:
        return key if total == 1 else f"{key}/{index}"

    @staticmethod
    def payload(
        text: str,
        *,
        language: str,
        timestamp: str,
        index: int,
        total: int,
        metadata: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"text": text, "language": language}
        if total > 1:
            data["part"] = {"index": index, "total": total}
        if metadata:
            data.update(metadata)
        return {"type": EVENT_TYPE, "timestamp": timestamp, "data": data}

    def requests(self, post: Post) -> list[PreparedPost]:
        parts, key, language, at = post.parts, post.key, post.language, post.at
        metadata = post.metadata
        s = self.settings
        unix_time = "{unix time of sending}" if at is None else str(int(at.timestamp()))
        posts = []
        for index, text in enumerate(parts, 1):
            posts.append(
                PreparedPost(
                    method="POST",
                    url=redact(s.url),
                    headers={
                        "Content-Type": "application/json",
                        "webhook-id": self.message_id(key, index, len(parts)),
                        "webhook-timestamp": unix_time,
                        "webhook-signature": f"v1,{{HMAC-SHA256 with {redact(s.secret)}}}",
                    },
                    json=self.payload(
                        text,
                        language=language,
                        timestamp=placeholder_time(at),
                        index=index,
                        total=len(parts),
                        metadata=metadata,
                    ),
                    note=(
                        "the signature covers the exact body bytes sent; webhook-id stays the "
                        "same on every retry so the receiver can drop duplicates"
                    ),
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
        metadata = post.metadata
        msg_id = self.message_id(key, index, len(parts))
        # The timestamp is the attempt's: receivers refuse old ones (replay protection).
        now = dt.datetime.now(dt.UTC)
        body = json.dumps(
            self.payload(
                parts[index - 1],
                language=language,
                timestamp=placeholder_time(now),
                index=index,
                total=len(parts),
                metadata=metadata,
            ),
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        timestamp = int(now.timestamp())
        action = f"delivering part {index} of {len(parts)}"
        try:
            signature = sign(self.secret("secret", env), msg_id, timestamp, body)
        except ValueError as e:
            raise PermanentPostError(f"{self.what()}: {e}") from None
        http = self.client(env)
        http.check(
            http.request(
                "POST",
                resolve(self.settings.url, env),
                action=action,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signature,
                },
            ),
            action=action,
        )
        return PostRef(id=msg_id)
