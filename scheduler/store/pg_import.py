"""PostgreSQL imports: each batch is COPYed into a staging table and merged in one statement.

The rules are those of `store.subscribers` (which merges in Python on SQLite): a suppressed
address (or an erased one, by its keyed hash) is never added, an unsubscribed, bounced or
complained membership stays so, an empty name or time zone keeps the stored one, attributes
are added to, a defaulted language keeps the chosen one, and only an unconfirmed
membership may become active. The statement reports how many rows went which way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from typing import Any, cast

import psycopg
import sqlalchemy as sa

from scheduler.store.erasure_key import erased_keys
from scheduler.store.import_batch import Batch, anyone_erased, attributes_json
from scheduler.store.schema import FINAL_STATUSES, MembershipStatus

# Per session (a pooled connection keeps it); emptied at the end of each transaction.
_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_staging (
    k text NOT NULL,       -- address_key
    e text NOT NULL,       -- the address, normalized
    n text,                -- name, NULL: keep the stored one
    l text NOT NULL,       -- language
    t text,                -- time zone, NULL: keep the stored one
    a jsonb NOT NULL,      -- attributes to add
    d boolean NOT NULL,    -- the language is the default (the file gave none)
    x text                 -- the key an erasure of this address left (NULL: nobody erased)
) ON COMMIT DELETE ROWS
"""
_COPY = "COPY import_staging (k, e, n, l, t, a, d, x) FROM STDIN"

_FINAL = ", ".join(f"'{s.value}'" for s in sorted(FINAL_STATUSES))

# Every sub-statement sees the snapshot from before the statement, like the Python merge
# sees its read. _READ looks each incoming row up; a merge adds its writes, then _COUNTS.
_READ = f"""
WITH incoming AS (
    SELECT i.*, s.id AS sid, s.email AS o_e, s.name AS o_n, s.language AS o_l,
           s.timezone AS o_t, s.attributes AS o_a, m.status AS o_status,
           EXISTS (SELECT 1 FROM suppressions p WHERE p.email_key IN (i.k, i.x)) AS suppressed
    FROM import_staging i
    -- LATERAL ... LIMIT 1: one index look-up per row of the batch, whatever the planner
    -- believes of the tables' sizes (their statistics lag behind a big import, and a hash
    -- join would read every subscriber and membership for each batch).
    LEFT JOIN LATERAL (
        SELECT id, email, name, language, timezone, attributes FROM subscribers
        WHERE email_key = i.k LIMIT 1
    ) s ON true
    LEFT JOIN LATERAL (
        SELECT status FROM memberships
        WHERE subscriber_id = s.id AND list_name = %(list)s LIMIT 1
    ) m ON true
),
merged AS (
    SELECT k, e, sid, o_e, o_n, o_l, o_t, o_a, o_status,
           coalesce(n, o_n) AS new_n,
           CASE WHEN d AND sid IS NOT NULL THEN o_l ELSE l END AS new_l,
           coalesce(t, o_t) AS new_t,
           coalesce(o_a, '{{}}'::jsonb) || a AS new_a
    FROM incoming
    WHERE NOT suppressed AND (o_status IS NULL OR o_status NOT IN ({_FINAL}))
),
kept AS (
    SELECT *,
           sid IS NULL OR (e, new_n, new_l, new_t, new_a)
               IS DISTINCT FROM (o_e, o_n, o_l, o_t, o_a) AS changed,
           o_status IS NULL OR (o_status = 'unconfirmed' AND %(status)s = 'active') AS joining
    FROM merged
),
"""

# The writes' shared parts: the rules for a stored subscriber or membership met again are
# written once, for both merges below.
_INSERT_SUBSCRIBERS = """INSERT INTO subscribers (email_key, email, name, language, timezone,
                             attributes, created_at, updated_at)"""
_NEW_SUBSCRIBER = "k, e, new_n, new_l, new_t, new_a, now(), now()"
_ON_SUBSCRIBER_CONFLICT = """ON CONFLICT (email_key) DO UPDATE SET
        email = excluded.email,
        name = coalesce(excluded.name, subscribers.name),
        language = excluded.language,
        timezone = coalesce(excluded.timezone, subscribers.timezone),
        attributes = excluded.attributes,
        updated_at = now()"""
_INSERT_MEMBERSHIPS = """INSERT INTO memberships (subscriber_id, list_name, status, source,
                             subscribed_at, updated_at)"""
_NEW_MEMBERSHIP = "%(list)s, %(status)s, %(source)s, now(), now()"
_ON_MEMBERSHIP_CONFLICT = """ON CONFLICT (subscriber_id, list_name) DO UPDATE SET
        status = excluded.status, source = excluded.source, updated_at = now()
    WHERE memberships.status = 'unconfirmed' AND excluded.status = 'active'"""

# The merge that is always right: the ON CONFLICT clauses re-check against what others
# wrote meanwhile (COALESCE keeps a name or zone someone else stored, the membership WHERE
# lets a concurrent unsubscribe win).
_SAFE_WRITES = f"""
saved AS (
    {_INSERT_SUBSCRIBERS}
    SELECT {_NEW_SUBSCRIBER} FROM kept WHERE changed
    {_ON_SUBSCRIBER_CONFLICT}
    RETURNING id, email_key
),
joined AS (
    {_INSERT_MEMBERSHIPS}
    SELECT coalesce(kept.sid, saved.id), {_NEW_MEMBERSHIP}
    FROM kept LEFT JOIN saved ON saved.email_key = kept.k
    WHERE kept.joining
    {_ON_MEMBERSHIP_CONFLICT}
)
"""

