"""PostgreSQL's connections cut under the scheduler (the server restarted, a proxy or a
firewall dropped them): between two sends the pool opens new ones; while a batch is
talking to the store, its call runs again on a new connection (store/reconnect.py). Either
way every subscriber gets one message and the ledger says so.

The cut is real (`pg_terminate_backend` on the very connection, from another one); only
its moment is chosen by a hook on the engine, so that it lands on the statement or the
commit a test names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from conftest_store import postgres_schema_engine
from delivery_helpers import add_subscribers, context, email_project, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.store import reconnect
from scheduler.store.db import make_engine, migrate

APP = "scheduler-connection-loss-test"


@pytest.fixture
def engine() -> Iterator[Engine]:
    schema_engine = postgres_schema_engine()
    base = next(schema_engine)
    # Its own application_name, so the test cuts this engine's connections and no others.
    url = base.url.update_query_dict({"application_name": APP})
    made = make_engine(url.render_as_string(hide_password=False))
    migrate(made)
    yield made
    made.dispose()
    schema_engine.close()


def _cut(admin: sa.Connection) -> int:
    return len(
        admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :app AND pid <> pg_backend_pid()"
            ),
            {"app": APP},
        ).all()
    )


@pytest.mark.postgres
def test_connections_cut_while_idle_are_opened_again_and_nothing_is_doubled(
    make_project: ProjectFactory, engine: Engine, smtp_server: SmtpTestServer
) -> None:
    """Between two sends the pooled connections are cut (the server restarted at night):
    the next send checks each connection out with a ping, opens new ones and sends all."""
    project = email_project(make_project, smtp_server.url, batch_size=20)
    emails = add_subscribers(engine, 100)
    ctx = context(project, engine)
    admin_engine = sa.create_engine(engine.url.update_query_dict({"application_name": "x"}))
    try:
        first = fire(ctx, may_day(project, 2030))
        with admin_engine.connect() as admin:
            cut = _cut(admin)
            admin.commit()
        second = fire(ctx, may_day(project, 2031))
    finally:
        ctx.close()
        admin_engine.dispose()
    assert cut >= 1  # the pool held connections, and they were cut
    assert (first.result.sent, second.result.sent) == (100, 100)
    assert (first.result.failed, second.result.failed) == (0, 0)
    assert smtp_server.count_by_recipient() == {e: 2 for e in emails}
    for year in (2030, 2031):
        occurrence = may_day(project, year).id
        assert ledger.counts(engine, occurrence)[occurrence]["email"] == {"sent": 100}


class _Cutter:
    """Cuts the connection that runs the first statement matching `pattern` (before the
    statement reaches the server), or, with `at_commit`, at that statement's commit (its
    effects are on the server but not committed: the commit fails)."""

    def __init__(self, engine: Engine, pattern: str, *, at_commit: bool = False):
        self.pattern = re.compile(pattern)
        self.at_commit = at_commit
        self.cuts = 0
        self.armed: Any = None  # the connection whose commit is to be cut
        self.admin = sa.create_engine(engine.url.update_query_dict({"application_name": "x"}))
        sa.event.listen(engine, "before_cursor_execute", self.before_execute)
        sa.event.listen(engine, "commit", self.before_commit)
        self.engine = engine

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.before_execute)
        sa.event.remove(self.engine, "commit", self.before_commit)
        self.admin.dispose()

    def _kill(self, dbapi_connection: Any) -> None:
        pid = dbapi_connection.info.backend_pid
        with self.admin.connect() as admin:
            # Waits (up to 5 s) until the backend is gone, so the cut has happened.
            assert admin.scalar(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            admin.commit()
        self.cuts += 1

    def before_execute(self, conn: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
        if self.cuts or not self.pattern.search(statement):
            return
        if self.at_commit:
            self.armed = conn
        else:
            self._kill(cursor.connection)

    def before_commit(self, conn: sa.Connection) -> None:
        if self.armed is not None and conn is self.armed and not self.cuts:
            self.armed = None
            self._kill(conn.connection.dbapi_connection)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("pattern", "at_commit"),
    [
        pytest.param(r"^UPDATE deliveries AS d SET state = v\.state", False, id="outcomes"),
        pytest.param(r"^UPDATE deliveries AS d SET state = v\.state", True, id="outcomes-commit"),
        pytest.param(r"^UPDATE deliveries SET state=.*attempts=", False, id="claim"),
        pytest.param(r"^SELECT subscribers\.id, subscribers\.email", False, id="still-wanted"),
        pytest.param(r"^UPDATE occurrences SET state=.*fired_at=", True, id="claim-occurrence"),
        pytest.param(
            r"^SELECT occurrence_channels\.channel, occurrence_channels\.fanned",
            False,
            id="channel-state",
        ),
        pytest.param(r"^SELECT EXISTS", False, id="open-in-channel"),
        pytest.param(r"^WITH added AS", False, id="fan-out"),
    ],
)
def test_a_connection_cut_while_a_batch_talks_to_the_store_costs_no_message(
    make_project: ProjectFactory,
    engine: Engine,
    smtp_server: SmtpTestServer,
    pattern: str,
    at_commit: bool,
) -> None:
    """The cut lands on one statement of a send (or the commit of the outcomes, after the
    messages went out): that call runs again on a new connection, the send finishes, and
    nobody gets a message twice or none. Without the retry the fire ends with the
    driver's OperationalError and the outcomes are lost (the rows would be sent again)."""
    project = email_project(make_project, smtp_server.url, batch_size=20)
    emails = add_subscribers(engine, 100)
    ctx = context(project, engine)
    cutter = _Cutter(engine, pattern, at_commit=at_commit)
    try:
        report = fire(ctx, may_day(project, 2030))
    finally:
        cutter.close()
        ctx.close()
    assert cutter.cuts == 1  # the statement ran, and its connection was cut
    assert (report.result.sent, report.result.failed) == (100, 0)
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}
    occurrence = may_day(project, 2030).id
    assert ledger.counts(engine, occurrence)[occurrence]["email"] == {"sent": 100}
    assert ledger.remaining(engine, occurrence) == 0


def test_only_a_lost_connection_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A constraint or a syntax error is raised at once; a lost connection is tried again
    until the budget is spent, then raised."""
    monkeypatch.setenv("SCHEDULER_STORE_RETRY_SECONDS", "0.3")
    calls: list[str] = []

    class Orig(Exception):
        def __init__(self, sqlstate: str | None):
            self.sqlstate = sqlstate

    def failing(sqlstate: str | None) -> Any:
        @reconnect.survives_connection_loss
        def call() -> None:
            calls.append(str(sqlstate))
            raise sa.exc.OperationalError("SELECT 1", {}, Orig(sqlstate))

        return call

    with pytest.raises(sa.exc.OperationalError):
        failing("23505")()  # unique violation: not a connection loss
    assert calls == ["23505"]
    calls.clear()
    with pytest.raises(sa.exc.OperationalError):
        failing("57P01")()  # terminated by the administrator
    assert len(calls) >= 3  # 0.05 + 0.1 s waits fit in 0.3 s, the next does not

    class SqliteError(Exception):  # sqlite3's errors have no sqlstate: never a lost connection
        pass

    assert not reconnect.is_connection_loss(
        sa.exc.OperationalError("SELECT 1", {}, SqliteError("database is locked"))
    )
    assert reconnect.is_connection_loss(sa.exc.OperationalError("SELECT 1", {}, Orig(None)))
    assert reconnect.is_connection_loss(sa.exc.OperationalError("SELECT 1", {}, Orig("08006")))
