"""Email through an SMTP server, or into a directory of .eml files (`file:DIR`)."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, model_validator

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    PreparedPost,
    ProjectFacts,
    Runtime,
    SettingProblem,
)
from scheduler.channels.post import Post
from scheduler.config import secrets
from scheduler.config.diagnostics import did_you_mean
from scheduler.config.model import Identifier
from scheduler.config.secrets import is_reference, references
from scheduler.errors import PermanentSendError
from scheduler.mail.dkim import DkimSigner
from scheduler.mail.filebox import FileTransport
from scheduler.mail.ratelimit import make_limiter
from scheduler.mail.smtp import SmtpTransport
from scheduler.mail.transport import (
    SmtpEndpoint,
    Transport,
    TransportPool,
    file_directory,
    parse_smtp_url,
)


class _StandIns(Mapping[str, str]):
    """Any `${VAR}` in a URL's parts reads as "1" (a valid host, port, user or password), so
    the shape of the URL is checked by the transport's own parser before any secret is set."""

    def __getitem__(self, name: str) -> str:
        return "1"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


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
    userinfo, at, _rest = value.rpartition("@")
    if at and "://" in userinfo:
        _user, colon, password = userinfo.partition("://")[2].partition(":")
        if colon and not is_reference(password):
            raise ValueError(
                "the SMTP password must not be written in campaigns.yaml; put it in an "
                "environment variable and refer to it, e.g. "
                "'smtp://user:${SMTP_PASSWORD}@mail.example.org:587'"
            )
    try:
        parse_smtp_url(value, _StandIns())
    except PermanentSendError as e:
        raise ValueError(
            f"{e}, or 'file:DIR' to write .eml files" if "cannot read" in str(e) else str(e)
        ) from None
    return value


def _check_list_id(value: str) -> str:
    # RFC 2919: an optional phrase, then <label.namespace>; no line breaks (header injection).
    if not re.fullmatch(r"(?:[^<>\r\n]+ )?<?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+>?", value):
        raise ValueError(
            f"{value!r} is not a List-Id; write e.g. 'Alliance news <news.alliance.example>'"
        )
    return value


class SmtpSettings(ChannelSettings):
    url: Annotated[str, AfterValidator(_check_url)]
    sender: Identifier = Field(description="the name of a sender in campaigns.yaml")
    connections: int = Field(default=4, ge=1, le=100)
    rate_per_second: float | None = Field(default=None, gt=0)
    rate_per_hour: int | None = Field(default=None, ge=1)
    list_id: Annotated[str, AfterValidator(_check_list_id)] | None = None
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
    """Email through one SMTP server (or into a folder of .eml files).

    The channel owns what sending needs, made once per process on first use: the parsed
    endpoint, the pool of reused connections with its rate limiter, and the DKIM signer.
    """

    type = "smtp"
    kind = "email"
    max_length: ClassVar[int | None] = None
    Settings = SmtpSettings
    secret_fields = ()  # the password lives inside `url` and is checked there

    def __init__(
        self,
        name: str,
        settings: SmtpSettings,
        *,
        language: str | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(name, settings, language=language, runtime=runtime)
        self._lock = threading.Lock()
        self._pool: TransportPool | None = None
        self._signer: DkimSigner | None = None
        self._signer_loaded = False

    # --- what the settings say ------------------------------------------------------------

    @property
    def sender(self) -> str:
        """The name of the sender (under `senders:`) this channel's mail comes from."""
        return self.settings.sender

    @property
    def list_id(self) -> str | None:
        """The List-Id header the settings ask for, or None for the default."""
        custom = self.settings.list_id
        return f"<{custom.strip('<>')}>" if custom else None

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.runtime.base_dir / path

    def folder(self, env: Mapping[str, str] | None = None) -> Path | None:
        """The folder .eml files are written to, for a `file:` URL; None for a server."""
        url = self.settings.url
        text = secrets.resolve(url, env) if is_reference(url) else url
        if not text.startswith("file:"):
            return None
        return self._path(secrets.resolve(file_directory(text), env))

    def endpoint(self, env: Mapping[str, str] | None = None) -> SmtpEndpoint:
        """The server, secrets resolved (never shown: `display()` hides the password)."""
        return parse_smtp_url(self.settings.url, env)

    # --- what sending needs -----------------------------------------------------------------

    def pool(self, env: Mapping[str, str] | None = None) -> TransportPool:
        """The channel's connections, made on first use and kept for the process.

        Raises PermanentSendError or SecretError when the URL cannot be used.
        """
        with self._lock:
            if self._pool is None:
                self._pool = self._make_pool(env)
            return self._pool

    def _make_pool(self, env: Mapping[str, str] | None) -> TransportPool:
        folder = self.folder(env)
        factory: Callable[[], Transport]
        if folder is not None:
            connections = 1  # one writer is as fast as the disk
            factory = functools.partial(FileTransport, folder)
        else:
            connections = self.settings.connections
            factory = functools.partial(SmtpTransport, self.endpoint(env))
        limiter = make_limiter(
            self.settings.rate_per_second,
            self.settings.rate_per_hour,
            self.runtime.redis_url,
            key=self.name,
        )
        return TransportPool(factory, connections, limiter)

    def dkim_signer(
        self, sender_domain: str, env: Mapping[str, str] | None = None
    ) -> DkimSigner | None:
        """The DKIM signer, if the channel signs; its key is read once per process."""
        s = self.settings
        with self._lock:
            if not self._signer_loaded:
                if s.dkim_selector and s.dkim_private_key_file:
                    path = self._path(secrets.resolve(s.dkim_private_key_file, env))
                    domain = s.dkim_domain or sender_domain
                    self._signer = DkimSigner(s.dkim_selector, domain, path.read_bytes())
                self._signer_loaded = True
            return self._signer

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
        super().close()

    # --- checks and previews -----------------------------------------------------------------

    @classmethod
    def project_problems(
        cls, settings: ChannelSettings, facts: ProjectFacts
    ) -> list[SettingProblem]:
        assert isinstance(settings, SmtpSettings)
        problems = []
        if settings.sender not in facts.senders:
            problems.append(
                SettingProblem(
                    "sender",
                    f"unknown sender {settings.sender!r}",
                    did_you_mean(settings.sender, sorted(facts.senders))
                    or "define it under senders: (known: "
                    f"{', '.join(sorted(facts.senders)) or 'none'})",
                )
            )
        key_file = settings.dkim_private_key_file
        if key_file is not None and not secrets.missing(key_file):
            path = Path(secrets.resolve(key_file))
            if not path.is_absolute():
                path = facts.base_dir / path
            if not path.is_file():
                problems.append(
                    SettingProblem(
                        "dkim_private_key_file",
                        f"DKIM key file {str(path)!r} not found",
                        "create it with `openssl genrsa -out dkim.pem 2048` and publish "
                        "the public key in DNS, or remove the dkim_ settings",
                    )
                )
        return problems

    def requests(self, post: Post) -> list[PreparedPost]:
        raise TypeError("smtp channels send email, not posts; preview the rendered email instead")
