"""Accounts in the store: add, list, remove, set a password, one-time password links."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.accounts.passwords import hash_password
from scheduler.audience.address import address_key
from scheduler.errors import AccountError
from scheduler.store.db import writer
from scheduler.store.schema import Role, accounts, password_links, utcnow

A = accounts.c
LINK_LIFETIME = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    role: Role
    chapter: str | None
    has_password: bool
    session_version: int
    created_at: dt.datetime

    @property
    def may_act(self) -> bool:
        return self.role in (Role.ORGANIZER, Role.APPROVER)

    @property
    def may_approve(self) -> bool:
        return self.role is Role.APPROVER

    def as_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "role": self.role.value,
            "chapter": self.chapter,
            "password_set": self.has_password,
            "created_at": self.created_at.isoformat(),
        }


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        email=row.email,
        role=Role(row.role),
        chapter=row.chapter,
        has_password=row.password_hash is not None,
        session_version=row.session_version,
        created_at=row.created_at,
    )


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise AccountError(
            f"unknown role {value!r}; roles: {', '.join(r.value for r in Role)}"
        ) from None


def add(engine: Engine, email: str, role: Role, chapter: str | None = None) -> Account:
    email = email.strip()
    if "@" not in email or any(c.isspace() for c in email):
        raise AccountError(f"{email!r} is not an email address")
    now = utcnow()
    with writer(engine).begin() as conn:
        exists = conn.scalar(sa.select(A.id).where(A.email_key == address_key(email)))
        if exists is not None:
            raise AccountError(f"{email} already has an account; remove it first to change it")
        conn.execute(
            sa.insert(accounts).values(
                email_key=address_key(email),
                email=email,
                role=role.value,
                chapter=chapter,
                created_at=now,
                updated_at=now,
            )
        )
    found = get(engine, email)
    assert found is not None
    return found


def get(engine: Engine, email: str) -> Account | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(accounts).where(A.email_key == address_key(email))).first()
    return None if row is None else _account(row)


def by_id(engine: Engine, account_id: int) -> Account | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(accounts).where(A.id == account_id)).first()
    return None if row is None else _account(row)


def password_hash_of(engine: Engine, email: str) -> tuple[Account | None, str | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(accounts).where(A.email_key == address_key(email))).first()
    return (None, None) if row is None else (_account(row), row.password_hash)


def all_accounts(engine: Engine) -> list[Account]:
    with engine.connect() as conn:
        return [_account(r) for r in conn.execute(sa.select(accounts).order_by(A.email_key))]


def remove(engine: Engine, email: str) -> bool:
    with writer(engine).begin() as conn:
        gone = conn.execute(
            sa.delete(accounts).where(A.email_key == address_key(email)).returning(A.id)
        ).first()
    return gone is not None


def set_password(engine: Engine, account_id: int, password: str) -> None:
    """Set the password and end every session signed in before."""
    hashed = hash_password(password)
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(accounts)
            .where(A.id == account_id)
            .values(
                password_hash=hashed,
                session_version=A.session_version + 1,
                updated_at=utcnow(),
            )
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(engine: Engine, account_id: int, now: dt.datetime | None = None) -> str:
    """A token for one use within `LINK_LIFETIME`; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    now = now or utcnow()
    with writer(engine).begin() as conn:
        conn.execute(
            sa.insert(password_links).values(
                token_hash=_token_hash(token),
                account_id=account_id,
                expires_at=now + LINK_LIFETIME,
                created_at=now,
            )
        )
    return token


def link_account(engine: Engine, token: str, now: dt.datetime | None = None) -> Account | None:
    """The account a still-valid, unused link belongs to."""
    now = now or utcnow()
    P = password_links.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(P.account_id).where(
                P.token_hash == _token_hash(token), P.used_at.is_(None), P.expires_at > now
            )
        ).first()
    return None if row is None else by_id(engine, row.account_id)


def use_link(engine: Engine, token: str, password: str, now: dt.datetime | None = None) -> Account:
    """Set the password through a link, once: a second use or a late one is refused."""
    now = now or utcnow()
    P = password_links.c
    hash_password(password)  # refuse a weak password before the link is spent
    with writer(engine).begin() as conn:
        row = conn.execute(
            sa.update(password_links)
            .where(P.token_hash == _token_hash(token), P.used_at.is_(None), P.expires_at > now)
            .values(used_at=now)
            .returning(P.account_id)
        ).first()
    if row is None:
        raise AccountError("this link was used already or has expired; ask for a new one")
    set_password(engine, row.account_id, password)
    account = by_id(engine, row.account_id)
    if account is None:
        raise AccountError("the account of this link was removed")
    return account
