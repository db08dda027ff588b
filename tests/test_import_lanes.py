"""Imports of several batches: on PostgreSQL they merge on several connections at once
(`store.import_lanes`), and must come out exactly as one batch after another would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience import SubscriberRow
from scheduler.listhealth.privacy import forget
from scheduler.store import (
    ImportReport,
    import_rows,
    list_counts,
    memberships_of,
    subscriber,
    suppress,
    unsubscribe,
)


def row(email: str, name: str | None = None, **kw: object) -> SubscriberRow:
    return SubscriberRow(email=email, name=name, language=kw.pop("language", "en"), **kw)  # type: ignore[arg-type]


def lane_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("import-lane")]


def test_many_batches_merge_as_one_after_another(store_engine: Engine) -> None:
    first = [row("gone@example.org"), row("left@example.org")]
    import_rows(store_engine, "members", first, source="t")
    assert unsubscribe(store_engine, "left@example.org", "members")
    suppress(store_engine, "bounced@example.org", reason="bounced")
    forget(store_engine, "gone@example.org")

    rows = [row(f"p{i}@example.org", f"P {i}") for i in range(40)]
    rows[3] = row("ana@example.org")  # no name yet ...
    rows[29] = row("ANA@example.org", "Ana", attributes={"city": "Quito"})  # ... named later
    rows[31] = row("Ana@Example.org", language="es", language_defaulted=True)  # keeps both
    rows[5] = row("left@example.org", "Left")
    rows[17] = row("bounced@example.org")
    rows[23] = row("gone@example.org")
    rows[24] = row("p0@example.org", "P 0")  # repeated, same details, another batch
    seen: list[int] = []
    report = import_rows(
        store_engine, "members", rows, source="file", batch_size=4, progress=seen.append
    )

    # Same counts as one batch after another (SQLite merges that way, and it is the same test).
    assert report == ImportReport(
        list_name="members",
        inserted=34,  # 40 rows less ana's two repeats, p0's repeat and the three refused
        updated=1,  # ana named
        unchanged=2,  # ana's defaulted language changes nothing; p0 again
        skipped_suppressed=2,  # bounced, and the erased address
        skipped_unsubscribed=1,
    )
    assert seen == sorted(seen) and seen[-1] == 40 and len(seen) == 10
    ana = subscriber(store_engine, "ana@example.org")
    assert ana is not None
    assert (ana["name"], ana["language"], ana["attributes"]) == ("Ana", "en", {"city": "Quito"})
    assert memberships_of(store_engine, "left@example.org") == {"members": "unsubscribed"}
    assert subscriber(store_engine, "bounced@example.org") is None
    assert subscriber(store_engine, "gone@example.org") is None
    assert list_counts(store_engine, "members")["members"]["active"] == 34
    assert lane_threads() == []


@pytest.mark.postgres
def test_a_failing_batch_stops_the_import_and_keeps_what_committed(pg_engine: Engine) -> None:
    store_engine = pg_engine
    rows = [row(f"p{i}@example.org") for i in range(30)]
    rows[21] = row("bad@example.org", language="x" * 40)  # longer than the column
    with pytest.raises(sa.exc.DataError):
        import_rows(store_engine, "members", rows, source="file", batch_size=3)
    assert lane_threads() == []
    # Each batch is all or nothing: the bad one's neighbours in its lane are not half there.
    with store_engine.connect() as conn:
        stored = set(conn.scalars(sa.text("SELECT email FROM subscribers")))
    assert "bad@example.org" not in stored
    assert {"p0@example.org", "p1@example.org", "p2@example.org"} <= stored
    # Fixed and run again, the import finishes what the first run left.
    rows[21] = row("bad@example.org")
    again = import_rows(store_engine, "members", rows, source="file", batch_size=3)
    assert again.inserted == 30 - len(stored)
    assert again.unchanged == len(stored)
    assert list_counts(store_engine, "members")["members"]["active"] == 30


@pytest.mark.postgres
def test_batches_merge_while_the_file_is_still_read(pg_engine: Engine) -> None:
    """`lists import` and a list sync hand the rows over as they are read (`iter_csv`): the
    first batches are in the store before the last row is read, so the server's merge and
    the reading share the machine's cores instead of taking turns."""
    seen_while_reading: list[int] = []

    def reading() -> Iterator[SubscriberRow]:
        for i in range(40):
            if i == 30:  # ten batches of 3 handed over; wait (bounded) for the first to land
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    with pg_engine.connect() as conn:
                        n = conn.scalar(sa.text("SELECT count(*) FROM subscribers")) or 0
                    if n:
                        break
                    time.sleep(0.02)
                seen_while_reading.append(int(n))
            yield row(f"p{i}@example.org")

    report = import_rows(pg_engine, "members", reading(), source="file", batch_size=3)
    assert seen_while_reading and seen_while_reading[0] >= 3
    assert report.inserted == 40
    assert list_counts(pg_engine, "members")["members"]["active"] == 40


@pytest.mark.postgres
def test_an_erasure_during_the_import_holds_for_the_rows_after_it(pg_engine: Engine) -> None:
    """Whether anyone was erased is asked again for each batch (an erased address is found
    only by its keyed hash, worked out only then): a person erased while a long import runs
    is not added back by a later row of that import."""

    def reading() -> Iterator[SubscriberRow]:
        for i in range(30):
            if i == 12:  # four batches handed over, nobody erased so far
                forget(pg_engine, "p20@example.org")
            yield row(f"p{i}@example.org")

    report = import_rows(pg_engine, "members", reading(), source="file", batch_size=3)
    assert report.skipped_suppressed == 1
    assert report.inserted == 29
    assert subscriber(pg_engine, "p20@example.org") is None


@pytest.mark.postgres
def test_each_lane_makes_its_staging_table_once(pg_engine: Engine) -> None:
    """A lane keeps its connection for the whole import and its session's staging table
    from the first batch on: per batch it sends the COPY, the merge and the COMMIT, not a
    checkout ping, a CREATE TABLE and a savepoint besides (each round trip is a wait for
    the interpreter lock while the file is parsed)."""
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(pg_engine, "before_cursor_execute", seen)
    try:
        report = import_rows(
            pg_engine,
            "members",
            [row(f"p{i}@example.org") for i in range(60)],
            source="file",
            batch_size=3,
        )
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", seen)
    assert report.inserted == 60
    creates = [s for s in statements if "CREATE TEMPORARY TABLE" in s]
    merges = [s for s in statements if "WITH incoming AS" in s]
    assert 20 < len(merges) <= 40  # 20 batches, each split in two lanes (a part may be empty)
    assert 1 <= len(creates) <= 2  # once per lane's session, whatever the batches
    assert not [s for s in statements if s.lstrip().upper().startswith("SAVEPOINT")]
