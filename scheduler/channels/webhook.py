"""Any HTTP endpoint, signed per Standard Webhooks (https://www.standardwebhooks.com)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from typing import Annotated, ClassVar

from pydantic import Field

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    PreparedPost,
    SecretRef,
    placeholder_time,
)
from scheduler.config.secrets import redact

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
    type = "webhook"
    max_length: ClassVar[int | None] = None
    Settings = WebhookSettings
    secret_fields = ("secret",)

    def requests(
        self, parts: list[str], *, key: str, language: str, at: dt.datetime | None = None
    ) -> list[PreparedPost]:
        s = self.settings
        unix_time = "{unix time of sending}" if at is None else str(int(at.timestamp()))
        posts = []
        for index, text in enumerate(parts, 1):
            msg_id = key if len(parts) == 1 else f"{key}/{index}"
            posts.append(
                PreparedPost(
                    method="POST",
                    url=redact(s.url),
                    headers={
                        "Content-Type": "application/json",
                        "webhook-id": msg_id,
                        "webhook-timestamp": unix_time,
                        "webhook-signature": f"v1,{{HMAC-SHA256 with {redact(s.secret)}}}",
                    },
                    json={
                        "type": EVENT_TYPE,
                        "timestamp": placeholder_time(at),
                        "data": {"text": text, "language": language},
                    },
                    note=(
                        "the signature covers the exact body bytes sent; webhook-id stays the "
                        "same on every retry so the receiver can drop duplicates"
                    ),
                )
            )
        return posts
