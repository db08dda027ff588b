"""DKIM signing of composed messages (RFC 6376), rsa-sha256 and ed25519-sha256 (RFC 8463).

Fast enough for bulk sending: the key is parsed once; canonicalization is a few regular
expressions over bytes; the canonical form of the headers that are the same in every message
of a part (From, Subject, Date, MIME-Version, List-Id, ...) is computed once and remembered;
the signature itself is OpenSSL's, through `cryptography` (the ``dkim`` extra). The module
imports without `cryptography`; creating a `DkimSigner` without it raises `DkimUnavailable`
with the command that installs it.

Canonicalization is relaxed/relaxed. Verifiers (tests use dkimpy's) check the result.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

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
_WSP = re.compile(rb"[ \t]+")
_WSP_AT_LINE_END = re.compile(rb"[ \t]+\r\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# Header fields whose canonical form is remembered (the fixed ones repeat in every message).
_CACHE_LIMIT = 512


class DkimUnavailable(RuntimeError):
    """DKIM signing was asked for but the `cryptography` package is not installed."""


def _serialization() -> Any:
    try:
        return importlib.import_module("cryptography.hazmat.primitives.serialization")
    except ImportError as exc:
        raise DkimUnavailable(
            "DKIM signing needs the cryptography package: pip install "
            "'campaign-scheduler[dkim]' (or pip install cryptography)"
        ) from exc


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: runs of WSP become one SP, WSP at line ends and empty lines at the
    end go, and a non-empty body ends with one CRLF."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    # Composed bodies are base64 and quoted-printable with single spaces in MIME headers:
    # three substring searches (fast) usually show that there is nothing to rewrite.
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        body = _WSP.sub(b" ", _WSP_AT_LINE_END.sub(b"\r\n", body))
    stripped = body.rstrip(b"\r\n")
    return stripped + b"\r\n" if stripped else b""


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 3.4.2 for one header field (name, colon, value; folded or not; no final CRLF):
    lowercase name, unfolded, WSP runs as one SP, none around the colon or at the end."""
    name, _, value = field.partition(b":")
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


class DkimSigner:
    """Signs messages for one domain and selector; the key says which algorithm
    (an RSA key: rsa-sha256; an Ed25519 key: ed25519-sha256).

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
        clock: Callable[[], float] = time.time,
    ) -> None:
        serialization = _serialization()
        if not _SELECTOR.fullmatch(selector):
            raise ValueError(f"DKIM selector {selector!r} is not a DNS label")
        if not _DOMAIN.fullmatch(domain):
            raise ValueError(f"DKIM domain {domain!r} is not a domain name")
        names = [h.strip() for h in headers]
        if not all(_HEADER_NAME.fullmatch(h) for h in names):
            raise ValueError(f"bad header name in {list(headers)!r}")
        if "from" not in {h.lower() for h in names}:
            raise ValueError("a DKIM signature must cover the From header")
        try:  # fail at start-up, not on the first message
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except Exception as exc:
            raise ValueError(
                f"the DKIM private key is not a PEM RSA or Ed25519 private key: {exc}"
            ) from exc
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 1024:
                raise ValueError("a DKIM RSA key needs at least 1024 bits (2048 is usual)")
            self.algorithm = "rsa-sha256"
            pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
            self._sign: Callable[[bytes], bytes] = lambda data: key.sign(data, pkcs1, sha256)
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
            # RFC 8463: Ed25519 signs the SHA-256 digest of the canonicalized headers.
            self._sign = lambda data: key.sign(hashlib.sha256(data).digest())
        else:
            raise ValueError("the DKIM private key is neither RSA nor Ed25519")
        self.selector = selector
        self.domain = domain
        self._clock = clock
        lowered = [h.lower().encode("ascii") for h in names]
        self._wanted = lowered + lowered if oversign else lowered
        self._tags_head = (
            f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={domain}; s={selector};"
        ).encode("ascii")
        self._h_tag = b"h=" + b":".join(self._wanted) + b";"
        self._canonical: dict[bytes, bytes] = {}

    def _canon(self, field: bytes) -> bytes:
        canon = self._canonical.get(field)
        if canon is None:
            canon = relaxed_header(field)
            if len(self._canonical) < _CACHE_LIMIT:
                self._canonical[field] = canon
        return canon

    def signature(self, message: bytes) -> bytes:
        """The ``DKIM-Signature: ...`` header field for `message` (CRLF line endings),
        folded, ending in CRLF."""
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:  # headers only
            head, body = message.removesuffix(b"\r\n"), b""
        fields: dict[bytes, list[bytes]] = {}
        current = b""
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                last = fields[current]
                last[-1] += b"\r\n" + line
                continue
            current = line.partition(b":")[0].rstrip(b" \t").lower()
            fields.setdefault(current, []).append(line)
        hashed: list[bytes] = []
        used: dict[bytes, int] = {}
        for name in self._wanted:
            # RFC 6376 5.4.2: each listed name takes the next instance from the bottom up;
            # a name listed more often than it occurs adds nothing (that is the oversigning).
            instances = fields.get(name)
            n = used.get(name, 0)
            if instances is not None and n < len(instances):
                hashed.append(self._canon(instances[-1 - n]))
                used[name] = n + 1
        bh = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        tags = (
            self._tags_head
            + b"\r\n t="
            + str(int(self._clock())).encode()
            + b"; "
            + self._h_tag
            + b"\r\n bh="
            + bh
            + b";\r\n b="
        )
        header = b"DKIM-Signature: " + tags
        hashed.append(relaxed_header(header).removesuffix(b"\r\n"))
        b = base64.b64encode(self._sign(b"".join(hashed)))
        folded = b"\r\n  ".join(b[i : i + 72] for i in range(0, len(b), 72))
        return header + folded + b"\r\n"

    def sign(self, message: bytes, *, crlf: bool = False) -> bytes:
        """`message` with the DKIM-Signature header prepended (bare LFs become CRLF first,
        as they will on the wire; `crlf`: the caller knows there are none)."""
        if not crlf and b"\n" in message.replace(b"\r\n", b""):
            message = _BARE_LF.sub(b"\r\n", message)
        return self.signature(message) + message
