"""The dashboard with organizer accounts: sign-in, sessions, lockout, roles, every action, the
review page, and the read-only token. Flask's test client on a real store; the browser tests
are in test_web_browser_actions.py."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import ProjectFactory
from delivery_helpers import context, may_day
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine
from web_helpers import DASHBOARD_TOKEN, csrf, letters, page, web_app, web_project

from scheduler.accounts import audit, lockout
from scheduler.accounts import store as accounts
from scheduler.config.project import Project, load_project
from scheduler.delivery import clock_state, ledger
from scheduler.delivery.fire import fire
from scheduler.review import approvals
from scheduler.store.schema import Role
from scheduler.web import Limit, Limits

PASSWORD = "a long enough passphrase"
NOW = dt.datetime(2030, 4, 20, 12, 0, tzinfo=dt.UTC)  # before May Day 2030
OCC = "may-day/2030/statement"


def account(engine: Engine, email: str, role: Role, chapter: str | None = None) -> None:
    found = accounts.add(engine, email, role, chapter)
    accounts.set_password(engine, found.id, PASSWORD)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD, ip: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    token = csrf(page(client, "/dashboard/login"))
    return client.post(
        "/dashboard/login",
        data={"csrf_token": token, "email": email, "secret": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def post(client: FlaskClient, url: str, **data: str):  # type: ignore[no-untyped-def]
    token = csrf(page(client, "/dashboard"))
    return client.post(url, data={"csrf_token": token, **data})


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    return web_project(make_project)


@pytest.fixture
def engine(store_engine: Engine) -> Engine:
    account(store_engine, "viewer@example.org", Role.VIEWER)
    account(store_engine, "org@example.org", Role.ORGANIZER)
    account(store_engine, "ana@example.org", Role.APPROVER)
    account(store_engine, "madrid@example.org", Role.APPROVER, chapter="madrid")
    return store_engine


def client_for(project: Project, engine: Engine, **kwargs: object) -> FlaskClient:
    kwargs.setdefault("now", lambda: NOW)
    return web_app(project, engine, **kwargs).test_client()  # type: ignore[arg-type]


def test_sign_in_with_an_account(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    before = page(client, "/dashboard/login")
    assert 'name="email"' in before
    response = sign_in(client, "ORG@example.org")
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert "Expires=" in cookie
    html = page(client, "/dashboard")
    assert "org@example.org (organizer)" in html
    assert [e.action for e in audit.entries(engine)][:1] == ["login"]
    assert audit.entries(engine)[0].origin == "127.0.0.1"


def test_wrong_password_and_unknown_address_look_the_same(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    wrong = sign_in(client, "org@example.org", "not the password at all")
    unknown = sign_in(client, "nobody@example.org", "not the password at all")
    assert wrong.status_code == unknown.status_code == 403
    strip = lambda r: re.sub(r'value="[^"]+"', "", r.get_data(as_text=True))  # noqa: E731
    assert strip(wrong) == strip(unknown)


def test_lockout_stops_one_client_not_the_organizer(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    for _ in range(lockout.MAX_FAILURES):
        assert (
            sign_in(client, "ana@example.org", "guess guess guess", ip="203.0.113.5").status_code
            == 403
        )
    locked = sign_in(client, "ana@example.org", PASSWORD, ip="203.0.113.5")
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.get_data(as_text=True)
    # An address without an account locks the same way: the lockout tells nothing.
    for _ in range(lockout.MAX_FAILURES):
        sign_in(client, "ghost@example.org", "guess guess guess", ip="203.0.113.5")
    assert sign_in(client, "ghost@example.org", "x", ip="203.0.113.5").status_code == 429
    # Ana, from her own address, signs in.
    other = client_for(project, engine)
    assert sign_in(other, "ana@example.org", PASSWORD, ip="198.51.100.20").status_code == 303


def test_login_rate_limit_per_client(project: Project, engine: Engine) -> None:
    client = client_for(project, engine, limits=Limits(login_per_ip=Limit(2, 900)))
    codes = [sign_in(client, f"x{i}@example.org", "nope nope nope").status_code for i in range(3)]
    assert codes == [403, 403, 429]


def test_session_fixation_and_ending_sessions(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    page(client, "/dashboard/login")
    planted = client.get_cookie("scheduler_session")
    assert planted is not None
    sign_in(client, "org@example.org")
    fresh = client.get_cookie("scheduler_session")
    assert fresh is not None and fresh.value != planted.value
    # The cookie from before the sign-in is not signed in.
    attacker = client_for(project, engine)
    attacker.set_cookie("scheduler_session", planted.value, domain="localhost")
    assert attacker.get("/dashboard").status_code == 302
    # A password change ends older sessions; so does removing the account.
    org = accounts.get(engine, "org@example.org")
    assert org is not None
    accounts.set_password(engine, org.id, PASSWORD + " new")
    assert client.get("/dashboard").status_code == 302
    sign_in(client, "ana@example.org")
    assert client.get("/dashboard").status_code == 200
    accounts.remove(engine, "ana@example.org")
    assert client.get("/dashboard").status_code == 302


def test_a_one_time_link_sets_the_password(project: Project, store_engine: Engine) -> None:
    new = accounts.add(store_engine, "new@example.org", Role.ORGANIZER)
    token = accounts.issue_link(store_engine, new.id)
    client = client_for(project, store_engine)
    form = page(client, f"/dashboard/password/{token}")
    assert "new@example.org" in form
    differ = client.post(
        f"/dashboard/password/{token}",
        data={"csrf_token": csrf(form), "password": PASSWORD, "again": PASSWORD + "x"},
    )
    assert differ.status_code == 400
    done = client.post(
        f"/dashboard/password/{token}",
        data={"csrf_token": csrf(form), "password": PASSWORD, "again": PASSWORD},
    )
    assert done.status_code == 303
    assert client.get(f"/dashboard/password/{token}").status_code == 404  # used up
    assert sign_in(client, "new@example.org").status_code == 303


def test_viewers_and_the_token_only_read(project: Project, engine: Engine) -> None:
    token_client = client_for(project, engine)
    headers = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    assert token_client.get("/dashboard", headers=headers).status_code == 200
    assert (
        token_client.post("/dashboard/campaigns/may-day/pause", headers=headers).status_code == 400
    )
    form_token = client_for(project, engine)
    form = page(form_token, "/dashboard/login")
    form_token.post("/dashboard/login", data={"csrf_token": csrf(form), "secret": DASHBOARD_TOKEN})
    html = page(form_token, "/dashboard")
    assert "read-only" in html and "pause-may-day" not in html
    assert post(form_token, "/dashboard/campaigns/may-day/pause").status_code == 403
    viewer = client_for(project, engine)
    sign_in(viewer, "viewer@example.org")
    assert "pause-may-day" not in page(viewer, "/dashboard")
    for url in (
        "/dashboard/campaigns/may-day/pause",
        f"/dashboard/occurrences/{OCC}/cancel",
        f"/dashboard/occurrences/{OCC}/approve",
        f"/dashboard/occurrences/{OCC}/test",
    ):
        assert post(viewer, url).status_code == 403, url
    assert clock_state.paused(engine) == set()
    assert ledger.get_occurrence(engine, OCC) is None
    assert "denied" in [e.action for e in audit.entries(engine)]


def test_role_escalation_and_chapters_are_refused(project: Project, engine: Engine) -> None:
    org = client_for(project, engine)
    sign_in(org, "org@example.org")
    project_reviewed = project  # review: none by default; approval needs the approver role
    assert post(org, f"/dashboard/occurrences/{OCC}/approve").status_code == 403
    madrid = client_for(project_reviewed, engine)
    sign_in(madrid, "madrid@example.org")
    # may-day is the alliance's, not the Madrid chapter's.
    assert post(madrid, "/dashboard/campaigns/may-day/pause").status_code == 403
    assert post(madrid, f"/dashboard/occurrences/{OCC}/cancel").status_code == 403
    assert clock_state.paused(engine) == set()


def test_csrf_on_every_action(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    sign_in(client, "ana@example.org")
    for url in (
        "/dashboard/campaigns/may-day/pause",
        f"/dashboard/occurrences/{OCC}/cancel",
        f"/dashboard/occurrences/{OCC}/approve",
        f"/dashboard/occurrences/{OCC}/test",
        "/dashboard/logout",
    ):
        assert client.post(url, data={}).status_code == 400, url
        assert client.post(url, data={"csrf_token": "forged"}).status_code == 400, url
    assert clock_state.paused(engine) == set()


def test_organizer_actions(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    sign_in(client, "org@example.org")
    assert post(client, "/dashboard/campaigns/may-day/pause", note="final text").status_code == 303
    assert clock_state.paused(engine) == {"may-day"}
    html = page(client, "/dashboard")
    assert "may-day: paused" in html and "resume-may-day" in html
    assert post(client, "/dashboard/campaigns/may-day/resume").status_code == 303
    assert clock_state.paused(engine) == set()
    # A test to my own address: outside the ledger, marked.
    assert post(client, f"/dashboard/occurrences/{OCC}/test", language="es").status_code == 303
    [test] = letters(project)
    assert test["To"] == "org@example.org" and str(test["Subject"]).startswith("[TEST] ")
    assert ledger.get_occurrence(engine, OCC) is None
    assert post(client, f"/dashboard/occurrences/{OCC}/cancel").status_code == 303
    row = ledger.get_occurrence(engine, OCC)
    assert row is not None and row.state == "cancelled" and "org@example.org" in str(row.note)
    actions = [(e.actor, e.action) for e in audit.entries(engine)][:4]
    assert actions == [
        ("org@example.org", "occurrence.cancel"),
        ("org@example.org", "occurrence.test"),
        ("org@example.org", "campaign.resume"),
        ("org@example.org", "campaign.pause"),
    ]
    assert "occurrence.cancel" in page(client, "/dashboard")  # the audit log is shown


def test_approve_and_an_edit_voids_it(make_project: ProjectFactory, engine: Engine) -> None:
    project = web_project(make_project)
    path = project.path
    path.write_text(
        path.read_text().replace(
            "    audience: [members]\n", "    audience: [members]\n    review: required\n"
        )
    )
    project = load_project(path)
    client = client_for(project, engine)
    sign_in(client, "ana@example.org")
    html = page(client, f"/dashboard/occurrences/{OCC}")
    assert "needs 1 approval(s)" in html and 'id="approve"' in html
    assert post(client, f"/dashboard/occurrences/{OCC}/approve").status_code == 303
    html = page(client, f"/dashboard/occurrences/{OCC}")
    assert "Approved by ana@example.org" in html and 'id="approve"' not in html
    statement = path.parent / "statements" / "may-day.en.md"
    statement.write_text(statement.read_text().replace("May Day", "Labour Day", 1))
    edited = client_for(load_project(path), engine)
    sign_in(edited, "ana@example.org")
    html = page(edited, f"/dashboard/occurrences/{OCC}")
    assert "that approval no longer counts" in html and 'id="diff"' in html
    assert '<span class="add">+' in html and "Labour Day" in html
    status = approvals.status(load_project(path), engine, may_day(project))
    assert not status.approved and len(status.voided) == 1


def test_preview_of_each_channel(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    sign_in(client, "org@example.org")
    response = client.get(f"/dashboard/occurrences/{OCC}")
    html = response.get_data(as_text=True)
    assert "frame-src 'self'" in response.headers["Content-Security-Policy"]
    assert html.count('<iframe class="email" sandbox=""') == 2  # en and es
    framed = client.get(f"/dashboard/occurrences/{OCC}/email/email/es")
    assert framed.status_code == 200
    assert "sandbox" in framed.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in framed.headers["Content-Security-Policy"]
    assert framed.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "<html" in framed.get_data(as_text=True).lower()
    assert client.get(f"/dashboard/occurrences/{OCC}/email/nowhere/es").status_code == 404
    assert client.get("/dashboard/occurrences/nope/2030/x").status_code == 404


def test_every_list_and_the_past_upcoming_split(project: Project, engine: Engine) -> None:
    client = client_for(project, engine)
    sign_in(client, "org@example.org")
    # Sent by hand before its instant: not "past".
    fire(context(project, engine), may_day(project))
    html = page(client, "/dashboard")
    lists = html[html.index('id="lists"') : html.index('id="audit"')]
    for name in ("members", "press", "news"):  # none has anyone on it yet
        assert f'<th scope="row">{name}</th>' in lists
    past = html[html.index('id="past"') : html.index('id="failures"')]
    ahead = html[html.index('id="ahead"') : html.index('id="past"')]
    assert OCC not in past and OCC in ahead
