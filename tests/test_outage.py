"""A server outage is waited out, not turned into failures: real SMTP servers going away and
coming back, a closed port, a sender killed mid-send, `scheduler retry`, grouped reasons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, email_project, may_day
from posting_fakes import TOKEN, FakeMastodon, origin
from pytest_httpserver import HTTPServer
from smtp_server import SmtpTestServer, _free_port
from sqlalchemy.engine import Engine

from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.delivery.reasons import reason_key
from scheduler.store.db import make_engine, migrate
from scheduler.store.schema import deliveries

OCC = "may-day/2030/statement"


def _rows(engine: Engine) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(deliveries).order_by(deliveries.c.id)))


def _one_message_each(server: SmtpTestServer, emails: list[str]) -> int:
    """Every address got the message, every copy with one Message-ID; returns extra copies
    (a message in flight when the server went away, resent with the same id)."""
    ids: dict[str, set[str | None]] = defaultdict(set)
    copies = 0
    for m in server.messages:
        for r in m.rcpt_tos:
            ids[r].add(m.message_id)
            copies += 1
    assert sorted(ids) == sorted(emails)
    assert all(len(v) == 1 for v in ids.values())
    return copies - len(emails)


def _cli(
    project_path: Path, db_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "SCHEDULER_DATABASE_URL": db_url,
        "SCHEDULER_CONFIG": str(project_path),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_server_that_dies_mid_send_and_returns_after_ten_seconds_fails_nobody(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    server = SmtpTestServer().start()
    port = server.port
    project = email_project(make_project, server.url, batch_size=100, extra=", connections: 2")
    emails = add_subscribers(store_engine, 400)
    outage_over = threading.Event()

    def outage() -> None:
        while len(server.messages) < 100:
            time.sleep(0.005)
        server.stop()
        time.sleep(10)
        server.start(port)
        outage_over.set()

    killer = threading.Thread(target=outage)
    killer.start()
    ctx = context(project, store_engine)
    try:
        report = fire(ctx, may_day(project))
    finally:
        ctx.close()
        killer.join()
        server.stop()
    assert outage_over.is_set()
    assert (report.result.sent, report.result.failed) == (400, 0)
    assert report.result.waited >= 1
    assert _one_message_each(server, emails) <= 4
    assert ledger.get_occurrence(store_engine, OCC).state == "done"  # type: ignore[union-attr]
    # The outage cost no message an attempt: only a message cut off in flight was retried.
    assert sum(1 for r in _rows(store_engine) if r.attempts > 1) <= 4


def test_a_closed_port_waits_for_the_server_to_appear(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    port = _free_port()
    server = SmtpTestServer()
    project = email_project(make_project, f"smtp://127.0.0.1:{port}", batch_size=50)
    emails = add_subscribers(store_engine, 120)
    starter = threading.Timer(4.0, lambda: server.start(port))
    starter.start()
    ctx = context(project, store_engine)
    try:
        report = fire(ctx, may_day(project))
    finally:
        ctx.close()
        starter.join()
        server.stop()
    assert (report.result.sent, report.result.failed) == (120, 0)
    assert _one_message_each(server, emails) == 0
    assert {r.attempts for r in _rows(store_engine)} == {1}


def test_after_the_retry_window_they_fail_and_scheduler_retry_sends_them(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    port = _free_port()
    project = email_project(
        make_project, f"smtp://127.0.0.1:{port}", batch_size=20, extra=', retry_window: "0m"'
    )
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    emails = add_subscribers(engine, 30)
    ctx = context(project, engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (0, 30)
    (reason,) = report.result.reasons
    assert reason.startswith("server unreachable for the whole retry window (0m)")
    assert "refused" in reason.lower()

    with SmtpTestServer() as server:
        server.stop()
        server.start(port)
        server.reject_rcpt[emails[0]] = f"554 5.7.1 <{emails[0]}>: Relay access denied"
        first = _cli(project.path, db_url, "retry", OCC, "--json")
        assert first.returncode == 1, first.stderr  # the one refused again
        data = json.loads(first.stdout)
        assert data["retried"] == {"email": 30}
        assert (data["sent"], data["failed"]) == (29, 1)
        del server.reject_rcpt[emails[0]]
        # A bounce is left alone by retry, and so is every message already sent.
        server.reject_rcpt[emails[0]] = f"550 5.1.1 <{emails[0]}>: User unknown"
        again = _cli(project.path, db_url, "retry", OCC, "--channel", "email")
        assert again.returncode == 1, again.stderr
        assert "retried 1 failed deliveries" in again.stdout
        third = _cli(project.path, db_url, "retry", OCC)
        assert third.returncode == 0, third.stderr
        assert "no failed deliveries to retry (left alone: 1 bounced)" in third.stdout
        assert _one_message_each(server, emails[1:]) == 0
    rows = {int(r.subscriber_id): r for r in _rows(engine)}  # type: ignore[arg-type]
    retried = [r for r in rows.values() if r.state == "sent"]
    assert len(retried) == 29 and all(r.retries == 1 and r.retried_at for r in retried)
    assert all("unreachable" in (r.retried_error or "") for r in retried)
    bounced = [r for r in rows.values() if r.state == "failed"]
    assert len(bounced) == 1 and bounced[0].retries == 2
    assert "Relay access denied" in bounced[0].retried_error
    assert bounced[0].last_error.startswith("bounced: 550 5.1.1")
    engine.dispose()


def test_retry_names_an_unknown_occurrence(make_project: ProjectFactory, tmp_path: Path) -> None:
    project = email_project(make_project)
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    result = _cli(project.path, db_url, "retry", "may-day/2030/statment")
    assert result.returncode == 2
    assert "has not been sent" in result.stderr


def test_a_rerun_after_a_killed_sender_waits_for_its_lease_and_sends_the_rest(
    make_project: ProjectFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    project = email_project(
        make_project,
        smtp_server.url,
        batch_size=200,
        extra=", rate_per_second: 40, connections: 2",
    )
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    emails = add_subscribers(engine, 200)
    env = {
        **os.environ,
        "SCHEDULER_DATABASE_URL": db_url,
        "SCHEDULER_CONFIG": str(project.path),
        "SCHEDULER_LEASE_SECONDS": "6",
    }
    command = [sys.executable, "-m", "scheduler", "send", "may-day", "--occurrence", OCC, "--now"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(smtp_server.messages) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert 30 <= len(smtp_server.messages) < 200
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "held by another sender, or were left by one that stopped; waiting" in rerun.stderr
    # Copies only of what the killed sender had sent but not yet written down (outcomes are
    # written every 0.2 s), each with the same Message-ID.
    assert _one_message_each(smtp_server, emails) <= 20
    assert ledger.counts(engine, OCC)[OCC]["email"] == {"sent": 200}
    engine.dispose()


def test_no_wait_says_what_is_held_and_exits_1(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = email_project(make_project)
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    add_subscribers(engine, 5)
    ctx = context(project, engine)
    occ = may_day(project)
    ledger.claim_occurrence(engine, occ)
    ledger.fan_out_email(engine, occ.id, "email", ["members"])
    ledger.mark_fanned_out(engine, occ.id)
    lo, hi = ledger.id_range(engine, occ.id, "email")  # type: ignore[misc]
    import datetime as dt

    ledger.claim_batch(engine, occ.id, "email", lo, hi + 1, lease=dt.timedelta(minutes=5))
    ctx.close()
    result = _cli(
        project.path, db_url, "send", "may-day", "--occurrence", OCC, "--no-wait", "--now"
    )
    assert result.returncode == 1
    assert "5 deliveries are held by another sender" in result.stdout
    engine.dispose()


def test_failure_reasons_are_grouped_without_addresses(
    make_project: ProjectFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url, batch_size=100)
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    emails = add_subscribers(engine, 60)
    for e in emails[:50]:
        smtp_server.reject_rcpt[e] = (
            f"550 5.1.1 <{e}>: Recipient address rejected: User unknown in virtual mailbox table"
        )
    ctx = context(project, engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (10, 50)
    expected = (
        "bounced: 550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert report.result.reasons == {expected: 50}
    status = _cli(project.path, db_url, "status")
    assert status.returncode == 0, status.stderr
    assert f"{OCC} email: 50 × {expected}" in status.stdout
    assert "@example.org" not in status.stdout
    engine.dispose()


def test_reason_keys_drop_addresses_and_stages() -> None:
    assert reason_key("bounced: 550 5.1.1 <a@b.org>: User unknown (after RCPT)") == (
        "bounced: 550 5.1.1 User unknown"
    )
    assert reason_key("permanent: 550 Mailbox a.b@c.org is full (after DATA)") == (
        "permanent: 550 Mailbox is full"
    )
    assert reason_key("cannot compose: recipient address 'x@ex.org' is bad") == (
        "cannot compose: recipient address is bad"
    )


def test_a_platform_behind_a_down_gateway_costs_the_post_no_attempt(
    make_project: ProjectFactory,
    store_engine: Engine,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_posting_delivery import project as post_project

    monkeypatch.setenv("MASTODON_TOKEN", TOKEN)
    masto = FakeMastodon(httpserver, script=[502] * 7).install()
    proj = post_project(make_project, httpserver, "mastodon", long=False)
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append)
    report = fire(ctx, may_day(proj))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (1, 0)
    # Seven waits (a long one is slept in slices shorter than the lease), one post.
    assert report.result.retried == 7 and len(sleeps) >= 7 and len(masto.statuses) == 1
    (row,) = _rows(store_engine)
    assert row.attempts == 1  # a down platform is not the post's failure


def test_a_platform_that_cannot_be_reached_gives_up_after_its_window(
    make_project: ProjectFactory,
    store_engine: Engine,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_posting_delivery import project as post_project

    monkeypatch.setenv("MASTODON_TOKEN", TOKEN)
    FakeMastodon(httpserver).install()
    proj = post_project(make_project, httpserver, "mastodon", long=False)
    text = proj.path.read_text()
    port = _free_port()
    assert origin(httpserver) in text
    text = text.replace(origin(httpserver), f"http://127.0.0.1:{port}")
    text = text.replace("type: mastodon,", 'type: mastodon, retry_window: "0m",')
    proj.path.write_text(text)
    from scheduler.config.project import load_project

    proj = load_project(proj.path)
    ctx = context(proj, store_engine)
    report = fire(ctx, may_day(proj))
    ctx.close()
    assert report.result.failed == 1
    ((_, reason, _),) = ledger.failures(store_engine, OCC)
    assert reason.startswith("mastodon unreachable for the whole retry window (0m)")


def test_a_server_that_keeps_closing_with_421_is_an_outage_not_the_messages_fault(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = email_project(make_project, smtp_server.url, extra=', retry_window: "0m"')
    add_subscribers(store_engine, 3)
    smtp_server.fail_next_data("421 4.7.0 Too busy, closing", times=1000)
    ctx = context(project, store_engine)
    report = fire(ctx, may_day(project))
    ctx.close()
    assert (report.result.sent, report.result.failed) == (0, 3)
    assert {r.attempts for r in _rows(store_engine)} == {1}
    (reason,) = report.result.reasons
    assert reason == (
        "server unreachable for the whole retry window (0m): 421 4.7.0 Too busy, closing"
    )
