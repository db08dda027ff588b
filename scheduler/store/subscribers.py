"""Subscribers, their list memberships and the global suppression list.

An import never undoes a person's choice: an unsubscribed, bounced or complained membership
stays so, and a suppressed address is never added. Only a person (through `unsubscribe`) or
a bounce/complaint (through `suppress`) changes those.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key, normalize_address
from scheduler.audience.csvfile import SubscriberRow
from scheduler.listhealth.erasure_key import erased_key
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import (
    FINAL_STATUSES,
    MembershipStatus,
    SuppressionReason,
    lists,
    memberships,
    subscribers,
    suppressions,
    utcnow,
)

# Rows per transaction: big enough that executemany dominates, small enough that the IN
# lists stay under SQLite's variable limit and a writer never holds the lock for long.
BATCH_SIZE = 2000

# The database's clock (transaction start on PostgreSQL; whole seconds on SQLite).
_NOW = sa.func.now()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What an import did, counted per input row, relative to the one list imported into."""

    list_name: str
    inserted: int = 0  # newly a member of the list (the subscriber may have existed)
    updated: int = 0  # already a member; details changed, or unconfirmed became active
    unchanged: int = 0  # already a member with the same details (or repeated in the input)
    skipped_suppressed: int = 0  # address on the global suppression list
    skipped_unsubscribed: int = 0  # membership is unsubscribed, bounced or complained

    @property
    def total(self) -> int:
        return (
            self.inserted
            + self.updated
            + self.unchanged
            + self.skipped_suppressed
            + self.skipped_unsubscribed
        )


class Recipient(NamedTuple):
    subscriber_id: int
    email: str
    name: str | None
    language: str


