"""Subscribers, their list memberships and the global suppression list.

An import never undoes a person's choice: an unsubscribed, bounced or complained membership
stays so, and a suppressed address is never added. Only a person (through `unsubscribe`) or
a bounce/complaint (through `suppress`) changes those.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key, normalize_address
from scheduler.audience.csvfile import SubscriberRow
from scheduler.gc_pause import paused_gc
from scheduler.store import import_lanes, pg_import
from scheduler.store.db import dialect_insert, refresh_statistics, writer
from scheduler.store.erasure_key import erased_keys
from scheduler.store.import_batch import Batch, anyone_erased, attributes_json
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

# Rows per transaction: big enough that the per-statement costs vanish, small enough that
# a writer never holds the lock for long (SQLite) and a crash loses little.
BATCH_SIZE = 5000


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


# New members after which an import refreshes PostgreSQL's statistics (autovacuum would,
# within a minute or so, if it is on; a send may start sooner).
ANALYZE_AFTER = 1000


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

    SQLite merges in Python (same process, no round trips); PostgreSQL copies each batch
    into a staging table and merges in SQL (`store.pg_import`), by the same rules, on
    several connections at once when there is more than one batch (`store.import_lanes`).
    """
    status = MembershipStatus(status)
    if status in FINAL_STATUSES:
        raise ValueError(f"cannot import members as {status.value!r}")
    with writer(engine).begin() as conn:
        _ensure_list(conn, list_name)
    counts: Counter[str] = Counter()
    with paused_gc():
        batches = _batches(rows, batch_size, counts)
        # Two batches or more on PostgreSQL: merged on several connections at once. One
        # batch (a sign-up, a small list) is merged here, and its subscribers are numbered
        # in file order.
        head = list(islice(batches, 2))
        batches = chain(head, batches)
        if engine.dialect.name == "postgresql" and len(head) > 1:
            lanes = import_lanes.Lanes(engine, list_name, source, status)
            import_lanes.run(lanes, batches, progress)
            counts.update(lanes.counts)
        else:
            done = 0
            for unique, n in batches:
                if engine.dialect.name == "postgresql":
                    with writer(engine).connect() as conn:
                        pg_import.merge_batch(conn, list_name, unique, source, status, counts)
                else:
                    with writer(engine).begin() as conn:
                        _import_batch(conn, list_name, unique, source, status, counts)
                done += n
                if progress is not None:
                    progress(done)
    if counts["inserted"] >= ANALYZE_AFTER:
        # A send soon after (a sync at the instant) would be planned for the list as it was.
        refresh_statistics(engine, ["subscribers", "memberships"])
    return ImportReport(list_name=list_name, **counts)


def _batches(
    rows: Iterable[SubscriberRow], batch_size: int, counts: Counter[str]
) -> Iterator[tuple[Batch, int]]:
    """Each batch of `batch_size` rows, each address once, with its number of input rows."""
    iterator = iter(rows)
    while batch := list(islice(iterator, batch_size)):
        unique: Batch = {}
        for row in batch:
            email = normalize_address(row.email)
            # address_key(row.email), from the address normalized once
            if unique.setdefault(email.lower(), (email, row))[1] is not row:
                counts["unchanged"] += 1  # repeated in the input
        yield unique, len(batch)


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
    unique: Batch,
    source: str,
    status: MembershipStatus,
    counts: Counter[str],
) -> None:
    """SQLite: read what is stored for the batch, merge in Python, write with executemany
    (plain SQL: SQLAlchemy's per-row parameter handling cost more than SQLite's work)."""
    keys = list(unique)
    # An erased person is suppressed under a keyed hash of their address, not the address;
    # the hashes are worked out only when there is an erasure to find (an index look-up).
    erased: dict[str, str] = {}
    if anyone_erased(conn):
        erased = dict(zip(erased_keys(keys), keys, strict=True))
    hits = conn.exec_driver_sql(_SQLITE_SUPPRESSED, (json.dumps(keys + list(erased)),))
    suppressed = {erased.get(key, key) for (key,) in hits}
    stored = _stored(conn, list_name, keys)

    upserts: list[tuple[Any, ...]] = []
    joining: list[str] = []  # keys that need a membership row inserted or promoted
    for key, (email, row) in unique.items():
        old = stored.get(key)
        if key in suppressed:
            counts["skipped_suppressed"] += 1
            continue
        if old is not None and old.status in FINAL_STATUSES:
            counts["skipped_unsubscribed"] += 1
            continue
        values = _merged(email, row, old)
        changed = old is None or values != (
            old.email,
            old.name,
            old.language,
            old.timezone,
            old.attributes,
        )
        if changed:
            _, name, language, timezone, attributes = values
            upserts.append((key, email, name, language, timezone, attributes_json(attributes)))
        if old is None or old.status is None:
            joining.append(key)
            counts["inserted"] += 1
        elif old.status == MembershipStatus.UNCONFIRMED and status == MembershipStatus.ACTIVE:
            joining.append(key)
            counts["updated"] += 1
        else:
            counts["updated" if changed else "unchanged"] += 1
    if upserts:
        conn.exec_driver_sql(_SQLITE_SUBSCRIBERS, upserts)
    if joining:
        conn.exec_driver_sql(
            _SQLITE_MEMBERSHIPS, (list_name, status.value, source, json.dumps(joining))
        )


