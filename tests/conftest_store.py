"""Engine fixtures for store tests: every test runs on SQLite and on PostgreSQL.

Import `store_engine` into a test module. PostgreSQL tests use a fresh schema in database
`test` and drop it afterwards. When the server is unreachable they skip, except under
CI=true, where they fail: CI must not pass by testing less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.store.db import make_engine, migrate

PG_SERVER = os.environ.get(
    "SCHEDULER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_or_skip() -> None:
    probe = sa.create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as e:
        reason = f"PostgreSQL at {PG_SERVER} is unreachable: {str(e).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: a missing database is a failure, not a skip)")
        pytest.skip(reason)
    finally:
        probe.dispose()


def postgres_schema_engine() -> Iterator[Engine]:
    """An engine whose search_path is a new, empty schema, dropped afterwards."""
    _postgres_or_skip()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_SERVER)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = make_engine(f"{PG_SERVER}?options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database, not migrated."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'scheduler.db'}")
        yield engine
        engine.dispose()
    else:
        yield from postgres_schema_engine()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """An engine on a migrated, empty PostgreSQL schema, for tests of PostgreSQL's own paths."""
    engines = postgres_schema_engine()
    engine = next(engines)
    migrate(engine)
    yield engine
    engines.close()


@pytest.fixture
def store_engine(bare_engine: Engine) -> Engine:
    """An engine on a migrated, empty database."""
    migrate(bare_engine)
    return bare_engine