def import_rows(
    engine: Engine,
    list_name: str,
    rows: Iterable[SubscriberRow],
    *,
    source: str,
    status: MembershipStatus | str = MembershipStatus.ACTIVE,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Add or update `rows` as members of `list_name`, in batches of `batch_size`.

    Each batch commits on its own, so an interrupted import keeps what it did and a
    re-run finishes it. Existing details are merged: an empty name or time zone keeps the
    stored one, attributes are added to, and a defaulted language keeps the chosen one.
    `progress` is called with the number of rows handled so far after each batch.
    """
    status = MembershipStatus(status)
    if status in FINAL_STATUSES:
        raise ValueError(f"cannot import members as {status.value!r}")
    with writer(engine).begin() as conn:
        _ensure_list(conn, list_name)
    counts: Counter[str] = Counter()
    done = 0
    iterator = iter(rows)
    while batch := list(islice(iterator, batch_size)):
        with writer(engine).begin() as conn:
            _import_batch(conn, list_name, batch, source, status, counts)
        done += len(batch)
        if progress is not None:
            progress(done)
    return ImportReport(list_name=list_name, **counts)


class _Stored(NamedTuple):
    id: int
    email: str
    name: str | None
    language: str
    timezone: str | None
    attributes: dict[str, Any]
    status: str | None  # membership in the list being imported, if any


def _import_batch(
    conn: sa.Connection,
    list_name: str,
    batch: list[SubscriberRow],
    source: str,
    status: MembershipStatus,
    counts: Counter[str],
) -> None:
    unique: dict[str, SubscriberRow] = {}
    for row in batch:
        if unique.setdefault(row.key, row) is not row:
            counts["unchanged"] += 1
    keys = list(unique)
    # An erased person is suppressed under a keyed hash of their address, not the address.
    erased = {erased_key(key): key for key in keys}
    hits = conn.scalars(
        sa.select(suppressions.c.email_key).where(
            _among(conn, suppressions.c.email_key, keys + list(erased))
        )
    )
    suppressed = {erased.get(key, key) for key in hits}
    stored = _stored(conn, list_name, keys)

    upserts: list[dict[str, Any]] = []
    joining: list[str] = []  # keys that need a membership row inserted or promoted
    for key, row in unique.items():
        old = stored.get(key)
        if key in suppressed:
            counts["skipped_suppressed"] += 1
            continue
        if old is not None and old.status in FINAL_STATUSES:
            counts["skipped_unsubscribed"] += 1
            continue
        values = _merged(row, old)
        changed = old is None or values != (
            old.email,
            old.name,
            old.language,
            old.timezone,
            old.attributes,
        )
        if changed:
            email, name, language, timezone, attributes = values
            upserts.append(
                {
                    "email_key": key,
                    "email": email,
                    "name": name,
                    "language": language,
                    "timezone": timezone,
                    "attributes": attributes,
                }
            )
        if old is None or old.status is None:
            joining.append(key)
            counts["inserted"] += 1
        elif old.status == MembershipStatus.UNCONFIRMED and status == MembershipStatus.ACTIVE:
            joining.append(key)
            counts["updated"] += 1
        else:
            counts["updated" if changed else "unchanged"] += 1

    postgres = conn.dialect.name == "postgresql"
    if upserts and postgres:
        _pg_subscriber_upsert(conn, upserts)
    elif upserts:
        # Plain executemany, no RETURNING: with RETURNING SQLAlchemy sends multi-row VALUES
        # statements, which psycopg parses slower than it pipelines one row at a time.
        conn.execute(_subscriber_upsert(conn), upserts)
    if not joining:
        return
    ids = {key: old.id for key, old in stored.items()}
    missing = [key for key in joining if key not in ids]
    if missing:
        query = sa.select(subscribers.c.email_key, subscribers.c.id)
        found = conn.execute(query.where(_among(conn, subscribers.c.email_key, missing)))
        ids.update({key: sid for key, sid in found})
    if postgres:
        _pg_membership_upsert(conn, [ids[key] for key in joining], list_name, status, source)
        return
    conn.execute(
        _membership_upsert(conn),
        [
            {
                "subscriber_id": ids[key],
                "list_name": list_name,
                "status": status.value,
                "source": source,
            }
            for key in joining
        ],
    )


def _merged(
    row: SubscriberRow, old: _Stored | None
) -> tuple[str, str | None, str, str | None, dict[str, Any]]:
    email = normalize_address(row.email)
    if old is None:
        return email, row.name, row.language, row.timezone, dict(row.attributes)
    return (
        email,
        row.name if row.name is not None else old.name,
        old.language if row.language_defaulted else row.language,
        row.timezone if row.timezone is not None else old.timezone,
        {**old.attributes, **row.attributes},
    )


def _stored(conn: sa.Connection, list_name: str, keys: list[str]) -> dict[str, _Stored]:
    s, m = subscribers.c, memberships.c
    query = (
        sa.select(
            s.email_key, s.id, s.email, s.name, s.language, s.timezone, s.attributes, m.status
        )
        .select_from(
            subscribers.outerjoin(
                memberships, (m.subscriber_id == s.id) & (m.list_name == list_name)
            )
        )
        .where(_among(conn, s.email_key, keys))
    )
    return {r[0]: _Stored(*r[1:7], r[7]) for r in conn.execute(query)}


def _among(
    conn: sa.Connection, column: sa.ColumnElement[str], values: list[str]
) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL one array parameter instead of thousands."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(sa.String())))
    return column.in_(values)


def _subscriber_upsert(conn: sa.Connection) -> sa.Executable:
    # Timestamps are SQL, not per-row parameters: binding 2 datetimes per row cost more
    # than the rest of the import on SQLite.
    insert = dialect_insert(conn, subscribers).values(created_at=_NOW, updated_at=_NOW)
    new, c = insert.excluded, subscribers.c
    # COALESCE: a row inserted by someone else since we looked keeps its name and zone.
    return insert.on_conflict_do_update(
        index_elements=[c.email_key],
        set_={
            "email": new.email,
            "name": sa.func.coalesce(new.name, c.name),
            "language": new.language,
            "timezone": sa.func.coalesce(new.timezone, c.timezone),
            "attributes": new.attributes,
            "updated_at": _NOW,
        },
    )


def _membership_upsert(conn: sa.Connection) -> sa.Executable:
    insert = dialect_insert(conn, memberships).values(subscribed_at=_NOW, updated_at=_NOW)
    new, c = insert.excluded, memberships.c
    # The WHERE re-checks in the database what we decided from our read: only an
    # unconfirmed membership may become active, so a concurrent unsubscribe always wins.
    return insert.on_conflict_do_update(
        index_elements=[c.subscriber_id, c.list_name],
        set_={"status": new.status, "source": new.source, "updated_at": _NOW},
        where=(c.status == MembershipStatus.UNCONFIRMED.value)
        & (new.status == MembershipStatus.ACTIVE.value),
    )


# PostgreSQL: one statement per batch over arrays (unnest), instead of one row at a time.
# The same upserts as `_subscriber_upsert` and `_membership_upsert` below.
_PG_SUBSCRIBERS = """
INSERT INTO subscribers (email_key, email, name, language, timezone, attributes,
                         created_at, updated_at)
SELECT k, e, n, l, t, a::jsonb, now(), now()
FROM unnest(%(k)s::text[], %(e)s::text[], %(n)s::text[], %(l)s::text[], %(t)s::text[],
            %(a)s::text[]) AS u(k, e, n, l, t, a)
ON CONFLICT (email_key) DO UPDATE SET
    email = excluded.email,
    name = coalesce(excluded.name, subscribers.name),
    language = excluded.language,
    timezone = coalesce(excluded.timezone, subscribers.timezone),
    attributes = excluded.attributes,
    updated_at = now()
"""
_PG_MEMBERSHIPS = """
INSERT INTO memberships (subscriber_id, list_name, status, source, subscribed_at, updated_at)
SELECT s, %(list)s, %(status)s, %(source)s, now(), now()
FROM unnest(%(ids)s::bigint[]) AS u(s)
ON CONFLICT (subscriber_id, list_name) DO UPDATE SET
    status = excluded.status, source = excluded.source, updated_at = now()
WHERE memberships.status = 'unconfirmed' AND excluded.status = 'active'
"""


def _pg_subscriber_upsert(conn: sa.Connection, upserts: list[dict[str, Any]]) -> None:
    conn.exec_driver_sql(
        _PG_SUBSCRIBERS,
        {
            "k": [u["email_key"] for u in upserts],
            "e": [u["email"] for u in upserts],
            "n": [u["name"] for u in upserts],
            "l": [u["language"] for u in upserts],
            "t": [u["timezone"] for u in upserts],
            "a": [json.dumps(u["attributes"]) for u in upserts],
        },
    )


def _pg_membership_upsert(
    conn: sa.Connection, ids: list[int], list_name: str, status: MembershipStatus, source: str
) -> None:
    conn.exec_driver_sql(
        _PG_MEMBERSHIPS,
        {"ids": ids, "list": list_name, "status": status.value, "source": source},
    )


def _ensure_list(conn: sa.Connection, list_name: str) -> None:
    insert = dialect_insert(conn, lists)
    conn.execute(insert.values(name=list_name, created_at=utcnow()).on_conflict_do_nothing())


def list_counts(engine: Engine, list_name: str | None = None) -> dict[str, dict[str, int]]:
    """Members per status for each known list (or just `list_name`), zeros included."""
    names = sa.select(lists.c.name).order_by(lists.c.name)
    query = sa.select(memberships.c.list_name, memberships.c.status, sa.func.count()).group_by(
        memberships.c.list_name, memberships.c.status
    )
    if list_name is not None:
        names = names.where(lists.c.name == list_name)
        query = query.where(memberships.c.list_name == list_name)
    with engine.connect() as conn:
        result = {name: dict.fromkeys(MembershipStatus, 0) for name in conn.scalars(names)}
        for name, status, n in conn.execute(query):
            result[name][status] = n
    return {name: {str(k): v for k, v in by.items()} for name, by in result.items()}


def active_audience(
    engine: Engine, list_names: Iterable[str], *, chunk_size: int = 1000
) -> Iterator[Recipient]:
    """Each subscriber active in any of `list_names`, once, minus suppressions, by id.

    Streams: rows are fetched `chunk_size` at a time while a connection stays open, so
    iterate to the end or close the iterator.
    """
    names = list(dict.fromkeys(list_names))
    if not names:
        return
    s, m = subscribers.c, memberships.c
    member = (
        sa.select(sa.literal(1))
        .where(m.subscriber_id == s.id)
        .where(m.list_name.in_(names))
        .where(m.status == MembershipStatus.ACTIVE.value)
    )
    suppressed = sa.select(sa.literal(1)).where(suppressions.c.email_key == s.email_key)
    query = (
        sa.select(s.id, s.email, s.name, s.language)
        .where(member.exists())
        .where(~suppressed.exists())
        .order_by(s.id)
    )
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk_size).execute(query)
        for sid, email, name, language in result:
            yield Recipient(sid, email, name, language)


def _subscriber_id(conn: sa.Connection, who: int | str) -> int | None:
    if isinstance(who, str):
        query = sa.select(subscribers.c.id).where(subscribers.c.email_key == address_key(who))
    else:
        query = sa.select(subscribers.c.id).where(subscribers.c.id == who)
    return conn.scalar(query)


def unsubscribe(engine: Engine, who: int | str, list_name: str) -> bool:
    """Unsubscribe a subscriber (by id or address) from one list; True if anything changed.

    A subscriber who was never on the list is recorded as unsubscribed from it, so a later
    import does not add them. An unknown address changes nothing and returns False.
    """
    with writer(engine).begin() as conn:
        sid = _subscriber_id(conn, who)
        if sid is None:
            return False
        _ensure_list(conn, list_name)
        now = utcnow()
        insert = dialect_insert(conn, memberships)
        c = memberships.c
        statement = insert.values(
            subscriber_id=sid,
            list_name=list_name,
            status=MembershipStatus.UNSUBSCRIBED.value,
            source="unsubscribe",
            subscribed_at=now,
            updated_at=now,
        ).on_conflict_do_update(
            index_elements=[c.subscriber_id, c.list_name],
            set_={"status": insert.excluded.status, "updated_at": insert.excluded.updated_at},
            where=c.status.in_([MembershipStatus.UNCONFIRMED.value, MembershipStatus.ACTIVE.value]),
        )
        # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT.
        return conn.execute(statement.returning(c.status)).first() is not None


def suppress(
    engine: Engine, email: str, *, reason: SuppressionReason | str = SuppressionReason.MANUAL
) -> bool:
    """Never send to `email` again, on any list; True if it was not suppressed already."""
    with writer(engine).begin() as conn:
        insert = dialect_insert(conn, suppressions)
        statement = insert.values(
            email_key=address_key(email), reason=str(reason), created_at=utcnow()
        ).on_conflict_do_nothing()
        returning = statement.returning(suppressions.c.email_key)
        return conn.execute(returning).first() is not None


def is_suppressed(engine: Engine, email: str) -> bool:
    with engine.connect() as conn:
        query = sa.select(suppressions.c.email_key).where(
            suppressions.c.email_key == address_key(email)
        )
        return conn.scalar(query) is not None


def subscriber(engine: Engine, who: int | str) -> Mapping[str, Any] | None:
    """One subscriber's stored row, by id or address (for tools and tests)."""
    with engine.connect() as conn:
        sid = _subscriber_id(conn, who)
        if sid is None:
            return None
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == sid)).one()
        return dict(row._mapping)


def memberships_of(engine: Engine, who: int | str) -> dict[str, str]:
    """list name -> membership status for one subscriber."""
    with engine.connect() as conn:
        sid = _subscriber_id(conn, who)
        if sid is None:
            return {}
        query = sa.select(memberships.c.list_name, memberships.c.status).where(
            memberships.c.subscriber_id == sid
        )
        return {name: status for name, status in conn.execute(query)}
