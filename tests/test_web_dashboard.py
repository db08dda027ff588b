"""The organizers' dashboard (behind a login), security headers, and the page languages."""

from __future__ import annotations

import json
from importlib import resources

from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day
from sqlalchemy.engine import Engine
from web_helpers import DASHBOARD_TOKEN, csrf, page, web_app, web_project
from werkzeug.security import generate_password_hash

from scheduler.delivery import clock_state, ledger
from scheduler.delivery.fire import fire
from scheduler.web import DashboardAuth, Limit, Limits


def test_dashboard_is_off_without_credentials(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    client = web_app(web_project(make_project), store_engine, dashboard=DashboardAuth())
    response = client.test_client().get("/dashboard")
    assert response.status_code == 503
    assert "SCHEDULER_DASHBOARD_PASSWORD_HASH" in response.get_data(as_text=True)


def test_dashboard_login_with_a_password_hash(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    auth = DashboardAuth(password_hash=generate_password_hash("correct horse"))
    client = web_app(web_project(make_project), store_engine, dashboard=auth).test_client()
    assert client.get("/dashboard").headers["Location"].endswith("/dashboard/login")
    form = page(client, "/dashboard/login")
    assert client.post("/dashboard/login", data={"secret": "correct horse"}).status_code == 400
    wrong = client.post("/dashboard/login", data={"csrf_token": csrf(form), "secret": "nope"})
    assert wrong.status_code == 403
    right = client.post(
        "/dashboard/login", data={"csrf_token": csrf(form), "secret": "correct horse"}
    )
    assert right.status_code == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    html = page(client, "/dashboard")
    logout = client.post("/dashboard/logout", data={"csrf_token": csrf(html)})
    assert logout.status_code == 303
    assert client.get("/dashboard").status_code == 302


def test_login_is_rate_limited(make_project: ProjectFactory, store_engine: Engine) -> None:
    limits = Limits(login_per_ip=Limit(3, 900))
    client = web_app(web_project(make_project), store_engine, limits=limits).test_client()
    token = csrf(page(client, "/dashboard/login"))
    codes = [
        client.post("/dashboard/login", data={"csrf_token": token, "secret": "x"}).status_code
        for _ in range(4)
    ]
    assert codes == [403, 403, 403, 429]


def test_dashboard_shows_the_state_of_the_year(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: object
) -> None:
    from smtp_server import SmtpTestServer

    assert isinstance(smtp_server, SmtpTestServer)
    project = web_project(make_project, smtp_url=smtp_server.url)
    add_subscribers(store_engine, 3)
    smtp_server.reject_rcpt["person1@example.org"] = "550 5.7.1 Rejected by policy"
    fire(context(project, store_engine), may_day(project))
    clock_state.pause(store_engine, "may-day", note="waiting for the final text")
    client = web_app(project, store_engine).test_client()
    headers = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    html = client.get("/dashboard", headers=headers).get_data(as_text=True)
    assert "may-day/2030/statement" in html  # past, with counts
    counts = ledger.counts(store_engine)["may-day/2030/statement"]["email"]
    assert counts == {"sent": 2, "failed": 1}
    assert '<td class="num">2</td><td class="num bad">1</td>' in html
    assert "5.7.1 Rejected by policy" in html  # the failure's reason
    assert "Paused campaigns" in html and "<code>may-day</code>" in html
    assert "paused</strong>" in html  # upcoming may-day occurrences are marked
    wrong = client.get("/dashboard", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 302


def test_security_headers(make_project: ProjectFactory, store_engine: Engine) -> None:
    client = web_app(web_project(make_project), store_engine).test_client()
    for path in ("/subscribe/members", "/archive", "/dashboard/login", "/nowhere"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "unsafe-inline" not in csp, path
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script" not in response.get_data(as_text=True)
    assert client.get("/nowhere").status_code == 404
    assert client.get("/static/site.css").status_code == 200
    assert client.get("/healthz").data == b"ok\n"


def test_page_language(make_project: ProjectFactory, store_engine: Engine) -> None:
    client = web_app(web_project(make_project), store_engine).test_client()
    spanish = page(client, "/subscribe/members", headers={"Accept-Language": "es-ES,es;q=0.9"})
    assert '<html lang="es">' in spanish and "Correo electrónico" in spanish
    asked = page(client, "/subscribe/members?lang=en", headers={"Accept-Language": "es"})
    assert '<html lang="en">' in asked and "Email address" in asked
    assert 'href="/subscribe/members?lang=es"' in asked
    fallback = page(client, "/subscribe/members", headers={"Accept-Language": "de"})
    assert '<html lang="en">' in fallback


def test_every_page_string_is_translated() -> None:
    folder = resources.files("scheduler.web") / "translations"
    catalogs = {
        p.name: json.loads(p.read_text("utf-8"))
        for p in folder.iterdir()
        if p.name.endswith(".json")
    }
    assert {"en.json", "es.json"} <= set(catalogs)
    english = set(catalogs["en.json"])
    for name, strings in catalogs.items():
        if name in ("en.json", "es.json"):
            assert set(strings) == english, name
        else:
            # A chapter's language (tl.json) may translate the subscriber pages only: the
            # organizers' pages fall back to English key by key. No key of its own, though.
            assert set(strings) <= english, name
        assert all(v.strip() for v in strings.values()), name


def test_dashboard_shows_each_channel_sent_failed_or_still_planned(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from web_helpers import WEB_YAML

    from scheduler.config.project import load_project

    text = WEB_YAML.replace("channels: [email]", "channels: [email, mastodon]").replace(
        "  languages: [en, es]\n", "  languages: [en, es]\n  public_url: https://l.example.org\n"
    )
    project = load_project(make_project(text, members_csv="email\n"))
    add_subscribers(store_engine, 2)
    # Email sent by hand, ahead of the day: Mastodon waits for the clock.
    fire(context(project, store_engine), may_day(project), channels=["email"])
    client = web_app(project, store_engine).test_client()
    html = page(client, "/dashboard", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    # Its instant has not come: listed as settled ahead of time, not as past.
    past = " ".join(html.split('id="past"')[1].split('id="failures"')[0].split())
    assert "may-day/2030/statement" not in past
    ahead = " ".join(html.split('id="ahead"')[1].split('id="past"')[0].split())
    assert "<code>may-day/2030/statement</code>" in ahead
    assert 'email<br><small class="channel-state">done</small></td> <td class="num">2</td>' in ahead
    assert 'mastodon<br><small class="channel-state">still planned</small>' in ahead
    upcoming = html.split('id="upcoming"')[1].split('id="ahead"')[0]
    assert "<li>email: done — Sent 2, Failed 0</li><li>mastodon: still planned</li>" in upcoming


def test_dashboard_shows_blocked_campaigns_and_rows_left_out(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler.errors import Diagnostic
    from scheduler.store import problems

    project = web_project(make_project)
    missing = Diagnostic(
        "campaigns.yaml", 19, 16, "statement 'may-day' has no 'es' version", scope="campaign"
    )
    problems.record_blocked(store_engine, {"may-day": [missing]})
    bad = Diagnostic("members.csv", 7, 1, "invalid address 'joe.smith@example'", severity="warning")
    problems.record_list(store_engine, "members", "members.csv", [bad])
    client = web_app(project, store_engine).test_client()
    headers = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    html = client.get("/dashboard", headers=headers).get_data(as_text=True)
    assert "Campaign may-day is blocked and will not be sent until fixed" in html
    assert "campaigns.yaml:19: statement &#39;may-day&#39; has no &#39;es&#39; version" in html
    assert "List members: 1 rows of members.csv were left out at the last sync (lines 7)" in html
    assert "blocked</strong>" in html  # its upcoming occurrences are marked
    # Fixed: the next load and sync clear them.
    problems.record_blocked(store_engine, {})
    problems.record_list(store_engine, "members", "members.csv", [])
    html = client.get("/dashboard", headers=headers).get_data(as_text=True)
    assert "is blocked" not in html and "left out" not in html


def test_an_occurrence_blocked_at_its_instant_is_listed_as_blocked_with_why(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler.errors import Diagnostic
    from scheduler.store import problems

    project = web_project(make_project)
    occ = may_day(project, 2026)  # its instant has come
    missing = Diagnostic(
        "campaigns.yaml", 19, 16, "statement 'may-day' has no 'es' version", scope="campaign"
    )
    problems.record_blocked(store_engine, {"may-day": [missing]})
    clock_state.record_blocked(store_engine, occ, "blocked at its instant: statement missing")
    client = web_app(project, store_engine).test_client()
    headers = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
    html = page(client, "/dashboard", headers=headers)
    past = " ".join(html.split('id="past"')[1].split('id="failures"')[0].split())
    assert f"<code>{occ.id}</code>" in past
    assert '<strong class="tag">blocked</strong><br><small class="blocked-reason">' in past
    assert "statement &#39;may-day&#39; has no &#39;es&#39; version" in past
    assert ">planned<" not in past
    detail = page(client, f"/dashboard/occurrences/{occ.id}", headers=headers)
    assert "<strong>blocked</strong>" in detail and 'class="blocked-reason"' in detail
