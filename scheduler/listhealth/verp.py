"""VERP return paths: the envelope sender of each email names its delivery, signed.

`bounces+d1k2-5f3ktq2hd1gq@bounces.example.org`: `d` + the delivery id in base 36, then an
HMAC of it (60 bits, base 32, lower case: some servers lower-case local parts). A bounce
comes back to that address, so the delivery (and through it the subscriber, occurrence and
lists) is known without trusting anything the bounce says about who it is for; a forged
bounce would need the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from scheduler.tokens import secret_key

PURPOSE = b"verp-return-path"
_MAC_CHARS = 12  # 60 bits: forging one takes ~2**59 tries, each a sent email
_TOKEN = re.compile(r"\bd([0-9a-z]{1,13})-([a-z2-7]{12})\b", re.IGNORECASE)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


def _mac(delivery_id: int, key: bytes) -> str:
    digest = hmac.new(key, PURPOSE + str(delivery_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:_MAC_CHARS]


def token(delivery_id: int, key: bytes | None = None) -> str:
    return f"d{_base36(delivery_id)}-{_mac(delivery_id, key or secret_key())}"


def return_path(delivery_id: int, base_address: str, key: bytes | None = None) -> str:
    """`local+TOKEN@domain` for `base_address` `local@domain` (the channel's `return_path`)."""
    local, at, domain = base_address.rpartition("@")
    if not at or not local:
        raise ValueError(f"return path {base_address!r} is not an address")
    return f"{local}+{token(delivery_id, key)}@{domain}"


def delivery_ids(text: str, key: bytes | None = None) -> list[int]:
    """The delivery ids of every correctly signed token in `text`, in order, once each."""
    key = key or secret_key()
    found: list[int] = []
    for m in _TOKEN.finditer(text):
        delivery_id = int(m[1], 36)
        signed = hmac.compare_digest(_mac(delivery_id, key), m[2].lower())
        if signed and delivery_id not in found:
            found.append(delivery_id)
    return found
