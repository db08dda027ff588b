"""Who is signed in to the dashboard: an organizer account, or the read-only token.

The session cookie is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure behind https,
8 hours: an older cookie's signature is refused). It holds the account id and the account's
`session_version`: setting a password or removing the account ends every older session.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import g, request, session

from scheduler.accounts import store as accounts
from scheduler.accounts.actor import Actor
from scheduler.accounts.store import Account
from scheduler.store.schema import accounts as accounts_table
from scheduler.web.pages import client_ip, web_state

ACCOUNT_KEY = "account"
VERSION_KEY = "v"
TOKEN_KEY = "dashboard"  # the read-only token or environment password


@dataclass(frozen=True, slots=True)
class SignedIn:
    account: Account | None  # None: the read-only token

    @property
    def name(self) -> str:
        return self.account.email if self.account else "token"

    @property
    def may_act(self) -> bool:
        return self.account is not None and self.account.may_act

    @property
    def may_approve(self) -> bool:
        return self.account is not None and self.account.may_approve

    @property
    def actor(self) -> Actor:
        return Actor(self.name, client_ip())


def any_accounts() -> bool:
    with web_state().engine.connect() as conn:
        return conn.scalar(sa.select(accounts_table.c.id).limit(1)) is not None


def dashboard_enabled() -> bool:
    return web_state().dashboard.enabled or any_accounts()


def start(account: Account | None) -> None:
    """A fresh session on sign-in: one fixed by someone else before is not promoted."""
    session.clear()
    if account is None:
        session[TOKEN_KEY] = True
    else:
        session[ACCOUNT_KEY] = account.id
        session[VERSION_KEY] = account.session_version
    session.permanent = True


def current() -> SignedIn | None:
    if "signed_in" not in g:
        g.signed_in = _find()
    found: SignedIn | None = g.signed_in
    return found


def _find() -> SignedIn | None:
    state = web_state()
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        # Scripts read with the token; a bearer header never acts.
        ok = bool(state.dashboard.token) and state.dashboard.accepts(
            header.removeprefix("Bearer ").strip()
        )
        return SignedIn(None) if ok else None
    account_id = session.get(ACCOUNT_KEY)
    if isinstance(account_id, int):
        account = accounts.by_id(state.engine, account_id)
        if account is None or account.session_version != session.get(VERSION_KEY):
            session.clear()
            return None
        return SignedIn(account)
    if session.get(TOKEN_KEY) is True and state.dashboard.enabled:
        return SignedIn(None)
    return None
