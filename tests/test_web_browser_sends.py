"""Sending by hand in a real browser (Playwright, Debian Chromium), with the dashboard's
sends in their background threads as in production: Send now asks first ten days early and
says when and how far; Retry failed on one channel, then for the whole occurrence; Send the
channels still planned."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from test_web_browser import LateApp, chromium, wait_for  # noqa: F401  (the fixture)
from test_web_sends import HOOK, TEN_DAYS_BEFORE, fail_some, two_channel_project, webhook
from werkzeug.serving import make_server

from scheduler.accounts import audit
from scheduler.accounts import store as accounts
from scheduler.config.project import load_project
from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.store.schema import Role
from scheduler.web import DashboardAuth, Mailer, Sends, create_app

__all__ = ["webhook"]  # the autouse fixture

PASSWORD = "a long enough passphrase"
OCC = "may-day/2030/statement"
NEXT = "may-day/2031/statement"


def states(engine: Engine, occurrence_id: str) -> dict[str, dict[str, int]]:
    return ledger.counts(engine, occurrence_id).get(occurrence_id, {})


def test_send_now_retry_and_send_still_planned_in_a_browser(
    make_project: ProjectFactory,
    store_engine: Engine,
    chromium: Any,  # noqa: F811
    httpserver: HTTPServer,
    tmp_path: Path,
) -> None:
    httpserver.expect_oneshot_request(HOOK, method="POST").respond_with_data("no", status=400)
    httpserver.expect_request(HOOK, method="POST").respond_with_json({"id": "1"})
    late = LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    project = two_channel_project(make_project)
    project.path.write_text(
        project.path.read_text().replace(
            "public_url: https://lists.example.org", f"public_url: {base}"
        )
    )
    project = load_project(project.path)
    add_subscribers(store_engine, 3)
    org = accounts.add(store_engine, "org@example.org", Role.ORGANIZER)
    accounts.set_password(store_engine, org.id, PASSWORD)
    late.app = create_app(
        project,
        store_engine,
        dashboard=DashboardAuth(),
        mailer=Mailer(context(project, store_engine), background=False),
        sends=Sends(store_engine),  # background threads, as `scheduler web` runs them
        now=lambda: TEN_DAYS_BEFORE,
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

    def settled(occurrence_id: str, expected: dict[str, dict[str, int]]) -> None:
        wait_for(lambda: states(store_engine, occurrence_id) == expected, f"{expected}")
        page.reload()

    try:
        page.goto(f"{base}/dashboard/login?lang=en")
        page.get_by_label("Email address").fill("org@example.org")
        page.get_by_label("Password or token").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("heading", name="Dashboard").is_visible()

        # Send now, ten days early: a second form says when it is due and how far that is.
        page.goto(f"{base}/dashboard/occurrences/{OCC}?lang=en")
        page.locator("#send-now").click()
        assert page.get_by_role("heading", name="Send it now?").is_visible()
        message = page.locator("#confirm-message").inner_text()
        assert "is due 2030-05-01 09:00 +02:00, in 10 days" in message
        assert "puts it out early" in message
        shot("confirm")
        assert ledger.get_occurrence(store_engine, OCC) is None  # nothing sent by asking
        page.locator("#confirm-send").click()
        assert page.get_by_text(f"{OCC}: sending on email, discord").is_visible()
        # Discord refused the first post (400): one failure to retry, on that channel.
        settled(OCC, {"email": {"sent": 3}, "discord": {"failed": 1}})
        assert page.locator("#retry-discord").inner_text() == "Retry failed on discord (1)"
        assert page.locator("#retry-email").count() == 0
        shot("failed")
        page.locator("#retry-discord").click()
        assert page.get_by_text(f"{OCC}: retrying 1 failed deliveries on discord").is_visible()
        settled(OCC, {"email": {"sent": 3}, "discord": {"sent": 1}})
        assert page.locator("#retry-failed").count() == 0
        assert "done" in page.locator("#state").inner_text()

        # The next year's email went out by hand (`scheduler send --channel email`), two of
        # its deliveries failed; Discord is still planned.
        fire(context(project, store_engine), may_day(project, 2031), channels=["email"])
        fail_some(store_engine, "email", 2, NEXT)
        page.goto(f"{base}/dashboard/occurrences/{NEXT}?lang=en")
        planned = page.locator("#send-planned")
        assert planned.inner_text() == "Send the channels still planned (discord)"
        planned.click()
        assert "is due 2031-05-01 09:00 +02:00" in page.locator("#confirm-message").inner_text()
        page.locator("#confirm-send").click()
        assert page.get_by_text(f"{NEXT}: sending on discord").is_visible()
        settled(NEXT, {"email": {"sent": 1, "failed": 2}, "discord": {"sent": 1}})
        assert page.locator("#send-planned").count() == 0
        assert page.locator("#retry-failed").inner_text() == "Retry failed deliveries (2)"
        # Wait for the form's answer: a reload while its navigation is still on the way
        # fails ("not attached to an active page"; once in CI).
        with page.expect_navigation():
            page.locator("#retry-failed").click()
        settled(NEXT, {"email": {"sent": 3}, "discord": {"sent": 1}})
        assert page.locator("#retry-failed").count() == 0
        shot("all-sent")
    finally:
        page.close()
        server.shutdown()
        thread.join(timeout=5)
    done = [
        (e.actor, e.action, e.target)
        for e in audit.entries(store_engine)
        if e.action.startswith("occurrence.")
    ]
    assert done == [  # newest first
        ("org@example.org", "occurrence.retry", NEXT),
        ("org@example.org", "occurrence.send_planned", NEXT),
        ("org@example.org", "occurrence.retry", OCC),
        ("org@example.org", "occurrence.send", OCC),
    ]
    assert all(p.stat().st_size > 1000 for p in shots)
