"""Alembic environment: runs on the connection `scheduler.store.db.migrate` hands over,
or, when none is given, on $SCHEDULER_DATABASE_URL (the default SQLite file otherwise)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from scheduler.store.db import make_engine
from scheduler.store.schema import metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine()
    try:
        with engine.begin() as own:
            _run(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run migrate(engine)")
run()
