"""HMAC-signed tokens for unsubscribe and preference links: they cannot be forged or reused
for another address, and carry no secret."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from typing import Any

from scheduler import settings
from scheduler.errors import SchedulerError

SECRET_ENV = settings.SECRET_KEY.name
# Only for previews and local runs; `scheduler validate --strict` insists on a real key.
DEVELOPMENT_KEY = "development-only-secret-change-me"


class BadToken(SchedulerError):
    """A link token was tampered with, forged, or made for another purpose."""


def secret_key() -> bytes:
    # An empty value counts as unset: an empty key would sign every link with nothing.
    return (settings.secret_key() or DEVELOPMENT_KEY).encode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    # base64.urlsafe_b64encode's bytes, without its two Python wrappers: every email's two
    # links each encode a payload and a MAC.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# The same bytes as json.dumps(data, separators=(",", ":"), sort_keys=True), without making
# an encoder per call: every email signs two links, so this runs twice per message.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_escape = json.encoder.encode_basestring_ascii  # what _ENCODER uses for strings (ensure_ascii)


def _json(data: dict[str, Any]) -> str:
    """`_ENCODER.encode(data)`; for a flat object of strings and integers (every link's),
    written directly with the encoder's own C string escaping, at a third of the cost."""
    if not all(type(k) is str for k in data):
        return _ENCODER.encode(data)
    parts = []
    for k in sorted(data):
        v = data[k]
        if type(v) is str:
            parts.append(f"{_escape(k)}:{_escape(v)}")
        elif type(v) is int:
            parts.append(f"{_escape(k)}:{v}")
        else:
            return _ENCODER.encode(data)
    return "{" + ",".join(parts) + "}"


def sign(purpose: str, data: dict[str, Any], key: bytes | None = None) -> str:
    return _signer(purpose, key or secret_key()).sign_json(_json(data))


def json_string(text: str) -> str:
    """`text` as the JSON string `sign` writes for it (ASCII, escaped)."""
    return _escape(text)


class Signer:
    """`sign(purpose, data, key)` for many payloads of one purpose and key: the HMAC is keyed
    and fed `purpose.` once, then copied per token. `payload` is the JSON text `sign` would
    write for the data (sorted keys, no spaces, `json_string` for strings)."""

    __slots__ = ("_mac",)

    def __init__(self, purpose: str, key: bytes) -> None:
        self._mac = hmac.new(key, f"{purpose}.".encode(), hashlib.sha256)

    def sign_json(self, payload: str) -> str:
        encoded = _b64(payload.encode())
        mac = self._mac.copy()
        mac.update(encoded.encode("ascii"))
        return f"{encoded}.{_b64(mac.digest()[:20])}"


@functools.lru_cache(maxsize=16)
def _signer(purpose: str, key: bytes) -> Signer:
    return Signer(purpose, key)


def verify(purpose: str, token: str, key: bytes | None = None) -> dict[str, Any]:
    try:
        payload, mac = token.split(".")
        expected = hmac.new(
            key or secret_key(), f"{purpose}.{payload}".encode(), hashlib.sha256
        ).digest()[:20]
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise BadToken("signature does not match")
        data = json.loads(_unb64(payload))
    except (ValueError, json.JSONDecodeError) as e:
        raise BadToken(f"malformed token: {e}") from None
    if not isinstance(data, dict):
        raise BadToken("malformed token payload")
    return data
