"""End to end in a real browser: headless Debian Chromium driven by Playwright, the app on a
real HTTP server thread, confirmation and campaign emails through a real SMTP server.

subscribe → confirmation email → follow the link → active → campaign email → its
List-Unsubscribe URL → the page with its button, and the RFC 8058 one-click POST → the store.
Screenshots of every page land in the test's tmp_path (their paths are printed).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectFactory
from delivery_helpers import context, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine
from web_helpers import DASHBOARD_TOKEN, text_of, web_project
from werkzeug.serving import make_server

from scheduler.delivery.fire import fire
from scheduler.store import subscribers
from scheduler.web import DashboardAuth, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium (Debian's package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class LateApp:
    """A WSGI app bound before it exists: the server's port goes into campaigns.yaml first."""

    app: Callable[..., Iterable[bytes]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        assert self.app is not None
        return self.app(environ, start_response)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def received(server: SmtpTestServer, to: str, subject_part: str) -> EmailMessage | None:
    for item in server.messages:
        message = email.message_from_bytes(item.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if to in item.rcpt_tos and subject_part in str(message["Subject"]):
            return message
    return None


def test_subscribe_confirm_receive_and_unsubscribe_in_a_browser(
    make_project: ProjectFactory,
    store_engine: Engine,
    smtp_server: SmtpTestServer,
    chromium: Any,
    tmp_path: Path,
) -> None:
    late = LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    project = web_project(make_project, smtp_url=smtp_server.url, public_url=base)
    # The real default mailer: confirmations go out from a background thread.
    late.app = create_app(project, store_engine, dashboard=DashboardAuth(token=DASHBOARD_TOKEN))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    shots: list[Path] = []
    page = chromium.new_page()
    page.set_default_timeout(10_000)

    def shot(name: str) -> None:
        path = tmp_path / f"{len(shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        print(f"screenshot: {path}")

    try:
        # Subscribe.
        page.goto(f"{base}/subscribe")
        shot("subscribe-index")
        page.get_by_role("link", name="Members and supporters").click()
        page.get_by_label("Email address").fill("ana@example.org")
        page.get_by_label("Name (optional)").fill("Ana")
        page.get_by_label("Language of the emails").select_option("es")
        shot("subscribe-form")
        page.get_by_role("button", name="Subscribe").click()
        assert page.get_by_role("heading", name="Check your inbox").is_visible()
        shot("check-inbox")
        assert subscribers.memberships_of(store_engine, "ana@example.org") == {}

        # The confirmation arrives at the SMTP server; follow its link.
        confirmation = wait_for(
            lambda: received(smtp_server, "ana@example.org", "Confirma"), "the confirmation"
        )
        link = re.search(r"http://\S+/confirm/\S+", text_of(confirmation))
        assert link, text_of(confirmation)
        page.goto(link[0])
        assert page.locator("html").get_attribute("lang") == "es"
        shot("confirm")
        page.get_by_role("button", name="Confirmar mi suscripción").click()
        assert page.get_by_role("heading", name="Suscripción confirmada").is_visible()
        shot("confirmed")
        assert subscribers.memberships_of(store_engine, "ana@example.org") == {"members": "active"}

        # A campaign email reaches them, with List-Unsubscribe and one-click.
        report = fire(context(project, store_engine), may_day(project))
        assert report.result.sent == 1
        campaign = wait_for(
            lambda: (
                received(smtp_server, "ana@example.org", "Mayo")
                or received(smtp_server, "ana@example.org", "May")
            ),
            "the campaign email",
        )
        assert campaign["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_url = re.search(r"<(http[^>]+)>", str(campaign["List-Unsubscribe"]))
        assert unsubscribe_url and unsubscribe_url[1].startswith(f"{base}/unsubscribe/")

        # The archive shows what went out.
        page.goto(f"{base}/archive")
        shot("archive")
        page.goto(f"{base}/archive/may-day/2030/es")
        shot("archive-statement")

        # The unsubscribe page shows a button and changes nothing by itself.
        page.goto(unsubscribe_url[1])
        assert page.get_by_role("button", name="Darme de baja").is_visible()
        shot("unsubscribe")
        assert subscribers.memberships_of(store_engine, "ana@example.org") == {"members": "active"}

        # RFC 8058 one-click, as a mail client sends it: POST, no cookies, 200, no redirect.
        request = urllib.request.Request(
            unsubscribe_url[1],
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.geturl() == unsubscribe_url[1]  # not redirected
            assert response.headers.get("Set-Cookie") is None
        assert subscribers.memberships_of(store_engine, "ana@example.org") == {
            "members": "unsubscribed"
        }

        # The page's own button works too (and says so again).
        page.get_by_role("button", name="Darme de baja").click()
        assert page.get_by_role("heading", name="Te has dado de baja").is_visible()
        shot("unsubscribed")
        page.get_by_role("link", name="Cambiar idioma o listas").click()
        shot("preferences")

        # Organizers see it on the dashboard.
        page.goto(f"{base}/dashboard?lang=en")
        page.get_by_label("Password or token").fill(DASHBOARD_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("heading", name="Dashboard").is_visible()
        shot("dashboard")
    finally:
        page.close()
        server.shutdown()
        thread.join(timeout=5)
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {
        "members": "unsubscribed"
    }
    assert all(p.stat().st_size > 1000 for p in shots)
