"""Engines and migrations: SQLite by default (no server), PostgreSQL when machines share work."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

from scheduler import settings

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_URL = settings.DATABASE_URL.default
URL_ENV = settings.DATABASE_URL.name
SQLITE_BUSY_TIMEOUT_MS = 15_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Execution option: on SQLite, take the write lock when the transaction begins (BEGIN
# IMMEDIATE), so a writer waits for another writer instead of failing with "database is
# locked" when it first writes. Ignored on PostgreSQL.
WRITE_LOCK = "scheduler_write_lock"


def database_url(url: str | None = None) -> str:
    return url or settings.database_url()


def make_engine(url: str | None = None, **engine_options: Any) -> Engine:
    """An engine for `url`, else $SCHEDULER_DATABASE_URL, else `sqlite:///state/scheduler.db`.

    A SQLite file's directory is created; SQLite runs in WAL mode with foreign keys enforced
    and a busy timeout, and SQLAlchemy (not the sqlite3 module) emits BEGIN.
    """
    parsed = make_url(database_url(url))
    if parsed.get_backend_name() != "sqlite":
        engine_options.setdefault("pool_pre_ping", True)
        return sa.create_engine(parsed, **engine_options)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, **engine_options)
    _configure_sqlite(engine, wal=not in_memory)
    return engine


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN (below): the sqlite3 module's own transaction handling
        # defers BEGIN and commits before DDL, which breaks transactional migrations.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(WRITE_LOCK, False):
            _begin_immediate(connection.connection.dbapi_connection)
        else:
            connection.exec_driver_sql("BEGIN")


# Waiting for the write lock: SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between
# tries, so a sender whose helper holds the lock for a fraction of a millisecond waits 3 ms
# on average (a third of an embedded send's time went there). BEGIN IMMEDIATE is where a
# writer waits (in WAL mode nothing else does), so it is retried here with short sleeps.
_LOCK_FIRST_SLEEP = 0.00005
_LOCK_MAX_SLEEP = 0.002


def _begin_immediate(dbapi_connection: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        try:
            deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
            pause = _LOCK_FIRST_SLEEP
            while True:
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e):
                        raise
                    if time.monotonic() > deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, _LOCK_MAX_SLEEP)
        finally:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def writer(engine: Engine) -> Engine:
    """`engine` for transactions that will write: `with writer(engine).begin() as conn: ...`."""
    # Made once per engine: a sender asks for it several times a batch, and each
    # `execution_options` builds a new engine object (a tenth of a millisecond).
    made: Engine | None = getattr(engine, "_scheduler_writer", None)
    if made is None:
        made = engine.execution_options(**{WRITE_LOCK: True})
        engine._scheduler_writer = made  # type: ignore[attr-defined]
    return made


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration that needs no alembic.ini, so it works from an installed wheel."""
    from alembic.config import Config  # Alembic costs 80 ms to import; most commands never migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# The newest migration's revision (tests/test_store.py checks it against Alembic's head).
HEAD = "0015"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (idempotent)."""
    if revision == "head" and current_revision(engine) == HEAD:
        # Every command and worker process starts here: Alembic's loading of its scripts
        # (with Mako and Pygments) took a third of a second of a `scheduler send`.
        return
    with engine.begin() as connection:
        from alembic import command

        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision, or None for a store never migrated."""
    try:
        with engine.connect() as connection:
            version = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except sa.exc.DBAPIError:  # no such table yet
        return None
    return None if version is None else str(version)


def dialect_insert(connection: sa.Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ON CONFLICT support for the connection's dialect."""
    name = connection.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the store supports SQLite and PostgreSQL, not {name}")


def refresh_statistics(engine: Engine, tables: Sequence[str]) -> None:
    """ANALYZE `tables` on PostgreSQL (nothing on SQLite, which plans these queries well
    without), from a small sample: the plans of a send need row counts and the few values
    of `state` and `list_name`. Stale statistics make PostgreSQL plan for empty tables: the
    first batch of a send to a list imported a moment before read the whole list (0.2 s at
    50,000 subscribers, seconds at 1,000,000) instead of 250 rows."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        # A sample of 3,000 rows a table instead of 30,000: the full sample cost a quarter
        # of a CPU-second per refresh of the send tables, taken from the senders.
        conn.exec_driver_sql("SET LOCAL default_statistics_target = 10")
        conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
