"""The keyed hash an erased person leaves in the suppression list.

HMAC-SHA256 of the address key with SCHEDULER_SECRET_KEY: an import can tell that an address
was erased (and skip it), but the table alone does not give the address back, nor can
anyone without the key test a guess against it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from scheduler.tokens import secret_key

PREFIX = "erased:"


def erased_key(email_key: str, key: bytes | None = None) -> str:
    digest = hmac.new(key or secret_key(), b"erased\0" + email_key.encode(), hashlib.sha256)
    return PREFIX + digest.hexdigest()


def erased_keys(email_keys: Iterable[str], key: bytes | None = None) -> list[str]:
    """`erased_key` of each of `email_keys`, in order: the secret read and the HMAC keyed once
    (an import checks every row it reads)."""
    keyed = hmac.new(key or secret_key(), b"erased\0", hashlib.sha256)
    out = []
    for email_key in email_keys:
        mac = keyed.copy()
        mac.update(email_key.encode())
        out.append(PREFIX + mac.hexdigest())
    return out