def _merged(
    email: str, row: SubscriberRow, old: _Stored | None
) -> tuple[str, str | None, str, str | None, dict[str, Any]]:
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
    found = conn.exec_driver_sql(_SQLITE_STORED, (list_name, json.dumps(keys)))
    return {
        r[0]: _Stored(r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {}, r[7])
        for r in found
    }


# A batch's keys go in as one JSON array parameter (json_each), not one parameter each:
# no variable limit, and nothing for SQLAlchemy to expand. The timestamps are the
# database's (what func.now() is on SQLite), not per-row parameters.
_SQLITE_SUPPRESSED = """
SELECT email_key FROM suppressions WHERE email_key IN (SELECT value FROM json_each(?))
"""
_SQLITE_STORED = """
SELECT s.email_key, s.id, s.email, s.name, s.language, s.timezone, s.attributes, m.status
FROM subscribers AS s
LEFT JOIN memberships AS m ON m.subscriber_id = s.id AND m.list_name = ?
WHERE s.email_key IN (SELECT value FROM json_each(?))
"""
# COALESCE: a row inserted by someone else since we looked keeps its name and zone.
_SQLITE_SUBSCRIBERS = """
INSERT INTO subscribers (email_key, email, name, language, timezone, attributes,
                         created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)
ON CONFLICT (email_key) DO UPDATE SET
    email = excluded.email,
    name = coalesce(excluded.name, subscribers.name),
    language = excluded.language,
    timezone = coalesce(excluded.timezone, subscribers.timezone),
    attributes = excluded.attributes,
    updated_at = CURRENT_TIMESTAMP
"""
# The WHERE re-checks in the database what we decided from our read: only an unconfirmed
# membership may become active, so a concurrent unsubscribe always wins.
_SQLITE_MEMBERSHIPS = """
INSERT INTO memberships (subscriber_id, list_name, status, source, subscribed_at, updated_at)
SELECT id, ?1, ?2, ?3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
FROM subscribers WHERE email_key IN (SELECT value FROM json_each(?4))
ON CONFLICT (subscriber_id, list_name) DO UPDATE SET
    status = excluded.status, source = excluded.source, updated_at = CURRENT_TIMESTAMP
WHERE memberships.status = 'unconfirmed' AND excluded.status = 'active'
"""


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


def more_active_than(engine: Engine, list_names: Sequence[str], n: int) -> bool:
    """Whether the lists have more than `n` active memberships (reads at most n + 1)."""
    if not list_names:
        return False
    first = (
        sa.select(sa.literal(1))
        .where(
            memberships.c.list_name.in_(list_names),
            memberships.c.status == MembershipStatus.ACTIVE.value,
        )
        .limit(n + 1)
        .subquery()
    )
    with engine.connect() as conn:
        found = conn.scalar(sa.select(sa.func.count()).select_from(first)) or 0
    return found > n


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