# The merge tried first, for the usual import of mostly new addresses: an address the read
# did not find is added by a plain INSERT, without ON CONFLICT's speculative insertion (an
# index probe and an extra WAL record a row; ~1.3 us of a new member's ~25 us), and so is
# its membership. If someone added one of those addresses since the read, the unique index
# raises and the batch is merged again with _SAFE_WRITES.
_FAST_WRITES = f"""
fresh AS (
    {_INSERT_SUBSCRIBERS}
    SELECT {_NEW_SUBSCRIBER} FROM kept WHERE sid IS NULL
    RETURNING id
),
saved AS (
    {_INSERT_SUBSCRIBERS}
    SELECT {_NEW_SUBSCRIBER} FROM kept WHERE sid IS NOT NULL AND changed
    {_ON_SUBSCRIBER_CONFLICT}
),
joined_fresh AS (
    -- A subscriber made by this statement is seen by no one else yet, so no one can have
    -- made it a member of anything: no conflict to look for.
    {_INSERT_MEMBERSHIPS}
    SELECT id, {_NEW_MEMBERSHIP} FROM fresh
),
joined AS (
    {_INSERT_MEMBERSHIPS}
    SELECT sid, {_NEW_MEMBERSHIP} FROM kept WHERE sid IS NOT NULL AND joining
    {_ON_MEMBERSHIP_CONFLICT}
)
"""

_COUNTS = f"""
SELECT
    (SELECT count(*) FROM incoming WHERE suppressed),
    (SELECT count(*) FROM incoming WHERE NOT suppressed AND o_status IN ({_FINAL})),
    count(*) FILTER (WHERE o_status IS NULL),
    count(*) FILTER (WHERE o_status IS NOT NULL AND (joining OR changed)),
    count(*) FILTER (WHERE o_status IS NOT NULL AND NOT joining AND NOT changed)
FROM kept
"""

_MERGE_FAST = _READ + _FAST_WRITES + _COUNTS
_MERGE_SAFE = _READ + _SAFE_WRITES + _COUNTS
_EMAIL_KEY = "uq_subscribers_email_key"


def merge_batch(
    conn: sa.Connection,
    list_name: str,
    unique: Batch,
    source: str,
    status: MembershipStatus,
    counts: Counter[str],
    *,
    someone_erased: bool | None = None,
) -> None:
    """Merge one batch (distinct keys) into the list in a transaction of its own on `conn`
    (which must not be in one), adding to `counts`. `someone_erased` is `anyone_erased`
    when the caller has just asked; None asks here.

    Round trips are few (COPY, merge, COMMIT): a lane of `import_lanes` waits for the
    interpreter lock after each one while the file is parsed, and with a round trip for
    every step that wait was as long as the server's work."""
    if someone_erased is None:
        someone_erased = anyone_erased(conn)
        conn.commit()
    erased = erased_keys(list(unique)) if someone_erased else None
    params = {"list": list_name, "status": status.value, "source": source}
    try:
        with conn.begin():
            _stage(conn, unique, erased)
            found = conn.exec_driver_sql(_MERGE_FAST, params).one()
    except sa.exc.IntegrityError as error:
        if not _added_meanwhile(error):
            raise
        # The failed transaction took the staged rows with it: staged again, merged with
        # the ON CONFLICT rules. Rare (a sign-up of the same address in the same instant).
        with conn.begin():
            _stage(conn, unique, erased)
            found = conn.exec_driver_sql(_MERGE_SAFE, params).one()
    conn.info[_STAGED] = True  # committed: the table stays for the session
    suppressed, unsubscribed, inserted, updated, unchanged = (int(n) for n in found)
    counts["skipped_suppressed"] += suppressed
    counts["skipped_unsubscribed"] += unsubscribed
    counts["inserted"] += inserted
    counts["updated"] += updated
    counts["unchanged"] += unchanged


# Key in the pooled connection's `info`: the staging table exists in its session.
_STAGED = "scheduler_import_staging"


def _stage(conn: sa.Connection, unique: Batch, erased: Iterable[str | None] | None) -> None:
    """COPY the batch into the session's staging table (made on the session's first use;
    a rolled back first transaction takes it away again, so the mark is set on commit)."""
    if not conn.info.get(_STAGED):
        conn.exec_driver_sql(_STAGING)
    driver = cast(Any, conn.connection.driver_connection)  # psycopg.Connection
    xs: Iterable[str | None] = repeat(None) if erased is None else erased
    with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
        for (key, (email, row)), x in zip(unique.items(), xs, strict=False):
            copy.write_row(
                (
                    key,
                    email,
                    row.name,
                    row.language,
                    row.timezone,
                    attributes_json(row.attributes),
                    row.language_defaulted,
                    x,
                )
            )


def _added_meanwhile(error: sa.exc.IntegrityError) -> bool:
    """Whether the fast merge failed because an address it meant to add was added by
    someone else after its read (a sign-up, another import of the same address)."""
    orig = error.orig
    return (
        isinstance(orig, psycopg.errors.UniqueViolation) and orig.diag.constraint_name == _EMAIL_KEY
    )
