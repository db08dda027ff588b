"""Slowing down password guessing without letting anyone lock an organizer out.

Failures are counted per (address, client). After `MAX_FAILURES` within `WINDOW` that client
may not try that address again until the window has passed; the same address from any other
client still signs in. So a stranger hammering an organizer's address locks only themselves
out; guessing from many clients is bounded by the per-client rate limit of the login form and
by argon2's cost. A successful sign-in clears that client's count.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key
from scheduler.store.db import writer
from scheduler.store.schema import login_failures, utcnow

F = login_failures.c
MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)


def locked(engine: Engine, email: str, client: str, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    with engine.connect() as conn:
        count = conn.scalar(
            sa.select(sa.func.count()).where(
                F.email_key == address_key(email), F.client == client, F.at > now - WINDOW
            )
        )
    return int(count or 0) >= MAX_FAILURES


def failed(engine: Engine, email: str, client: str, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    with writer(engine).begin() as conn:
        conn.execute(
            sa.insert(login_failures).values(email_key=address_key(email), client=client, at=now)
        )
        # Old failures count for nothing: keep the table small.
        conn.execute(sa.delete(login_failures).where(F.at <= now - WINDOW))


def succeeded(engine: Engine, email: str, client: str) -> None:
    with writer(engine).begin() as conn:
        conn.execute(
            sa.delete(login_failures).where(F.email_key == address_key(email), F.client == client)
        )
