"""Amazon SNS message signatures (how Amazon SES hands over bounces and complaints).

An SNS message is JSON with a `Signature` over a canonical string of some of its fields,
made with the private key of the certificate at `SigningCertURL`. It is verified here:

- the certificate URL must be https on a host SNS signs from (`sns.<region>.amazonaws.com`;
  SCHEDULER_SNS_CERT_HOSTS changes the pattern, e.g. for tests with a local certificate);
  it is fetched with certificate checks on, and cached;
- the certificate must be valid now, and its key must verify the signature: RSA PKCS#1 v1.5
  with SHA-1 (SignatureVersion 1) or SHA-256 (SignatureVersion 2);
- the topic must be one the operator listed (SCHEDULER_SNS_TOPICS): anyone can make an
  SNS topic, and AWS signs theirs too.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from scheduler import settings
from scheduler.errors import BadSignature

_NOTIFICATION_FIELDS: tuple[str, ...] = (
    "Message",
    "MessageId",
    "Subject",
    "Timestamp",
    "TopicArn",
    "Type",
)
_CONFIRMATION_FIELDS: tuple[str, ...] = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string SNS signs: `name\\nvalue\\n` per field, in this order, `Subject`
    only when present."""
    kind = message.get("Type")
    if kind == "Notification":
        fields = _NOTIFICATION_FIELDS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        fields = _CONFIRMATION_FIELDS
    else:
        raise BadSignature(f"unknown SNS message type {kind!r}")
    out = []
    for name in fields:
        if name not in message:
            if name == "Subject":
                continue
            raise BadSignature(f"SNS message lacks {name}")
        value = message[name]
        if not isinstance(value, str):
            raise BadSignature(f"SNS field {name} is not a string")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def allowed_url(url: str, hosts: str | None = None) -> bool:
    """https, no userinfo or odd port, on a host matching the allowed pattern (whole name)."""
    parts = urlsplit(url)
    pattern = hosts if hosts is not None else settings.SNS_CERT_HOSTS.get()
    return (
        parts.scheme == "https"
        and parts.hostname is not None
        and "@" not in parts.netloc
        and re.fullmatch(pattern, parts.hostname) is not None
    )


class CertificateCache:
    """Signing certificates by URL; SNS uses a handful, and fetching one per event would be
    slow and would let a flood of forged events make us fetch."""

    def __init__(self, fetch: Callable[[str], bytes] | None = None) -> None:
        self._fetch = fetch or _fetch
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        with self._lock:
            cached = self._certificates.get(url)
        if cached is not None:
            return cached
        try:
            certificate = x509.load_pem_x509_certificate(self._fetch(url))
        except ValueError as e:
            raise BadSignature(f"the signing certificate is not a PEM certificate: {e}") from None
        with self._lock:
            if len(self._certificates) > 64:
                self._certificates.clear()
            self._certificates[url] = certificate
        return certificate


def _fetch(url: str) -> bytes:
    try:
        response = requests.get(url, timeout=(5, 10), allow_redirects=False)
    except requests.RequestException as e:
        raise BadSignature(f"cannot fetch the signing certificate: {e}") from None
    if response.status_code != 200:
        raise BadSignature(f"signing certificate: HTTP {response.status_code}")
    return response.content


def verify(
    message: Mapping[str, Any],
    certificates: CertificateCache,
    *,
    topics: frozenset[str] | None = None,
    hosts: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Raise BadSignature unless `message` is signed by SNS for an allowed topic."""
    allowed = topics if topics is not None else allowed_topics()
    if message.get("TopicArn") not in allowed:
        raise BadSignature(f"topic {message.get('TopicArn')!r} is not in SCHEDULER_SNS_TOPICS")
    version = str(message.get("SignatureVersion", ""))
    if version not in _HASHES:
        raise BadSignature(f"unsupported SignatureVersion {version!r}")
    url = str(message.get("SigningCertURL", ""))
    if not allowed_url(url, hosts):
        raise BadSignature(f"SigningCertURL {url!r} is not an SNS certificate URL")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError:
        raise BadSignature("the signature is not base64") from None
    if not signature:
        raise BadSignature("unsigned SNS message")
    canonical = string_to_sign(message)
    certificate = certificates.get(url)
    moment = now or dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise BadSignature("the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadSignature("the signing certificate has no RSA key")
    try:
        key.verify(signature, canonical, padding.PKCS1v15(), _HASHES[version]())
    except InvalidSignature:
        raise BadSignature("the SNS signature does not match") from None


def allowed_topics() -> frozenset[str]:
    raw = settings.SNS_TOPICS.get()
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def confirm_subscription(message: Mapping[str, Any], *, hosts: str | None = None) -> None:
    """Visit SubscribeURL (on an SNS host only), which confirms the subscription."""
    url = str(message.get("SubscribeURL", ""))
    if not allowed_url(url, hosts):
        raise BadSignature(f"SubscribeURL {url!r} is not an SNS URL")
    try:
        response = requests.get(url, timeout=(5, 10), allow_redirects=False)
    except requests.RequestException as e:
        raise BadSignature(f"cannot confirm the subscription: {e}") from None
    if response.status_code != 200:
        raise BadSignature(f"confirming the subscription: HTTP {response.status_code}")
