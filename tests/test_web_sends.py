"""Sending by hand from the dashboard: "Send now" with the CLI's early-send guard as a
confirmation form, "Retry failed" for an occurrence and for one channel, "Send the channels
still planned"; organizers only, with CSRF, in the audit log. Flask's test client on a real
store; the browser test is in test_web_browser_sends.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day, outbox
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from test_web_accounts import PASSWORD, account, post, sign_in
from web_helpers import csrf, page, web_app, web_project

from scheduler.accounts import audit
from scheduler.config.project import Project, load_project
from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.store.schema import Role, deliveries

OCC = "may-day/2030/statement"
INSTANT = dt.datetime(2030, 5, 1, 7, 0, tzinfo=dt.UTC)  # 09:00 in Madrid
TEN_DAYS_BEFORE = INSTANT - dt.timedelta(days=10)
HOOK = "/api/webhooks/9/public"

__all__ = ["PASSWORD"]


@pytest.fixture(autouse=True)
def webhook(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> Iterator[None]:
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", httpserver.url_for(HOOK))
    yield


def two_channel_project(make_project: ProjectFactory) -> Project:
    """The web project, its step on email and a Discord webhook."""
    project = web_project(make_project)
    text = project.path.read_text()
    text = text.replace(
        "channels:\n",
        'channels:\n  discord: {type: discord, webhook_url: "${DISCORD_WEBHOOK_URL}"}\n',
        1,
    ).replace("channels: [email]", "channels: [email, discord]")
    project.path.write_text(text)
    return load_project(project.path)


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    return two_channel_project(make_project)


@pytest.fixture
def engine(store_engine: Engine) -> Engine:
    account(store_engine, "viewer@example.org", Role.VIEWER)
    account(store_engine, "org@example.org", Role.ORGANIZER)
    account(store_engine, "madrid@example.org", Role.ORGANIZER, chapter="madrid")
    add_subscribers(store_engine, 3)
    return store_engine


def client(project: Project, engine: Engine, who: str, now: dt.datetime) -> FlaskClient:
    c = web_app(project, engine, now=lambda: now).test_client()
    sign_in(c, who)
    return c


def fail_some(engine: Engine, channel: str, n: int, occurrence_id: str = OCC) -> None:
    with engine.begin() as conn:
        ids = conn.execute(
            sa.select(deliveries.c.id)
            .where(deliveries.c.occurrence_id == occurrence_id, deliveries.c.channel == channel)
            .order_by(deliveries.c.id)
            .limit(n)
        ).scalars()
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(list(ids)))
            .values(state="failed", last_error="451 4.3.0 try again later")
        )


def states(engine: Engine) -> dict[str, dict[str, int]]:
    return ledger.counts(engine, OCC).get(OCC, {})


def test_send_now_asks_first_when_it_is_early(
    project: Project, engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    org = client(project, engine, "org@example.org", TEN_DAYS_BEFORE)
    html = page(org, f"/dashboard/occurrences/{OCC}")
    assert 'id="send-now"' in html and 'id="send-planned"' not in html
    asked = post(org, f"/dashboard/occurrences/{OCC}/send")
    assert asked.status_code == 200  # a question, not a send
    question = asked.get_data(as_text=True)
    assert "is due 2030-05-01 09:00 +02:00, in 10 days; sending it now puts it out early" in (
        question
    )
    assert 'name="confirm" value="2030-05-01T07:00:00+00:00"' in question
    assert ledger.get_occurrence(engine, OCC) is None and outbox(project) == []
    # A confirmation of another instant (a stale form) asks again.
    again = post(org, f"/dashboard/occurrences/{OCC}/send", confirm="2030-05-02T07:00:00+00:00")
    assert again.status_code == 200 and ledger.get_occurrence(engine, OCC) is None
    sent = org.post(
        f"/dashboard/occurrences/{OCC}/send",
        data={"csrf_token": csrf(question), "confirm": "2030-05-01T07:00:00+00:00"},
    )
    assert sent.status_code == 303
    row = ledger.get_occurrence(engine, OCC)
    assert row is not None and row.state == "done"
    assert str(row.note).startswith("sent by hand early: May Day 2030 statement is due")
    assert states(engine) == {"email": {"sent": 3}, "discord": {"sent": 1}}
    assert len(httpserver.log) == 1
    [entry] = [e for e in audit.entries(engine) if e.action == "occurrence.send"]
    assert entry.actor == "org@example.org" and entry.target == OCC
    assert "channels=email,discord" in str(entry.detail)


def test_on_time_it_sends_at_once(project: Project, engine: Engine, httpserver: HTTPServer) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    org = client(project, engine, "org@example.org", INSTANT - dt.timedelta(minutes=30))
    assert post(org, f"/dashboard/occurrences/{OCC}/send").status_code == 303
    assert states(engine) == {"email": {"sent": 3}, "discord": {"sent": 1}}


def test_retry_failed_per_occurrence_and_per_channel(
    project: Project, engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_oneshot_request(HOOK, method="POST").respond_with_data("no", status=400)
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    fire(context(project, engine), may_day(project))
    fail_some(engine, "email", 2)
    assert states(engine) == {"email": {"sent": 1, "failed": 2}, "discord": {"failed": 1}}
    org = client(project, engine, "org@example.org", TEN_DAYS_BEFORE)
    html = page(org, f"/dashboard/occurrences/{OCC}")
    assert "Retry failed deliveries (3)" in html
    assert "Retry failed on email (2)" in html and "Retry failed on discord (1)" in html
    done = post(org, f"/dashboard/occurrences/{OCC}/retry", channel="discord")
    assert done.status_code == 303
    assert states(engine) == {"email": {"sent": 1, "failed": 2}, "discord": {"sent": 1}}
    assert post(org, f"/dashboard/occurrences/{OCC}/retry").status_code == 303
    assert states(engine) == {"email": {"sent": 3}, "discord": {"sent": 1}}
    html = page(org, f"/dashboard/occurrences/{OCC}")
    assert "no failed deliveries" not in html and 'id="retry-failed"' not in html
    post(org, f"/dashboard/occurrences/{OCC}/retry")
    assert "no failed deliveries to retry" in page(org, f"/dashboard/occurrences/{OCC}")
    assert post(org, f"/dashboard/occurrences/{OCC}/retry", channel="nowhere").status_code == 400
    retries = [e.detail for e in audit.entries(engine) if e.action == "occurrence.retry"]
    assert retries == ["channels=all; requeued=2", "channels=discord; requeued=1"]


def test_send_the_channels_still_planned(
    project: Project, engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    fire(context(project, engine), may_day(project), channels=["email"])  # `send --channel`
    org = client(project, engine, "org@example.org", TEN_DAYS_BEFORE)
    html = page(org, f"/dashboard/occurrences/{OCC}")
    assert "Send the channels still planned (discord)" in html
    asked = post(org, f"/dashboard/occurrences/{OCC}/send-planned")
    assert asked.status_code == 200 and "in 10 days" in asked.get_data(as_text=True)
    assert states(engine) == {"email": {"sent": 3}}
    sent = post(
        org, f"/dashboard/occurrences/{OCC}/send-planned", confirm="2030-05-01T07:00:00+00:00"
    )
    assert sent.status_code == 303
    assert states(engine) == {"email": {"sent": 3}, "discord": {"sent": 1}}
    assert 'id="send-planned"' not in page(org, f"/dashboard/occurrences/{OCC}")
    assert [e.detail for e in audit.entries(engine) if e.action == "occurrence.send_planned"] == [
        "channels=discord; sent by hand early: May Day 2030 statement is due 2030-05-01 09:00 "
        "+02:00, in 10 days; sending it now puts it out early"
    ]


SENDS = ("send", "send-planned", "retry")


def test_viewers_other_chapters_and_forged_forms_send_nothing(
    project: Project, engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    fire(context(project, engine), may_day(project), channels=["email"])
    fail_some(engine, "email", 1)
    before = states(engine)
    confirm = {"confirm": "2030-05-01T07:00:00+00:00"}
    viewer = client(project, engine, "viewer@example.org", TEN_DAYS_BEFORE)
    html = page(viewer, f"/dashboard/occurrences/{OCC}")
    assert 'id="send-now"' not in html and 'id="retry-failed"' not in html
    madrid = client(project, engine, "madrid@example.org", TEN_DAYS_BEFORE)
    org = client(project, engine, "org@example.org", TEN_DAYS_BEFORE)
    for action in SENDS:
        url = f"/dashboard/occurrences/{OCC}/{action}"
        assert post(viewer, url, **confirm).status_code == 403, url
        # may-day is the alliance's: a Madrid organizer may not send it.
        assert post(madrid, url, **confirm).status_code == 403, url
        assert org.post(url, data=confirm).status_code == 400, url  # no CSRF token
        assert org.post(url, data={"csrf_token": "forged", **confirm}).status_code == 400, url
    assert states(engine) == before and len(httpserver.log) == 0
    denied = [e for e in audit.entries(engine) if e.action == "denied"]
    assert {e.actor for e in denied} == {"viewer@example.org", "madrid@example.org"}
    assert not [e for e in audit.entries(engine) if e.action.startswith("occurrence.")]


def test_an_unapproved_occurrence_is_not_sent_by_hand(
    make_project: ProjectFactory, engine: Engine, httpserver: HTTPServer
) -> None:
    project = two_channel_project(make_project)
    text = project.path.read_text().replace(
        "    audience: [members]\n", "    audience: [members]\n    review: required\n"
    )
    project.path.write_text(text)
    project = load_project(project.path)
    account(engine, "ana@example.org", Role.APPROVER)
    org = client(project, engine, "org@example.org", INSTANT - dt.timedelta(minutes=5))
    assert 'id="send-now"' not in page(org, f"/dashboard/occurrences/{OCC}")
    assert post(org, f"/dashboard/occurrences/{OCC}/send").status_code == 303
    html = page(org, f"/dashboard/occurrences/{OCC}")
    assert "needs review before it is sent: waiting for 1 approval(s)" in html
    assert ledger.get_occurrence(engine, OCC) is None and len(httpserver.log) == 0


def test_send_now_past_the_catch_up_window_asks_too(
    project: Project, engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    org = client(project, engine, "org@example.org", INSTANT + dt.timedelta(hours=7))
    asked = post(org, f"/dashboard/occurrences/{OCC}/send")
    question = asked.get_data(as_text=True)
    assert asked.status_code == 200
    assert "was due 2030-05-01 09:00 +02:00, 7 hours ago, past its catch-up window" in question
    assert ledger.get_occurrence(engine, OCC) is None
    sent = post(org, f"/dashboard/occurrences/{OCC}/send", confirm="2030-05-01T07:00:00+00:00")
    assert sent.status_code == 303
    row = ledger.get_occurrence(engine, OCC)
    assert row is not None and str(row.note).startswith("sent by hand late: ")
    assert states(engine) == {"email": {"sent": 3}, "discord": {"sent": 1}}
