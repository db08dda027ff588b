"""The subscriber store, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from scheduler.audience import SubscriberRow, read_csv
from scheduler.store import (
    ImportReport,
    active_audience,
    import_rows,
    list_counts,
    make_engine,
    memberships_of,
    migrate,
    subscriber,
    suppress,
    unsubscribe,
)
from scheduler.store.db import HEAD, alembic_config, current_revision
from scheduler.store.schema import metadata, occurrences

TABLES = {"subscribers", "lists", "memberships", "suppressions", "occurrences", "deliveries"}


def row(email: str, name: str | None = None, language: str = "en", **kw: object) -> SubscriberRow:
    return SubscriberRow(email=email, name=name, language=language, **kw)  # type: ignore[arg-type]


def people(n: int, domain: str = "example.org") -> list[SubscriberRow]:
    return [row(f"person{i}@{domain}", f"Person {i}") for i in range(n)]


def test_migrations_create_the_tables_and_match_the_schema(bare_engine: Engine) -> None:
    migrate(bare_engine)
    migrate(bare_engine)  # a second run is a no-op
    with bare_engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= TABLES
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        # One head, and the database is at it.
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head


def test_a_store_at_head_skips_alembic_and_an_older_one_is_upgraded(bare_engine: Engine) -> None:
    # `migrate` trusts HEAD to skip loading Alembic: it must name the newest migration.
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD
    assert current_revision(bare_engine) is None
    migrate(bare_engine, "0013")
    assert current_revision(bare_engine) == "0013"
    migrate(bare_engine)
    assert current_revision(bare_engine) == HEAD
    with bare_engine.connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("suppressions")}
        waves = next(
            i
            for i in sa.inspect(conn).get_indexes("deliveries")
            if i["name"] == "ix_deliveries_occurrence_state_due"
        )
    assert "ix_suppressions_erased" in indexes  # 0014 ran
    # 0015 ran: the waves index holds only rows with a due_at.
    where = waves.get("dialect_options", {})
    assert "due_at IS NOT NULL" in str(
        where.get("sqlite_where", where.get("postgresql_where", ""))
    ), waves


def test_import_then_reimport_is_idempotent(store_engine: Engine) -> None:
    seen: list[int] = []
    first = import_rows(
        store_engine, "members", people(5), source="test", batch_size=2, progress=seen.append
    )
    assert first == ImportReport(list_name="members", inserted=5)
    assert seen == [2, 4, 5]
    again = import_rows(store_engine, "members", people(5), source="test")
    assert again == ImportReport(list_name="members", unchanged=5)
    assert list_counts(store_engine)["members"]["active"] == 5


def test_upsert_updates_details_but_keeps_what_the_file_leaves_out(store_engine: Engine) -> None:
    import_rows(
        store_engine,
        "members",
        [row("Ana@Example.org", "Ana", "es", timezone="Europe/Madrid", attributes={"city": "Q"})],
        source="first",
    )
    report = import_rows(
        store_engine,
        "members",
        [row("ana@EXAMPLE.org", "Ana Pérez", language_defaulted=True, attributes={"chapter": "n"})],
        source="second",
    )
    assert report == ImportReport(list_name="members", updated=1)
    ana = subscriber(store_engine, "ANA@example.org")
    assert ana is not None
    assert ana["name"] == "Ana Pérez"
    assert ana["email"] == "ana@example.org"
    assert ana["language"] == "es"  # a defaulted language does not override a chosen one
    assert ana["timezone"] == "Europe/Madrid"
    assert ana["attributes"] == {"city": "Q", "chapter": "n"}
    assert ana["updated_at"].tzinfo is not None


def test_unsubscribed_is_not_resurrected_by_reimport(store_engine: Engine) -> None:
    import_rows(store_engine, "members", people(3), source="test")
    assert unsubscribe(store_engine, "PERSON1@example.org", "members")
    assert not unsubscribe(store_engine, "person1@example.org", "members")  # already
    report = import_rows(store_engine, "members", people(3), source="test")
    assert report == ImportReport(list_name="members", unchanged=2, skipped_unsubscribed=1)
    assert memberships_of(store_engine, "person1@example.org") == {"members": "unsubscribed"}
    assert list_counts(store_engine, "members") == {
        "members": {
            "unconfirmed": 0,
            "active": 2,
            "unsubscribed": 1,
            "bounced": 0,
            "complained": 0,
        }
    }


def test_unsubscribe_before_joining_a_list_blocks_the_import(store_engine: Engine) -> None:
    import_rows(store_engine, "members", [row("a@example.org")], source="test")
    sid = subscriber(store_engine, "a@example.org")
    assert sid is not None
    assert unsubscribe(store_engine, sid["id"], "press")
    report = import_rows(store_engine, "press", [row("a@example.org")], source="test")
    assert report.skipped_unsubscribed == 1
    assert not unsubscribe(store_engine, "nobody@example.org", "press")


def test_unconfirmed_becomes_active_but_active_never_downgrades(store_engine: Engine) -> None:
    import_rows(store_engine, "members", people(2), source="signup", status="unconfirmed")
    report = import_rows(store_engine, "members", people(1), source="organizer")
    assert report == ImportReport(list_name="members", updated=1)
    report = import_rows(store_engine, "members", people(2), source="again", status="unconfirmed")
    assert report == ImportReport(list_name="members", unchanged=2)
    assert list_counts(store_engine, "members")["members"]["active"] == 1
    assert list_counts(store_engine, "members")["members"]["unconfirmed"] == 1


def test_suppressed_addresses_are_excluded(store_engine: Engine) -> None:
    import_rows(store_engine, "members", people(3), source="test")
    assert suppress(store_engine, "Person0@Example.org", reason="bounced")
    assert not suppress(store_engine, "person0@example.org", reason="complained")
    assert [r.email for r in active_audience(store_engine, ["members"])] == [
        "person1@example.org",
        "person2@example.org",
    ]
    suppress(store_engine, "newcomer@example.org", reason="complained")
    report = import_rows(store_engine, "members", [row("newcomer@example.org")], source="test")
    assert report == ImportReport(list_name="members", skipped_suppressed=1)
    assert subscriber(store_engine, "newcomer@example.org") is None


def test_audience_is_deduplicated_across_lists(store_engine: Engine) -> None:
    import_rows(store_engine, "members", people(4), source="test")
    import_rows(store_engine, "press", [*people(2), row("journalist@news.example")], source="test")
    unsubscribe(store_engine, "person3@example.org", "members")
    unsubscribe(store_engine, "person1@example.org", "members")  # still on press
    audience = list(active_audience(store_engine, ["members", "press"], chunk_size=2))
    assert sorted(r.email for r in audience) == [
        "journalist@news.example",
        "person0@example.org",
        "person1@example.org",
        "person2@example.org",
    ]
    assert len({r.subscriber_id for r in audience}) == 4
    assert [r.subscriber_id for r in audience] == sorted(r.subscriber_id for r in audience)
    first = audience[0]
    assert (first.name, first.language) == ("Person 0", "en")
    assert list(active_audience(store_engine, [])) == []


def test_counts_cover_all_lists(store_engine: Engine) -> None:
    import_rows(store_engine, "members", people(2), source="test")
    import_rows(store_engine, "press", [], source="test")
    counts = list_counts(store_engine)
    assert set(counts) == {"members", "press"}
    assert counts["press"] == dict.fromkeys(counts["press"], 0)
    assert list_counts(store_engine, "unknown") == {}


def test_large_import_crosses_batches(store_engine: Engine) -> None:
    rows = people(4500)
    report = import_rows(store_engine, "members", rows, source="bulk")
    assert report.inserted == 4500
    changed = [*rows[:10], *[row(r.email, "Renamed") for r in rows[10:20]]]
    report = import_rows(store_engine, "members", changed, source="bulk")
    assert (report.unchanged, report.updated) == (10, 10)
    assert sum(1 for _ in active_audience(store_engine, ["members"])) == 4500


def test_csv_to_store(store_engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text("email,name,language\na@example.org,A,es\nB@Example.org,B,\nbad,,\n")
    result = read_csv(path, languages=["en", "es"], default_language="en")
    report = import_rows(store_engine, "members", result.rows, source=str(path))
    assert report.inserted == 2 and len(result.problems) == 1


def test_timestamps_are_utc_and_naive_ones_are_refused(store_engine: Engine) -> None:
    instant = dt.datetime(2027, 5, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with store_engine.begin() as conn:
        conn.execute(
            occurrences.insert().values(
                id="may-day/2027/statement", campaign="may-day", step="statement", instant=instant
            )
        )
        stored = conn.execute(sa.select(occurrences)).one()
    assert stored.instant == instant and stored.instant.utcoffset() == dt.timedelta(0)
    assert (stored.state, stored.late) == ("planned", False)
    with pytest.raises(sa.exc.StatementError, match="naive"), store_engine.begin() as conn:
        conn.execute(
            occurrences.insert().values(
                id="x", campaign="x", step="x", instant=dt.datetime(2027, 5, 1)
            )
        )


def test_default_engine_is_a_sqlite_file_in_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCHEDULER_DATABASE_URL", raising=False)
    engine = make_engine()
    try:
        migrate(engine)
        assert (tmp_path / "state" / "scheduler.db").is_file()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


def test_database_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", f"sqlite:///{tmp_path}/deep/dir/x.db")
    engine = make_engine()
    try:
        migrate(engine)
        assert (tmp_path / "deep" / "dir" / "x.db").is_file()
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/fk.db")
    migrate(engine)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO memberships (subscriber_id, list_name, status) "
                "VALUES (999, 'nope', 'active')"
            )
    finally:
        engine.dispose()
