"""Organizers in a real browser (Playwright, Debian Chromium): set a password through a
one-time link, sign in, pause and resume, see a held occurrence, send a test, preview, approve,
watch an edit void the approval, approve again, and the held occurrence fires."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day, outbox
from sqlalchemy.engine import Engine
from test_web_browser import LateApp, chromium  # noqa: F401  (the fixture)
from web_helpers import letters, web_project
from werkzeug.serving import make_server

from scheduler.accounts import store as accounts
from scheduler.clock.daemon import Clock
from scheduler.config.project import load_project
from scheduler.delivery import clock_state, ledger
from scheduler.review import holds
from scheduler.store.schema import Role
from scheduler.web import DashboardAuth, Mailer, create_app

PASSWORD = "a long enough passphrase"
OCC = "may-day/2030/statement"


def test_organizers_act_and_approve_in_a_browser(
    make_project: ProjectFactory,
    store_engine: Engine,
    chromium: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    late = LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    project = web_project(make_project, public_url=base)
    path = project.path
    path.write_text(
        path.read_text().replace(
            "    audience: [members]\n", "    audience: [members]\n    review: required\n"
        )
    )
    project = load_project(path)
    occ = may_day(project)
    after = occ.instant + dt.timedelta(minutes=1)
    add_subscribers(store_engine, 3)
    org = accounts.add(store_engine, "org@example.org", Role.ORGANIZER)
    link = accounts.issue_link(store_engine, org.id)
    ana = accounts.add(store_engine, "ana@example.org", Role.APPROVER)
    accounts.set_password(store_engine, ana.id, PASSWORD)
    late.app = create_app(
        project,
        store_engine,
        dashboard=DashboardAuth(),
        mailer=Mailer(context(project, store_engine), background=False),
        now=lambda: after,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page = chromium.new_page()
    page.set_default_timeout(10_000)
    shots: list[Path] = []

    def shot(name: str) -> None:
        target = tmp_path / f"{len(shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(target), full_page=True)
        shots.append(target)
        print(f"screenshot: {target}")

    def sign_in(email: str) -> None:
        page.goto(f"{base}/dashboard/login?lang=en")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password or token").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("heading", name="Dashboard").is_visible()

    try:
        # A one-time link sets the organizer's password.
        page.goto(f"{base}/dashboard/password/{link}?lang=en")
        page.get_by_label("New password (at least 12 characters)").fill(PASSWORD)
        page.get_by_label("The same again").fill(PASSWORD)
        shot("password")
        page.get_by_role("button", name="Set password").click()
        assert page.get_by_role("heading", name="Organizers’ sign-in").is_visible()
        sign_in("org@example.org")
        assert page.locator("#signed-in").inner_text() == "org@example.org (organizer)"

        # Pause and resume.
        page.locator("#pause-may-day").click()
        assert page.get_by_text("may-day: paused").is_visible()
        assert clock_state.paused(store_engine) == {"may-day"}
        page.locator("#resume-may-day").click()
        assert page.get_by_text("may-day: resumed").is_visible()
        assert clock_state.paused(store_engine) == set()

        # The instant passes with no approval: held, not sent, organizers told.
        clock = Clock(project, store_engine, now=lambda: after)
        clock.handle([occ], now=after)
        assert holds.get(store_engine, OCC) is not None
        assert ledger.get_occurrence(store_engine, OCC) is None
        assert sorted(str(m["To"]) for m in letters(project)) == [
            "ana@example.org",
            "org@example.org",
        ]
        page.reload()
        held = page.locator("#held + ul")
        assert OCC in held.inner_text() and "held" in held.inner_text()
        shot("dashboard-held")
        held.get_by_role("link", name=OCC).click()
        assert page.locator("#review-state").inner_text() == "needs 1 approval(s)"
        assert page.locator("#approve").count() == 0  # an organizer does not approve
        frames = page.locator("iframe.email")
        assert frames.count() == 2 and frames.first.get_attribute("sandbox") == ""
        frame = page.frame_locator("iframe.email").first
        assert "May Day" in frame.locator("body").inner_text()
        shot("occurrence-preview")
        page.get_by_label("Language of the test").select_option("es")
        page.locator("#send-test").click()
        assert page.get_by_text("is on its way to org@example.org").is_visible()
        tests = [m for m in letters(project) if str(m["Subject"]).startswith("[TEST]")]
        assert [str(m["To"]) for m in tests] == ["org@example.org"]
        page.goto(f"{base}/dashboard?lang=en")
        page.get_by_role("button", name="Sign out").click()
        assert page.get_by_role("heading", name="Organizers’ sign-in").is_visible()

        # The approver approves.
        sign_in("ana@example.org")
        page.goto(f"{base}/dashboard/occurrences/{OCC}?lang=en")
        page.locator("#approve").click()
        # The page after the POST may still be loading on a busy machine: wait for it.
        approved = page.get_by_text("Approved by ana@example.org")
        approved.wait_for(state="visible", timeout=10_000)
        assert approved.is_visible()
        assert page.locator("#review-state").inner_text() == "approved"

        # An edit of the statement voids it; the page shows what changed.
        statement = path.parent / "statements" / "may-day.en.md"
        statement.write_text(statement.read_text().replace("May Day", "Labour Day", 1))
        page.reload()
        assert page.locator("#review-state").inner_text() == "needs 1 approval(s)"
        diff = page.locator("#diff").inner_text()
        assert "+" in diff and "Labour Day" in diff
        shot("approval-voided")
        edited = load_project(path)
        clock = Clock(edited, store_engine, now=lambda: after)
        clock.handle([may_day(edited)], now=after + dt.timedelta(minutes=1))
        assert ledger.get_occurrence(store_engine, OCC) is None  # still held

        # Approved again, the held occurrence fires (late, inside its window).
        page.locator("#approve").click()
        assert page.locator("#review-state").inner_text() == "approved"
        clock.handle([may_day(edited)], now=after + dt.timedelta(minutes=2))
        row = ledger.get_occurrence(store_engine, OCC)
        assert row is not None and row.state == "done" and row.late
        assert "held for review" in str(row.note)
        page.reload()
        assert "done" in page.locator("#state").inner_text()
        shot("fired")
    finally:
        page.close()
        server.shutdown()
        thread.join(timeout=5)
    sent = [p for p in outbox(project) if "-delivery" in p.name]
    assert len(sent) == 3  # the three members, once each
    assert all(p.stat().st_size > 1000 for p in shots)
