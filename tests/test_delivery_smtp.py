"""Sending through a real SMTP server that misbehaves: 4xx, 5xx, dropped connections,
two senders at once. Every recipient gets one message; the ledger agrees with the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, email_project, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.store.subscribers import is_suppressed, memberships_of


def test_every_subscriber_gets_one_message_with_its_message_id(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url, batch_size=40)
    emails = add_subscribers(store_engine, 120)
    ctx = context(project, store_engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (120, 0)
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}
    # The ledger records each message's Message-ID, and it is the one the server got.
    sent_ids = {m.message_id for m in smtp_server.messages}
    assert len(sent_ids) == 120
    assert _ledger_message_ids(store_engine) == sent_ids
    # Connections are reused across messages and batches.
    assert smtp_server.connections <= 4


def test_helper_processes_share_one_occurrence_and_send_each_message_once(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    # 12 batches: this process and one helper process (spawned, on the same store) split
    # them; the ledger and the server agree that everyone got exactly one message.
    project = email_project(make_project, smtp_server.url, batch_size=25)
    emails = add_subscribers(store_engine, 300)
    smtp_server.reject_rcpt[emails[7]] = "550 5.1.1 No such user"
    ctx = context(project, store_engine)
    report = fire(ctx, may_day(project), processes=2)
    ctx.close()
    assert (report.result.sent, report.result.failed, report.batches) == (299, 1, 12)
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails if e != emails[7]}
    # The first two batches always go to the helper (it is free then): its own connections.
    assert smtp_server.connections > 4
    assert report.state == "done"
    assert _ledger_message_ids(store_engine) == {m.message_id for m in smtp_server.messages}


def test_a_helper_that_cannot_start_leaves_its_batches_to_this_process(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url, batch_size=25)
    emails = add_subscribers(store_engine, 150)
    ctx = context(project, store_engine)
    project.path.rename(project.path.with_suffix(".gone"))  # the helper cannot load it
    report = fire(ctx, may_day(project), processes=2)
    ctx.close()
    assert (report.result.sent, report.result.failed, report.state) == (150, 0, "done")
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}


def test_temporary_failures_are_retried_until_the_server_recovers(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url, batch_size=50)
    emails = add_subscribers(store_engine, 50)
    smtp_server.fail_next_data("451 4.3.0 Try again later", times=30)
    smtp_server.fail_next_rcpt("450 4.2.1 Mailbox busy", times=5)
    ctx = context(project, store_engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (50, 0)
    assert report.result.retried >= 35
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}
    attempts = _attempts(store_engine)
    assert sum(attempts) >= 50 + 35 and max(attempts) >= 2


def test_temporary_failures_that_never_end_wait_in_the_ledger_not_on_a_count(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url)
    add_subscribers(store_engine, 3)
    # The message's own 4xx; a 421 (the server closing) is an outage: see test_outage.py.
    smtp_server.fail_next_data("451 4.3.0 Try again later", times=1000)
    ctx = context(project, store_engine)
    occ = may_day(project)
    report = fire(ctx, occ)
    # A few tries in the batch, then the deliveries wait in the ledger: nothing failed,
    # the occurrence is not done, and each says when it is tried again.
    assert (report.result.sent, report.result.failed, report.result.deferred) == (0, 0, 3)
    assert _attempts(store_engine) == [5, 5, 5]
    rows = _deferred_rows(store_engine)
    assert [r.state for r in rows] == ["pending"] * 3
    assert all(r.next_attempt_at is not None and r.first_failed_at is not None for r in rows)
    assert ledger.get_occurrence(store_engine, occ.id).state == "firing"  # type: ignore[union-attr]
    # Sent again once due (as the clock does), they go on being tried, not failed: the
    # count of attempts decides nothing, and their first failure is kept.
    time.sleep(0.1)
    again = fire(ctx, occ)
    assert (again.result.failed, again.result.deferred) == (0, 3)
    assert _attempts(store_engine) == [10, 10, 10]
    assert [r.first_failed_at for r in _deferred_rows(store_engine)] == [
        r.first_failed_at for r in rows
    ]
    ctx.close()


def test_temporary_failures_fail_once_the_retry_window_from_the_first_is_over(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url, extra=', retry_window: "1s"')
    emails = add_subscribers(store_engine, 3)
    smtp_server.reject_rcpt[emails[1]] = "450 4.2.1 Mailbox busy"
    ctx = context(project, store_engine)
    occ = may_day(project)
    while ledger.get_occurrence(store_engine, occ.id) is None or ledger.remaining(  # type: ignore[union-attr]
        store_engine, occ.id
    ):
        report = fire(ctx, occ)
        time.sleep(0.1)
    ctx.close()
    assert smtp_server.count_by_recipient() == {emails[0]: 1, emails[2]: 1}
    ((_, reason, n),) = ledger.failures(store_engine, occ.id)
    assert n == 1
    assert reason == "temporary failures for the whole retry window (1s): 450 4.2.1 Mailbox busy"
    assert report.state == "done"


def test_permanent_failures_and_bounces_are_reported_and_the_rest_arrive(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url)
    emails = add_subscribers(store_engine, 20)
    smtp_server.reject_rcpt[emails[3]] = "550 5.1.1 No such user"
    smtp_server.reject_rcpt[emails[7]] = "554 5.7.1 Rejected by policy"
    ctx = context(project, store_engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (18, 2)
    received = smtp_server.count_by_recipient()
    assert emails[3] not in received and emails[7] not in received
    assert all(received[e] == 1 for i, e in enumerate(emails) if i not in (3, 7))
    # The unknown mailbox is suppressed and marked bounced; the policy reject is not.
    assert is_suppressed(store_engine, emails[3])
    assert memberships_of(store_engine, emails[3]) == {"members": "bounced"}
    assert not is_suppressed(store_engine, emails[7])
    failures = {reason for _, reason, _ in ledger.failures(store_engine, may_day(project).id)}
    assert any("550 5.1.1" in r for r in failures) and any("554 5.7.1" in r for r in failures)


def test_a_connection_dropped_mid_data_is_retried_without_loss(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url)
    emails = add_subscribers(store_engine, 30)
    smtp_server.drop_next_data(times=4)
    ctx = context(project, store_engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (30, 0)
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}
    # The server had read those messages when it hung up: any copy that a real server kept
    # anyway has the same Message-ID as the one delivered, so receivers drop it.
    assert len(smtp_server.dropped) == 4
    delivered = {m.message_id for m in smtp_server.messages}
    assert {m.message_id for m in smtp_server.dropped} <= delivered


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_two_processes_sending_the_same_occurrence_send_one_set(
    make_project: ProjectFactory, smtp_server: SmtpTestServer, tmp_path: Path, database: str
) -> None:
    from conftest_store import postgres_schema_engine

    project = email_project(make_project, smtp_server.url, batch_size=25)
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        from scheduler.store.db import make_engine, migrate

        engine = make_engine(url)
        engines = iter([engine])
    else:
        engines = postgres_schema_engine()
        engine = next(engines)
        url = engine.url.render_as_string(hide_password=False)
    from scheduler.store.db import migrate

    migrate(engine)
    emails = add_subscribers(engine, 200)
    env = {**os.environ, "SCHEDULER_DATABASE_URL": url, "SCHEDULER_CONFIG": str(project.path)}
    command = [
        sys.executable,
        "-m",
        "scheduler",
        "send",
        "may-day",
        "--occurrence",
        "may-day/2030/statement",
        "--now",
        "--json",
    ]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}
    counts = ledger.counts(engine, "may-day/2030/statement")["may-day/2030/statement"]["email"]
    assert counts == {"sent": 200}
    engine.dispose()
    for _ in engines:  # drop the PostgreSQL schema
        pass


def _attempts(engine: Engine) -> list[int]:
    import sqlalchemy as sa

    from scheduler.store.schema import deliveries

    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(deliveries.c.attempts)).scalars())


def _deferred_rows(engine: Engine) -> list[sa.Row[Any]]:
    from scheduler.store.schema import deliveries

    d = deliveries.c
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(d.state, d.next_attempt_at, d.first_failed_at).order_by(d.id)
            ).all()
        )


def _ledger_message_ids(engine: Engine) -> set[str | None]:
    import sqlalchemy as sa

    from scheduler.store.schema import deliveries

    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(deliveries.c.message_id).where(deliveries.c.state == "sent")
            ).scalars()
        )


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_messages_are_dkim_signed_when_the_channel_asks(
    make_project: ProjectFactory,
    store_engine: Engine,
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    import base64

    import dkim

    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    os.environ["TEST_DKIM_KEY_FILE"] = str(key)
    try:
        project = email_project(
            make_project,
            smtp_server.url,
            extra=', dkim_selector: may2030, dkim_private_key_file: "${TEST_DKIM_KEY_FILE}"',
        )
        add_subscribers(store_engine, 3)
        ctx = context(project, store_engine)
        report = fire(ctx, may_day(project))
        ctx.close()
    finally:
        del os.environ["TEST_DKIM_KEY_FILE"]
    assert report.result.sent == 3

    def dns(name: bytes, timeout: int = 5) -> bytes:
        if name == b"may2030._domainkey.example.org.":
            return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        return b""

    for message in smtp_server.messages:
        assert message.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(message.data, dnsfunc=dns)
        assert not dkim.verify(message.data.replace(b"Subject: ", b"Subject: X"), dnsfunc=dns)
