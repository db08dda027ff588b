"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's second choice)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from scheduler.errors import AccountError

MIN_LENGTH = 12
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verified against when the address is unknown, so an unknown address costs the same
    time as a wrong password: the login answers nothing about who has an account. Made on
    first use: hashing at import would slow every command's start."""
    return _hasher.hash("not a password anyone has")


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise AccountError(f"a password needs at least {MIN_LENGTH} characters")
    if password.strip() != password:
        raise AccountError("a password may not start or end with spaces")


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
