"""A subscriber's rights: everything held about them (export), erasure (forget), and the
retention rule that cuts old deliveries loose from the people they went to.

Where an address can be in the store: `subscribers` (the row), `memberships` (by id),
`suppressions` (by address key), `deliveries` (by subscriber id; an SMTP reply kept in
`last_error` or `provider_response` may quote the address), `health_events` (by subscriber
id; never the address). Forgetting clears each of them in one transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key
from scheduler.store.db import dialect_insert, writer
from scheduler.store.erasure_key import erased_key
from scheduler.store.schema import (
    SuppressionReason,
    deliveries,
    health_events,
    memberships,
    subscribers,
    suppressions,
    utcnow,
)

_ADDRESS = re.compile(r"[^\s<>()\[\]@,;:\"']+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
ERASED = "[address removed]"
# Rows per UPDATE when pseudonymizing old deliveries.
_CHUNK = 1000


def _rows(conn: sa.Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def export(engine: Engine, email: str) -> dict[str, Any] | None:
    """Everything the store holds about the person with this address, or None."""
    key = address_key(email)
    s, m, d, e = subscribers.c, memberships.c, deliveries.c, health_events.c
    with engine.connect() as conn:
        person = conn.execute(sa.select(subscribers).where(s.email_key == key)).first()
        suppression = conn.execute(
            sa.select(suppressions.c.reason, suppressions.c.created_at).where(
                suppressions.c.email_key == key
            )
        ).first()
        if person is None:
            if suppression is None:
                return None
            return {
                "email": email,
                "subscriber": None,
                "suppression": dict(suppression._mapping),
            }
        sid = person.id
        return {
            "email": person.email,
            "subscriber": {k: v for k, v in person._mapping.items() if k != "email_key"},
            "memberships": _rows(
                conn,
                sa.select(m.list_name, m.status, m.source, m.subscribed_at, m.updated_at)
                .where(m.subscriber_id == sid)
                .order_by(m.list_name),
            ),
            "suppression": dict(suppression._mapping) if suppression else None,
            "deliveries": _rows(
                conn,
                sa.select(
                    d.occurrence_id,
                    d.channel,
                    d.language,
                    d.state,
                    d.attempts,
                    d.message_id,
                    d.last_error,
                    d.created_at,
                    d.sent_at,
                )
                .where(d.subscriber_id == sid)
                .order_by(d.id),
            ),
            "reports": _rows(
                conn,
                sa.select(e.source, e.kind, e.occurrence_id, e.list_name, e.detail, e.created_at)
                .where(e.subscriber_id == sid)
                .order_by(e.id),
            ),
        }


@dataclass(frozen=True, slots=True)
class Forgotten:
    found: bool  # a subscriber row existed
    deliveries: int  # delivery rows cut loose from the person
    memberships: int


def pseudonym(subscriber_id: int) -> str:
    """What a delivery's `recipient` becomes: unique per person, as the ledger needs, and
    meaningless without the key."""
    return "erased:" + erased_key(f"subscriber:{subscriber_id}").removeprefix("erased:")[:32]


def scrub(text: str | None, email: str | None = None) -> str | None:
    """`text` without email addresses (an SMTP reply often quotes the recipient)."""
    if text is None:
        return None
    if email:
        text = re.sub(re.escape(email), ERASED, text, flags=re.IGNORECASE)
    return _ADDRESS.sub(ERASED, text)


def forget(engine: Engine, email: str) -> Forgotten:
    """Erase the person with this address everywhere, keeping only a keyed hash of the
    address in suppressions so that no import adds them back."""
    key = address_key(email)
    s, m, d = subscribers.c, memberships.c, deliveries.c
    with writer(engine).begin() as conn:
        row = conn.execute(sa.select(s.id, s.email).where(s.email_key == key)).first()
        cut = removed = 0
        if row is not None:
            sid, stored_email = int(row.id), str(row.email)
            cut = _pseudonymize(conn, d.subscriber_id == sid, emails={sid: stored_email})
            conn.execute(
                sa.update(health_events)
                .where(health_events.c.subscriber_id == sid)
                .values(subscriber_id=None)
            )
            removed = len(
                conn.execute(
                    sa.delete(memberships).where(m.subscriber_id == sid).returning(m.list_name)
                ).all()
            )
            conn.execute(sa.delete(subscribers).where(s.id == sid))
        conn.execute(sa.delete(suppressions).where(suppressions.c.email_key == key))
        conn.execute(
            dialect_insert(conn, suppressions)
            .values(
                email_key=erased_key(key),
                reason=SuppressionReason.FORGOTTEN.value,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
    return Forgotten(found=row is not None, deliveries=cut, memberships=removed)


def _pseudonymize(
    conn: sa.Connection,
    where: sa.ColumnElement[bool],
    *,
    emails: Mapping[int, str] | None = None,
) -> int:
    d = deliveries.c
    rows = conn.execute(
        sa.select(d.id, d.subscriber_id, d.last_error, d.provider_response).where(where)
    ).all()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        conn.execute(
            sa.update(deliveries)
            .where(d.id == sa.bindparam("b_id"))
            .values(
                subscriber_id=None,
                recipient=sa.bindparam("b_recipient"),
                last_error=sa.bindparam("b_error"),
                provider_response=sa.bindparam("b_response"),
            ),
            [
                {
                    "b_id": r.id,
                    "b_recipient": pseudonym(int(r.subscriber_id)),
                    "b_error": scrub(r.last_error, (emails or {}).get(int(r.subscriber_id))),
                    "b_response": scrub(
                        r.provider_response, (emails or {}).get(int(r.subscriber_id))
                    ),
                }
                for r in chunk
            ],
        )
    return len(rows)


def apply_retention(
    engine: Engine, *, older_than: dt.timedelta, now: dt.datetime | None = None
) -> int:
    """Email deliveries created before `now - older_than` lose the link to their person
    (subscriber id, recipient, quoted addresses); so do old bounce reports. Returns how
    many deliveries were changed. Counts per occurrence and state stay as they were."""
    cutoff = (now or utcnow()) - older_than
    d, e = deliveries.c, health_events.c
    with writer(engine).begin() as conn:
        changed = _pseudonymize(conn, (d.created_at < cutoff) & d.subscriber_id.is_not(None))
        conn.execute(
            sa.update(health_events)
            .where((e.created_at < cutoff) & e.subscriber_id.is_not(None))
            .values(subscriber_id=None)
        )
    return changed
