"""PostgreSQL's connections cut under the scheduler (the server restarted, a proxy or a
firewall dropped them): the next send opens new ones, and every subscriber gets one message.

Not covered yet: a cut while a batch is talking to the store. That batch's fire ends with
the driver's error today; its claimed rows wait out their lease and the next run sends them
again with the same Message-IDs (as after a crash)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from conftest_store import postgres_schema_engine
from delivery_helpers import add_subscribers, context, email_project, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
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
