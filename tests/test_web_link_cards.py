"""Archive pages unfurl as cards: OpenGraph and Twitter tags read by a real browser (Debian
Chromium through Playwright), and the image they name served by `scheduler web`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day
from sqlalchemy.engine import Engine
from test_web_browser import LateApp
from test_web_browser import chromium as chromium  # the fixture
from web_helpers import web_app, web_project
from werkzeug.serving import make_server

from scheduler.delivery.fire import fire
from scheduler.web import DashboardAuth, create_app

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "statements" / "images" / "may-day.png"


def test_archive_pages_carry_link_card_tags_and_the_image_is_served(
    make_project: ProjectFactory, store_engine: Engine, chromium: Any
) -> None:
    late = LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    project = web_project(make_project, public_url=base)
    add_subscribers(store_engine, 1)
    assert fire(context(project, store_engine), may_day(project)).result.sent == 1
    late.app = create_app(project, store_engine, dashboard=DashboardAuth(token="t"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page = chromium.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{base}/archive/may-day/2030/es")

        def meta(attribute: str, name: str) -> str:
            return str(page.locator(f'meta[{attribute}="{name}"]').get_attribute("content"))

        image_url = f"{base}/media/images/may-day.png"
        assert meta("property", "og:title").startswith("Primero de Mayo")
        assert meta("property", "og:url") == f"{base}/archive/may-day/2030/es"
        assert meta("property", "og:locale") == "es"
        assert meta("property", "og:locale:alternate") == "en"
        assert meta("property", "og:image") == image_url
        assert (meta("property", "og:image:width"), meta("property", "og:image:height")) == (
            "1200",
            "630",
        )
        assert meta("property", "og:image:alt").startswith("Nueve figuras")
        assert meta("name", "twitter:card") == "summary_large_image"
        assert meta("name", "twitter:description") == meta("property", "og:description")
        # The browser loaded the image the tags name, at its size, with its alt text.
        lead = page.locator("img.lead")
        assert lead.get_attribute("alt") == meta("property", "og:image:alt")
        page.wait_for_function("document.querySelector('img.lead').complete")
        assert lead.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [1200, 630]
    finally:
        page.close()
        server.shutdown()
        thread.join(timeout=5)


def test_only_images_a_statement_names_are_served(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    (project.statements_dir / "draft.en.md").write_text("---\ntitle: secret\n---\n")
    client = web_app(project, store_engine).test_client()
    response = client.get("/media/images/may-day.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data == IMAGE.read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/media/draft.en.md").status_code == 404
    assert client.get("/media/../campaigns.yaml").status_code == 404
    assert client.get("/media/images/nope.png").status_code == 404
