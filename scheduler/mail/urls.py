"""Mail server URLs: `smtp://`, `smtps://` and `file:DIR` (see `scheduler.mail.transport`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote

from scheduler.config.secrets import is_reference, redact, resolve
from scheduler.errors import PermanentSendError

StartTls = Literal["auto", "require", "off"]


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """An SMTP server as a URL names it, secrets resolved."""

    scheme: Literal["smtp", "smtps"]
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: StartTls = "auto"
    # How to show the user: a token used as user name shows as its `${NAME}` reference.
    user_label: str | None = None

    def display(self) -> str:
        """The URL with the password replaced by `***`: safe for logs and error messages."""
        userinfo = ""
        if self.username is not None:
            label = self.user_label if self.user_label is not None else self.username
            userinfo = label + (":***" if self.password is not None else "") + "@"
        query = f"?starttls={self.starttls}" if self.starttls != "auto" else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{userinfo}{host}:{self.port}{query}"

    def __repr__(self) -> str:
        return f"SmtpEndpoint({self.display()!r})"


_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


def parse_smtp_url(url: str, env: Mapping[str, str] | None = None) -> SmtpEndpoint:
    """Read an `smtp://` or `smtps://` URL, resolving `${ENV}` references in its parts.

    Raises PermanentSendError (without the password) when the URL cannot be read, and
    SecretError when a referenced variable is unset.
    """
    whole = is_reference(url)
    text = resolve(url, env) if whole else url

    def value(part: str) -> str:
        # Literal parts may be percent-encoded; values from the environment are used verbatim.
        decoded = unquote(part)
        return decoded if whole else resolve(decoded, env)

    scheme, sep, rest = text.partition("://")
    # The password may hold any character (it can come from the environment): the host
    # starts after the last "@".
    userinfo, at, hostpart = rest.rpartition("@")
    hostpart, _, query = hostpart.partition("?")
    hostpart = hostpart.rstrip("/")
    shown = f"{scheme}://{userinfo.partition(':')[0] + ':***@' if at else ''}{hostpart}"
    if not sep or scheme not in _DEFAULT_PORTS or not hostpart or "/" in hostpart:
        raise PermanentSendError(
            f"cannot read the mail server URL {shown!r}; write 'smtp://host:587' (STARTTLS), "
            "'smtps://host:465' (TLS), optionally with 'user:${SMTP_PASSWORD}@' before the host"
        )
    if hostpart.startswith("["):  # IPv6 literal
        host, _, port_text = hostpart[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostpart.partition(":")
    host = value(host)
    port_text = value(port_text)
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise PermanentSendError(f"the port in {shown!r} must be a number from 1 to 65535")
    username = password = user_label = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = value(user_text)
        user_label = username if whole else redact(unquote(user_text))
        password = value(password_text) if colon else None
    starttls: StartTls = "auto"
    for name, setting in parse_qsl(query, keep_blank_values=True):
        if name == "starttls" and setting in ("auto", "require", "off") and scheme == "smtp":
            starttls = setting  # type: ignore[assignment]  # checked just above
        else:
            raise PermanentSendError(
                f"unknown setting {name}={setting!r} in {shown!r}; smtp:// URLs take "
                "?starttls=auto, ?starttls=require or ?starttls=off"
            )
    return SmtpEndpoint(
        scheme=scheme,  # type: ignore[arg-type]  # checked against _DEFAULT_PORTS
        host=host,
        port=int(port_text) if port_text else _DEFAULT_PORTS[scheme],
        username=username,
        user_label=user_label,
        password=password,
        starttls=starttls,
    )


def file_directory(url: str) -> str:
    """The directory of a `file:DIR` URL (`file:outbox`, `file://outbox`, `file:///abs`)."""
    directory = url.removeprefix("file:").removeprefix("//")
    if not directory.strip("/"):
        raise PermanentSendError("write a directory after 'file:', e.g. 'file:outbox'")
    return directory
