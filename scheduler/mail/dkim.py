"""Optional DKIM signing of composed messages, with dkimpy (the ``dkim`` extra).

The module imports without dkimpy; creating a `DkimSigner` without it raises `DkimUnavailable`
with the command that installs it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from types import ModuleType

__all__ = ["DEFAULT_SIGNED_HEADERS", "DkimSigner", "DkimUnavailable"]

#: The headers a bulk sender's signature covers (RFC 8058 section 4 asks for List-Unsubscribe
#: and List-Unsubscribe-Post to be signed).
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "MIME-Version",
    "Content-Type",
)

_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9-]+")
_HEADER_NAME = re.compile(r"[!-9;-~]+")


class DkimUnavailable(RuntimeError):
    """DKIM signing was asked for but dkimpy is not installed."""


def _dkim() -> ModuleType:
    try:
        return importlib.import_module("dkim")
    except ImportError as exc:
        raise DkimUnavailable(
            "DKIM signing needs the dkimpy package: pip install 'campaign-scheduler[dkim]' "
            "(or pip install dkimpy)"
        ) from exc


class DkimSigner:
    """Signs messages for one domain and selector (rsa-sha256, relaxed/relaxed).

    Each header in `headers` is signed, and signed once more ("oversigned") when
    `oversign` is true, so that nobody can add a second From, Subject, List-Unsubscribe, ...
    after signing without breaking the signature. Headers absent from a message are signed as
    absent, so adding them later breaks the signature too.
    """

    def __init__(
        self,
        selector: str,
        domain: str,
        private_key_pem: bytes,
        headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
        *,
        oversign: bool = True,
    ) -> None:
        self._dkim = _dkim()
        if not _SELECTOR.fullmatch(selector):
            raise ValueError(f"DKIM selector {selector!r} is not a DNS label")
        if not _DOMAIN.fullmatch(domain):
            raise ValueError(f"DKIM domain {domain!r} is not a domain name")
        names = [h.strip() for h in headers]
        if not all(_HEADER_NAME.fullmatch(h) for h in names):
            raise ValueError(f"bad header name in {list(headers)!r}")
        if "from" not in {h.lower() for h in names}:
            raise ValueError("a DKIM signature must cover the From header")
        crypto = importlib.import_module("dkim.crypto")
        try:  # fail at start-up, not on the first message
            crypto.parse_pem_private_key(private_key_pem)
        except Exception as exc:
            raise ValueError(f"the DKIM private key is not a PEM RSA key: {exc}") from exc
        self.selector = selector
        self.domain = domain
        self._selector = selector.encode("ascii")
        self._domain = domain.encode("ascii")
        self._key = private_key_pem
        signed = [h.encode("ascii") for h in names]
        self._headers = signed + signed if oversign else signed

    def signature(self, message: bytes) -> bytes:
        """The ``DKIM-Signature: ...`` header field for `message`, folded, ending in CRLF."""
        header: bytes = self._dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self._headers,
            linesep=b"\r\n",
        )
        return header

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF wire form) with the DKIM-Signature header prepended."""
        return self.signature(message) + message
