"""Subscribers' rights: erasure leaves no trace of the address in any table and blocks a
re-import; export is complete; retention cuts old deliveries loose from their people."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from listhealth_helpers import Sent, health_project, sample, send_may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine
from web_helpers import csrf, page, subscriber_token, web_app

from scheduler.audience.csvfile import SubscriberRow
from scheduler.config.project import Project
from scheduler.delivery import ledger
from scheduler.listhealth import events, privacy
from scheduler.listhealth.mailbox import classify
from scheduler.store.schema import metadata
from scheduler.store.subscribers import import_rows, memberships_of, subscriber

KEY = "test-secret-key-for-rights"


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_SECRET_KEY", KEY)


def person(i: int) -> str:
    return f"person{i}@example.org"


@pytest.fixture
def sent(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> tuple[Project, dict[str, Sent]]:
    project = health_project(make_project, smtp_server.url)
    # The server's refusal quotes the address; the ledger keeps the reply.
    smtp_server.reject_rcpt[person(5)] = f"550 5.1.1 <{person(5)}>: Recipient address rejected"
    by_rcpt = send_may_day(project, store_engine, smtp_server, n=6, expect_sent=5)
    report = classify(store_engine, sample("dsn-mailbox-full.eml", by_rcpt[person(1)]))
    events.apply(store_engine, project.config, report)
    return project, by_rcpt


def cli(project: Project, engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env["SCHEDULER_SECRET_KEY"] = KEY
    env["SCHEDULER_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        cwd=project.base_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def everything(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        return [
            (table.name, dict(row._mapping))
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
        ]


def traces(engine: Engine, email: str, subscriber_id: int) -> list[tuple[str, dict[str, Any]]]:
    """Every row that still names the address, or links to the subscriber id."""
    found = []
    for table, row in everything(engine):
        text = json.dumps(row, default=str).lower()
        linked = any(
            row.get(column) in (subscriber_id, str(subscriber_id))
            for column in ("subscriber_id", "recipient")
        ) or (table == "subscribers" and row.get("id") == subscriber_id)
        if email.lower() in text or email.split("@")[0] in text or linked:
            found.append((table, row))
    return found


def test_export_holds_everything_about_a_person(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine
) -> None:
    project, by_rcpt = sent
    done = cli(project, store_engine, "subscribers", "export", person(1))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["email"] == person(1)
    assert data["subscriber"]["name"] == "Person 1"
    assert [m["list_name"] for m in data["memberships"]] == ["members"]
    (delivery,) = data["deliveries"]
    assert delivery["occurrence_id"] == "may-day/2030/statement"
    assert delivery["message_id"] == by_rcpt[person(1)].message_id
    (report,) = data["reports"]
    assert (report["kind"], report["detail"]) == ("soft_bounce", "bounce 5.2.2")
    # Every stored field of the subscriber row is in the export.
    stored = subscriber(store_engine, person(1))
    assert stored is not None
    assert set(data["subscriber"]) == set(stored) - {"email_key"}
    missing = cli(project, store_engine, "subscribers", "export", "nobody@example.org")
    assert missing.returncode == 1


def test_forget_leaves_no_trace_and_blocks_a_reimport(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine
) -> None:
    project, _ = sent
    for who in (person(1), person(5)):
        stored = subscriber(store_engine, who)
        assert stored is not None
        sid = int(stored["id"])
        assert traces(store_engine, who, sid)  # the check below can see them
        done = cli(project, store_engine, "subscribers", "forget", who, "--yes", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["found"] is True
        assert traces(store_engine, who, sid) == []
    # The others are untouched, and the ledger's counts are what they were.
    assert memberships_of(store_engine, person(2)) == {"members": "active"}
    counts = ledger.counts(store_engine)["may-day/2030/statement"]["email"]
    assert counts == {"sent": 5, "failed": 1}

    # An old CSV with the erased addresses adds nobody back; a new address still joins.
    rows = [
        SubscriberRow(email=person(1).upper(), name="Person 1", language="en", row=2),
        SubscriberRow(email=person(5), name="Person 5", language="en", row=3),
        SubscriberRow(email="new@example.org", name="New", language="en", row=4),
    ]
    report = import_rows(store_engine, "members", rows, source="old.csv")
    assert (report.skipped_suppressed, report.inserted) == (2, 1)
    assert subscriber(store_engine, person(1)) is None
    assert subscriber(store_engine, person(5)) is None


def test_retention_cuts_old_deliveries_loose(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine
) -> None:
    project, _ = sent
    before = ledger.counts(store_engine)
    assert privacy.apply_retention(store_engine, older_than=dt.timedelta(days=180)) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=181)
    assert privacy.apply_retention(store_engine, older_than=dt.timedelta(days=180), now=later) == 6
    with store_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT subscriber_id, recipient, last_error FROM deliveries"))
        rows = list(rows)
    assert all(r.subscriber_id is None and r.recipient.startswith("erased:") for r in rows)
    assert not any(person(5) in (r.last_error or "") for r in rows)
    assert ledger.counts(store_engine) == before
    # The people themselves are still subscribers; only the record of who got what is gone.
    assert memberships_of(store_engine, person(0)) == {"members": "active"}
    done = cli(project, store_engine, "subscribers", "retention", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"days": 180, "deliveries": 0}


def test_the_preferences_page_offers_erasure(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine
) -> None:
    project, _ = sent
    stored = subscriber(store_engine, person(2))
    assert stored is not None
    client = web_app(project, store_engine).test_client()
    token = subscriber_token("preferences", int(stored["id"]), person(2))
    html = page(client, f"/preferences/{token}")
    assert f'action="/preferences/{token}/forget"' in html
    unconfirmed = client.post(f"/preferences/{token}/forget", data={"csrf_token": csrf(html)})
    assert unconfirmed.status_code == 303
    assert subscriber(store_engine, person(2)) is not None
    html = page(client, unconfirmed.headers["Location"])
    assert "Tick the box" in html
    done = client.post(
        f"/preferences/{token}/forget", data={"csrf_token": csrf(html), "confirm": "yes"}
    )
    assert done.status_code == 200
    assert "Your data is erased" in done.get_data(as_text=True)
    assert traces(store_engine, person(2), int(stored["id"])) == []
    # The link is dead now.
    assert client.get(f"/preferences/{token}").status_code == 400
