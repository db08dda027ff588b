"""`status` and the dashboard count bounces, complaints and unsubscribes per occurrence and
per list over time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ProjectFactory
from listhealth_helpers import health_project, sample, send_may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine
from web_helpers import DASHBOARD_TOKEN, web_app

from scheduler.config.project import Project
from scheduler.listhealth import events, stats
from scheduler.listhealth.mailbox import classify
from scheduler.listhealth.stats import week_of
from scheduler.store.schema import utcnow

KEY = "test-secret-key-for-stats"
OCC = "may-day/2030/statement"


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_SECRET_KEY", KEY)


def person(i: int) -> str:
    return f"person{i}@example.org"


@pytest.fixture
def reported(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> Project:
    project = health_project(make_project, smtp_server.url)
    smtp_server.reject_rcpt[person(5)] = "550 5.1.1 No such user"
    by_rcpt = send_may_day(project, store_engine, smtp_server, n=6, expect_sent=5)
    for name, who in (
        ("dsn-postfix-hard.eml", 0),
        ("dsn-mailbox-full.eml", 1),
        ("arf-abuse.eml", 2),
        ("unsubscribe-request.eml", 3),
    ):
        report = classify(store_engine, sample(name, by_rcpt[person(who)]))
        assert events.apply(store_engine, project.config, report).new
    return project


def test_counts_per_occurrence_and_per_list_week(reported: Project, store_engine: Engine) -> None:
    health = stats.by_occurrence(store_engine, [OCC])[OCC]
    # The mailbox's hard bounce and the refusal at RCPT time are both hard bounces.
    assert health.as_dict() == {
        "hard_bounces": 2,
        "soft_bounces": 1,
        "complaints": 1,
        "unsubscribes": 1,
    }
    week = week_of(utcnow())
    per_list = stats.by_list(store_engine)
    assert list(per_list) == ["members"]
    assert per_list["members"][week].as_dict() == {
        "hard_bounces": 2,
        "soft_bounces": 0,
        "complaints": 1,
        "unsubscribes": 1,
    }


def test_status_json_and_dashboard_show_list_health(
    reported: Project, store_engine: Engine
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env["SCHEDULER_DATABASE_URL"] = store_engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-m", "scheduler", "status", "--json"],
        cwd=reported.base_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (occurrence,) = data["occurrences"]
    assert occurrence["list_health"]["complaints"] == 1
    (week,) = data["lists"]["members"]
    assert week["week"] == week_of(utcnow()).isoformat() and week["unsubscribes"] == 1
    table = subprocess.run(
        [sys.executable, "-m", "scheduler", "status"],
        cwd=reported.base_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "2+1 / 1 / 1" in table.stdout and "Left the lists, by week" in table.stdout

    client = web_app(reported, store_engine).test_client()
    html = client.get(
        "/dashboard", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    ).get_data(as_text=True)
    assert 'id="health"' in html
    section = html.split('id="health"', 1)[1]
    assert f"<code>{OCC}</code>" in section and "2 + 1" in section
    assert week_of(utcnow()).isoformat() in section


def test_a_one_click_unsubscribe_counts_for_its_mailing_once(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = health_project(make_project, smtp_server.url)
    by_rcpt = send_may_day(project, store_engine, smtp_server, n=2)
    client = web_app(project, store_engine).test_client()
    url = by_rcpt[person(0)].list_unsubscribe.split(">", 1)[0].lstrip("<")
    path = "/" + url.split("/", 3)[3]
    for _ in range(2):  # a mail client may send it twice
        response = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
    assert stats.by_occurrence(store_engine, [OCC])[OCC].unsubscribes == 1
