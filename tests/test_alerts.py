"""Alerts: by email to the organizers and to the alert channel (a webhook-backed post channel
on a local HTTP server), once per cause; a failure rate over the threshold, a token a platform
refused, a list sync with bad rows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import ProjectFactory
from delivery_helpers import context, may_day
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from web_helpers import letters

from scheduler.accounts import store as accounts
from scheduler.config.project import Project, load_project
from scheduler.delivery import alerts
from scheduler.delivery.fire import fire
from scheduler.store.schema import Role

PROJECT = """\
organization:
  name: Test Org
  website: https://example.org
  postal_address: 1 Main Street, Town
  timezone: Europe/Madrid
  languages: [en]
senders:
  org: {name: Test Org, address: news@example.org}
lists:
  members: {source: members.csv}
channels:
  email: {type: smtp, url: "file:outbox", sender: org}
  discord: {type: discord, webhook_url: "${DISCORD_WEBHOOK_URL}"}
  ops: {type: discord, webhook_url: "${OPS_WEBHOOK_URL}"}
settings:
  alert_channel: ops
  alert_failure_rate: 0.1
campaigns:
  may-day:
    name: May Day
    date: "05-01"
    time: "09:00"
    statement: may-day
    audience: [members]
    steps:
      statement:
        channels: [CHANNELS]
        template: statement
"""


@pytest.fixture(autouse=True)
def webhooks(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> Iterator[None]:
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", httpserver.url_for("/api/webhooks/9/public"))
    monkeypatch.setenv("OPS_WEBHOOK_URL", httpserver.url_for("/api/webhooks/1/ops"))
    httpserver.expect_request("/api/webhooks/1/ops", method="POST").respond_with_json({"id": "100"})
    yield


def make(make_project: ProjectFactory, engine: Engine, channels: str, csv: str) -> Project:
    project = load_project(make_project(PROJECT.replace("CHANNELS", channels), members_csv=csv))
    accounts.add(engine, "org@example.org", Role.ORGANIZER)
    accounts.add(engine, "viewer@example.org", Role.VIEWER)
    return project


def ops_posts(server: HTTPServer) -> list[str]:
    return [
        json.loads(req.get_data())["content"]
        for req, _ in server.log
        if req.path == "/api/webhooks/1/ops"
    ]


def test_failure_rate_alerts_once(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    project = make(make_project, store_engine, "email", "email\n")
    ctx = context(project, store_engine)
    occ = "may-day/2030/statement"
    assert not alerts.failure_rate(ctx, occ, "may-day", failed=1, total=100)  # under 10 %
    assert alerts.failure_rate(ctx, occ, "may-day", failed=30, total=100)
    assert not alerts.failure_rate(ctx, occ, "may-day", failed=40, total=100)  # same cause
    [letter] = letters(project)
    assert letter["To"] == "org@example.org"
    assert "30 of 100 deliveries failed" in str(letter["Subject"])
    [posted] = ops_posts(httpserver)
    assert "30 of 100 deliveries failed" in posted and "30%" in posted


def test_a_refused_token_alerts(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/webhooks/9/public", method="POST").respond_with_json(
        {"message": "Invalid Webhook Token", "code": 50027}, status=401
    )
    project = make(make_project, store_engine, "discord", "email\n")
    report = fire(context(project, store_engine), may_day(project))
    assert report.result.failed == 1
    subjects = [str(m["Subject"]) for m in letters(project)]
    assert subjects == ["[Test Org] discord: the platform refused the credential"]
    [posted] = ops_posts(httpserver)
    assert "HTTP 401" in posted and "token was refused" in posted
    # The webhook URL is the secret: it never shows in an alert.
    assert "/api/webhooks/9/public" not in posted


def test_bad_rows_in_a_list_source_alert_once(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    csv = "email,name\nana@example.org,Ana\nnot-an-address,Bo\n"
    project = make(make_project, store_engine, "email", csv)
    ctx = context(project, store_engine)
    fire(ctx, may_day(project))
    fire(ctx, may_day(project, 2031))  # the same bad row: no second alert
    alerts_sent = [m for m in letters(project) if "were not imported" in str(m["Subject"])]
    assert len(alerts_sent) == 1
    body = alerts_sent[0].get_body(preferencelist=("plain",))
    assert body is not None and "members.csv:3" in str(body.get_content())  # type: ignore[attr-defined]
    assert len(ops_posts(httpserver)) == 1


def test_the_alert_channel_is_validated(make_project: ProjectFactory) -> None:
    from scheduler.validate import validate_project

    for value, message in (("opps", "unknown channel 'opps'"), ("email", "is an email channel")):
        path = make_project(
            members_csv="email\n",
            yaml_text=PROJECT.replace("CHANNELS", "email").replace(
                "alert_channel: ops", f"alert_channel: {value}"
            ),
        )
        report = validate_project(path)
        assert not report.ok
        [problem] = report.errors
        assert message in problem.message and problem.line == 16, problem.format()
