"""SQLite merges an import in Python, PostgreSQL in SQL (COPY into a staging table): the
same file and the same history give the same report and the same stored rows on both."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest_store import postgres_schema_engine
from sqlalchemy.engine import Engine

from scheduler.audience import read_csv
from scheduler.listhealth.privacy import forget
from scheduler.store import import_rows, make_engine, migrate, suppress, unsubscribe, writer
from scheduler.store.schema import memberships, subscribers

LANGS = ["en", "es", "pt-BR"]

FIRST = """\
email,name,language,timezone,chapter
ana@example.org,Ana,es,Europe/Madrid,quito
bo@example.org,Bo,,,
cy@example.org,Cy,en,,
di@example.org,,pt-br,America/Sao_Paulo,rio
ed@example.org,Ed,,,
fay@example.org,Fay,en,,
gus@example.org,Gus,es,,
hal@example.org,Hal,en,,lima
ivy@exämple.org,Ivy,en,,
not-an-address,X,en,,
ana@EXAMPLE.org,Ana again,en,,
"""

# Case differences, changed and unchanged details, bad rows, duplicates, and people who
# left (unsubscribed, bounced, complained, suppressed, erased) in the file again.
SECOND = """\
email,name,language,timezone,chapter,team
ANA@example.org,Ana Pérez,,,,red
bo@example.org,Bo,,,,
cy@example.org,Cy,en,,,
DI@EXAMPLE.ORG,Di,en,,,
ed@example.org,Ed,,,,
Fay@Example.org,Fay,,,,
gus@example.org,Gus,es,,,
hal@example.org,Hal,,,,
IVY@EXÄMPLE.ORG,Ivy,,Asia/Manila,,
new@example.org,New,es,,,blue
New@Example.org,New twice,,,,
late@example.org,,xx,,,
also-new@example.org,,,Mars/Base,,
joiner@example.org,Joiner,en,,,
"""


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    sqlite = make_engine(f"sqlite:///{tmp_path / 'state' / 'scheduler.db'}")
    postgres = postgres_schema_engine()
    try:
        pair = sqlite, next(postgres)
        for engine in pair:
            migrate(engine)
        yield pair
    finally:
        sqlite.dispose()
        postgres.close()


def _history(engine: Engine, tmp_path: Path) -> list[dict[str, Any]]:
    """Imports with people leaving in between; the reports of each import."""
    first = read_csv(_write(tmp_path, "first.csv", FIRST), languages=LANGS, default_language="en")
    second = read_csv(
        _write(tmp_path, "second.csv", SECOND), languages=LANGS, default_language="en"
    )
    assert len(first.problems) == 2 and len(second.problems) == 3  # bad, duplicate, ...
    reports = [import_rows(engine, "members", first.rows, source="first.csv", batch_size=3)]
    reports.append(
        import_rows(
            engine, "press", first.rows[:4], source="signup", status="unconfirmed", batch_size=2
        )
    )
    unsubscribe(engine, "cy@example.org", "members")
    unsubscribe(engine, "joiner@example.org", "members")  # unknown: nothing to record
    suppress(engine, "fay@example.org", reason="complained")
    suppress(engine, "new@example.org", reason="manual")  # never imported, suppressed first
    forget(engine, "gus@example.org")
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(memberships)
            .where(memberships.c.subscriber_id == _id(conn, "ed@example.org"))
            .values(status="bounced")
        )
        conn.execute(
            sa.update(memberships)
            .where(memberships.c.subscriber_id == _id(conn, "hal@example.org"))
            .values(status="complained")
        )
    # Batches of 4 split the file's rows across transactions; the repeats (the same rows
    # given twice) cross a batch boundary.
    rows = second.rows + second.rows[:3]
    reports.append(import_rows(engine, "members", rows, source="second.csv", batch_size=4))
    reports.append(import_rows(engine, "press", second.rows, source="second.csv", batch_size=5))
    return [dataclasses.asdict(report) for report in reports]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _id(conn: sa.Connection, key: str) -> int:
    return int(conn.scalar(sa.select(subscribers.c.id).where(subscribers.c.email_key == key)))


def _state(engine: Engine) -> dict[str, Any]:
    s, m = subscribers.c, memberships.c
    with engine.connect() as conn:
        people = {
            r.email_key: (r.email, r.name, r.language, r.timezone, r.attributes)
            for r in conn.execute(
                sa.select(s.email_key, s.email, s.name, s.language, s.timezone, s.attributes)
            )
        }
        members = sorted(
            (key, name, status, source)
            for key, name, status, source in conn.execute(
                sa.select(s.email_key, m.list_name, m.status, m.source).join(
                    subscribers, m.subscriber_id == s.id
                )
            )
        )
    return {"subscribers": people, "memberships": members}


@pytest.mark.postgres
def test_postgres_import_matches_sqlite(engines: tuple[Engine, Engine], tmp_path: Path) -> None:
    sqlite, postgres = engines
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    reports = _history(sqlite, tmp_path / "a")
    assert _history(postgres, tmp_path / "b") == reports
    assert _state(postgres) == _state(sqlite)

    # The rules themselves, once (the comparison alone would pass if both were wrong).
    counts = [
        (
            r["inserted"],
            r["updated"],
            r["unchanged"],
            r["skipped_suppressed"],
            r["skipped_unsubscribed"],
        )
        for r in reports
    ]
    assert counts == [
        (9, 0, 0, 0, 0),
        (4, 0, 0, 0, 0),
        # joiner in; ana, di, ivy changed; bo, and the repeats of ana and bo, unchanged;
        # fay, new (suppressed) and gus (erased) kept out; cy, ed, hal and cy again left.
        (1, 3, 3, 3, 4),
        # press: four unconfirmed become active; ed, hal, ivy, joiner join.
        (4, 4, 0, 3, 0),
    ]
    state = _state(sqlite)
    people = state["subscribers"]
    assert "gus@example.org" not in people  # erased, and the import did not bring it back
    assert "fay@example.org" in people and "new@example.org" not in people
    ana = people["ana@example.org"]
    assert ana == (
        "ANA@example.org",
        "Ana Pérez",
        "es",
        "Europe/Madrid",
        {"chapter": "quito", "team": "red"},
    )
    assert people["ivy@exämple.org"][3] == "Asia/Manila"
    statuses = {(k, lst): st for k, lst, st, _src in state["memberships"]}
    assert statuses[("cy@example.org", "members")] == "unsubscribed"
    assert statuses[("ed@example.org", "members")] == "bounced"
    assert statuses[("hal@example.org", "members")] == "complained"
    assert statuses[("ana@example.org", "press")] == "active"  # unconfirmed, then imported
    assert statuses[("joiner@example.org", "members")] == "active"


@pytest.mark.postgres
def test_postgres_import_of_an_address_added_meanwhile(tmp_path: Path) -> None:
    """The merge adds addresses it did not find with a plain INSERT; one added by someone
    else after its read (a sign-up committing while the import waits on it) makes the
    unique index raise, and the batch is merged again with ON CONFLICT: nothing fails,
    nothing is doubled, and the file's details win as in any import."""
    engine = next(postgres := postgres_schema_engine())
    try:
        migrate(engine)
        path = _write(
            tmp_path,
            "race.csv",
            "email,name,language\nrace@example.org,Race,es\nother@example.org,Other,en\n",
        )
        rows = read_csv(path, languages=LANGS, default_language="en").rows
        signup = engine.connect()
        signing = signup.begin()
        signup.execute(
            sa.insert(subscribers).values(
                email_key="race@example.org",
                email="race@example.org",
                name=None,
                language="en",
                timezone="Europe/Madrid",
                attributes={},
            )
        )
        done: list[Any] = []
        importer = threading.Thread(
            target=lambda: done.append(import_rows(engine, "members", rows, source="race.csv"))
        )
        importer.start()
        # The import's insert waits on the sign-up's uncommitted row in the unique index.
        # (A new transaction each look: pg_stat_activity stays as first read within one.)
        waiting = 0
        for _ in range(500):
            with engine.connect() as watcher:
                waiting = watcher.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database() AND query LIKE '%import_staging%'"
                    )
                )
            if waiting:
                break
            time.sleep(0.01)
        signing.commit()
        signup.close()
        importer.join(timeout=30)
        assert waiting == 1
        assert not importer.is_alive() and len(done) == 1
        assert (done[0].inserted, done[0].updated, done[0].unchanged) == (2, 0, 0)
        people = _state(engine)
        assert people["subscribers"]["race@example.org"] == (
            "race@example.org",
            "Race",
            "es",
            "Europe/Madrid",  # the file gave no zone: the sign-up's stays
            {},
        )
        assert [(k, lst, st) for k, lst, st, _ in people["memberships"]] == [
            ("other@example.org", "members", "active"),
            ("race@example.org", "members", "active"),
        ]
    finally:
        postgres.close()
