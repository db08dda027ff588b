"""What the subscriber pages change in the store: confirmed sign-ups and preferences.

A person acts here through a link that reached their mailbox, so these functions may do what
an import never does: make a membership active again after an unsubscribe. They still never
touch a suppressed address (a hard bounce or a complaint) nor a bounced or complained
membership: those are the mail system's word, not the person's, and an organizer clears them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key, normalize_address
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import (
    MembershipStatus,
    lists,
    memberships,
    subscribers,
    suppressions,
    utcnow,
)

S = subscribers.c
M = memberships.c
SOURCE = "web"
# Memberships a person may switch on again themselves (through a link in their mailbox).
_SWITCHABLE = (
    MembershipStatus.UNCONFIRMED.value,
    MembershipStatus.ACTIVE.value,
    MembershipStatus.UNSUBSCRIBED.value,
)


class Confirmation(StrEnum):
    CONFIRMED = "confirmed"  # the membership is active now
    ALREADY = "already"  # it was active before this link
    REFUSED = "refused"  # suppressed, bounced, complained, or unsubscribed after the request


@dataclass(frozen=True, slots=True)
class Person:
    """The subscriber a signed link names, as the store knows them now."""

    id: int
    email: str
    name: str | None
    language: str
    memberships: Mapping[str, str]  # list -> status
    suppressed: bool


def _suppressed(conn: sa.Connection, key: str) -> bool:
    query = sa.select(suppressions.c.email_key).where(suppressions.c.email_key == key)
    return conn.scalar(query) is not None


def _ensure_list(conn: sa.Connection, list_name: str) -> None:
    insert = dialect_insert(conn, lists)
    conn.execute(insert.values(name=list_name, created_at=utcnow()).on_conflict_do_nothing())


def is_suppressed(engine: Engine, email: str) -> bool:
    with engine.connect() as conn:
        return _suppressed(conn, address_key(email))


def confirm_subscription(
    engine: Engine,
    *,
    email: str,
    name: str | None,
    language: str,
    list_name: str,
    requested_at: dt.datetime,
) -> Confirmation:
    """Make `email` an active member of `list_name`, as asked on the subscribe form at
    `requested_at`. An unsubscribe recorded after that moment wins over this (old) link."""
    key = address_key(email)
    now = utcnow()
    with writer(engine).begin() as conn:
        if _suppressed(conn, key):
            return Confirmation.REFUSED
        _ensure_list(conn, list_name)
        insert = dialect_insert(conn, subscribers)
        conn.execute(
            insert.values(
                email_key=key,
                email=normalize_address(email),
                name=name or None,
                language=language,
                attributes={},
                created_at=now,
                updated_at=now,
            ).on_conflict_do_update(
                index_elements=[S.email_key],
                # The person just proved the mailbox is theirs: their choices win.
                set_={
                    "name": sa.func.coalesce(insert.excluded.name, S.name),
                    "language": insert.excluded.language,
                    "updated_at": now,
                },
            )
        )
        sid = conn.scalar(sa.select(S.id).where(S.email_key == key))
        row = conn.execute(
            sa.select(M.status, M.updated_at).where(
                M.subscriber_id == sid, M.list_name == list_name
            )
        ).first()
        if row is not None:
            status, changed_at = row
            if status == MembershipStatus.ACTIVE.value:
                return Confirmation.ALREADY
            if status != MembershipStatus.UNCONFIRMED.value and (
                status != MembershipStatus.UNSUBSCRIBED.value or _aware(changed_at) >= requested_at
            ):
                return Confirmation.REFUSED
        assert sid is not None  # inserted or updated just above
        _activate(conn, int(sid), [list_name], now)
    return Confirmation.CONFIRMED


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _activate(conn: sa.Connection, sid: int, list_names: Iterable[str], now: dt.datetime) -> None:
    insert = dialect_insert(conn, memberships)
    for list_name in list_names:
        conn.execute(
            insert.values(
                subscriber_id=sid,
                list_name=list_name,
                status=MembershipStatus.ACTIVE.value,
                source=SOURCE,
                subscribed_at=now,
                updated_at=now,
            ).on_conflict_do_update(
                index_elements=[M.subscriber_id, M.list_name],
                set_={"status": MembershipStatus.ACTIVE.value, "updated_at": now},
                # Re-checked in the database: a bounce recorded meanwhile still wins.
                where=M.status.in_(_SWITCHABLE),
            )
        )


def person(engine: Engine, subscriber_id: object, email: object) -> Person | None:
    """The subscriber with this id, only if their address is still `email`: a signed link
    never acts on whoever holds the id later."""
    if not isinstance(subscriber_id, int) or not isinstance(email, str):
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(S.id, S.email, S.name, S.language, S.email_key).where(S.id == subscriber_id)
        ).first()
        if row is None or row.email_key != address_key(email):
            return None
        statuses = dict(
            conn.execute(sa.select(M.list_name, M.status).where(M.subscriber_id == row.id)).all()
        )
        return Person(
            id=int(row.id),
            email=row.email,
            name=row.name,
            language=row.language,
            memberships={str(k): str(v) for k, v in statuses.items()},
            suppressed=_suppressed(conn, row.email_key),
        )


def update_preferences(
    engine: Engine, who: Person, *, language: str, wanted: set[str], shown: set[str]
) -> None:
    """Set the language, and for each list in `shown`: active if in `wanted`, else
    unsubscribed. Lists not shown on the page are left alone."""
    now = utcnow()
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(subscribers).where(S.id == who.id).values(language=language, updated_at=now)
        )
        if who.suppressed:
            wanted = set()
        join = sorted(wanted & shown)
        for list_name in join:
            _ensure_list(conn, list_name)
        _activate(conn, who.id, join, now)
        leave = sorted(shown - wanted)
        if leave:
            conn.execute(
                sa.update(memberships)
                .where(
                    M.subscriber_id == who.id,
                    M.list_name.in_(leave),
                    M.status.in_(
                        [MembershipStatus.UNCONFIRMED.value, MembershipStatus.ACTIVE.value]
                    ),
                )
                .values(status=MembershipStatus.UNSUBSCRIBED.value, updated_at=now)
            )
