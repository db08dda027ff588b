"""Email through an SMTP server, or into a directory of .eml files (`file:DIR`)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, model_validator

from scheduler.channels.base import Channel, ChannelSettings, PreparedPost
from scheduler.config.model import Identifier
from scheduler.config.secrets import is_reference, references

_SERVER_URL = re.compile(
    r"^(?P<scheme>smtps?)://(?:(?P<userinfo>[^@/]*)@)?(?P<host>[^@/:?\s]+)"
    r"(?::(?P<port>\d{1,5}))?/?(?:\?starttls=(?:auto|require|off))?$"
)


def _check_url(value: str) -> str:
    if is_reference(value):
        # The whole URL comes from the environment (it may hold the password); check the
        # default now and the resolved value when sending.
        ((_name, default),) = references(value)
        if default:
            _check_url(default)
        return value
    if value.startswith("file:"):
        if not value.removeprefix("file:").removeprefix("//").strip("/"):
            raise ValueError("write a directory after 'file:', e.g. 'file:outbox'")
        return value
    # The password may hold any character, so take userinfo up to the last "@".
    userinfo, at, rest = value.rpartition("@")
    if at and "://" in userinfo:
        scheme, _, credentials = userinfo.partition("://")
        _user, colon, password = credentials.partition(":")
        if colon and not is_reference(password):
            raise ValueError(
                "the SMTP password must not be written in campaigns.yaml; put it in an "
                "environment variable and refer to it, e.g. "
                "'smtp://user:${SMTP_PASSWORD}@mail.example.org:587'"
            )
        value_to_check = f"{scheme}://{rest}"
    else:
        value_to_check = value
    m = _SERVER_URL.match(value_to_check)
    if not m or (m["port"] and not 0 < int(m["port"]) < 65536):
        raise ValueError(
            f"cannot read {value!r}; write 'smtp://host:587' (STARTTLS), "
            "'smtps://host:465' (TLS), optionally with 'user:${SMTP_PASSWORD}@' before the host, "
            "or 'file:DIR' to write .eml files"
        )
    return value


def _check_list_id(value: str) -> str:
    # RFC 2919: an optional phrase, then <label.namespace>; no line breaks (header injection).
    if not re.fullmatch(r"(?:[^<>\r\n]+ )?<?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+>?", value):
        raise ValueError(
            f"{value!r} is not a List-Id; write e.g. 'Alliance news <news.alliance.example>'"
        )
    return value


def _check_return_path(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,40}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", value):
        raise ValueError(
            f"{value!r} is not a return path; write a plain address such as "
            "'bounces@bounces.example.org' (no '+': the token goes after it)"
        )
    return value


class SmtpSettings(ChannelSettings):
    url: Annotated[str, AfterValidator(_check_url)]
    sender: Identifier = Field(description="the name of a sender in campaigns.yaml")
    connections: int = Field(default=4, ge=1, le=100)
    rate_per_second: float | None = Field(default=None, gt=0)
    rate_per_hour: int | None = Field(default=None, ge=1)
    list_id: Annotated[str, AfterValidator(_check_list_id)] | None = None
    # VERP: bounces come back to `local+TOKEN@domain` of this address, TOKEN naming the
    # delivery (scheduler/listhealth/verp.py). The mailbox must accept `+` subaddresses.
    # Unset: the sender's address is the envelope sender and bounces cannot be attributed.
    return_path: Annotated[str, AfterValidator(_check_return_path)] | None = None
    # DKIM signing (needs the `dkim` extra): the selector published in DNS, the signing
    # domain (default: the sender's), and the PEM private key's file (may be `${VAR}`).
    dkim_selector: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    dkim_domain: str | None = None
    dkim_private_key_file: str | None = None

    @model_validator(mode="after")
    def _dkim_complete(self) -> SmtpSettings:
        if (self.dkim_selector is None) != (self.dkim_private_key_file is None):
            raise ValueError("DKIM needs both dkim_selector and dkim_private_key_file (or neither)")
        return self


class SmtpChannel(Channel[SmtpSettings]):
    type = "smtp"
    kind = "email"
    max_length: ClassVar[int | None] = None
    Settings = SmtpSettings
    secret_fields = ()  # the password lives inside `url` and is checked there

    def requests(
        self,
        parts: list[str],
        *,
        key: str,
        language: str,
        at: dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[PreparedPost]:
        raise TypeError("smtp channels send email, not posts; preview the rendered email instead")
