"""The public archive: statements that went out, at the URLs emails link to, and a feed."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day
from sqlalchemy.engine import Engine
from web_helpers import page, web_app, web_project

from scheduler.content.render import Renderer
from scheduler.delivery.fire import fire

ATOM = "{http://www.w3.org/2005/Atom}"


def test_nothing_is_published_before_it_went_out(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    client = web_app(web_project(make_project), store_engine).test_client()
    assert "Nothing has been published yet." in page(client, "/archive")
    assert client.get("/archive/may-day/2030/en").status_code == 404
    feed = ET.fromstring(client.get("/archive/feed.atom").data)
    assert feed.findall(f"{ATOM}entry") == []


def test_a_sent_statement_is_published_at_the_emails_url(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    addresses = add_subscribers(store_engine, 4)
    occ = may_day(project)
    assert fire(context(project, store_engine), occ).state == "done"
    client = web_app(project, store_engine).test_client()

    url = Renderer(project).archive_url(occ, "en")
    assert url == "https://lists.example.org/archive/may-day/2030/en"
    statement = Renderer(project).statement("may-day", "en")
    html = page(client, url.removeprefix("https://lists.example.org"))
    assert statement.title in html
    # Dated when it really went out (today, in this test), not on the campaign day.
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert f'<time datetime="{today}">' in html and "2030-05-01" not in html
    assert '<article lang="en">' in html
    first_paragraph = statement.text.strip().split("\n\n")[0].splitlines()[0]
    assert first_paragraph[:40] in html

    spanish = page(client, "/archive/may-day/2030/es")
    assert '<html lang="es">' in spanish
    assert Renderer(project).statement("may-day", "es").title in spanish
    assert client.get("/archive/may-day/2030/fr").status_code == 404
    assert client.get("/archive/may-day/2031/en").status_code == 404  # not sent
    assert client.get("/archive/may-day/2030").status_code == 302

    index = page(client, "/archive")
    assert statement.title in index and "/archive/may-day/2030/en" in index
    assert client.get("/archive").headers["Cache-Control"].startswith("public")

    feed_response = client.get("/archive/feed.atom")
    assert feed_response.content_type.startswith("application/atom+xml")
    feed = ET.fromstring(feed_response.data)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 2
    titles = {e.findtext(f"{ATOM}title") for e in entries}
    assert statement.title in titles
    links = {e.find(f"{ATOM}link").get("href") for e in entries}  # type: ignore[union-attr]
    assert url in links
    only_es = ET.fromstring(client.get("/archive/feed.atom?lang=es").data)
    assert len(only_es.findall(f"{ATOM}entry")) == 1

    # Public pages never show who got the statement.
    for path in ("/archive", "/archive/may-day/2030/en", "/archive/feed.atom", "/subscribe"):
        body = client.get(path).get_data(as_text=True)
        assert not any(a in body for a in addresses), path


def test_a_day_is_published_when_something_went_out_not_when_it_is_planned(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    """A hand send of one channel publishes the day (it went out), dated then; an
    occurrence that only failed publishes nothing."""
    from scheduler.delivery import ledger

    project = web_project(make_project)
    add_subscribers(store_engine, 2)
    occ = may_day(project)
    client = web_app(project, store_engine).test_client()
    # Claimed, but nothing sent yet: not published.
    ledger.claim_occurrence(store_engine, occ)
    assert client.get("/archive/may-day/2030/en").status_code == 404
    before = dt.datetime.now(dt.UTC)
    fire(context(project, store_engine), occ)
    feed = ET.fromstring(client.get("/archive/feed.atom").data)
    published = {e.findtext(f"{ATOM}published") for e in feed.findall(f"{ATOM}entry")}
    assert len(published) == 1
    when = dt.datetime.fromisoformat(str(published.pop()).replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= when <= dt.datetime.now(dt.UTC)
