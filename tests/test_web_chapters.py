"""Each chapter's pages speak in its voice and its page's language: subscribe page and lists,
the confirmation email, unsubscribe and preferences, archive and feed."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from chapter_helpers import CHAPTERS_YAML
from conftest import ROOT, ProjectFactory
from delivery_helpers import context
from sqlalchemy.engine import Engine
from web_helpers import confirmation_path, csrf, letters, page, subscriber_token, text_of, web_app

from scheduler import calendar
from scheduler.audience.csvfile import SubscriberRow
from scheduler.config.project import Project, load_project
from scheduler.content.dates import localized_date
from scheduler.delivery.fire import fire
from scheduler.store import subscribers
from scheduler.web.archive import published

ATOM = "{http://www.w3.org/2005/Atom}"
US_ADDRESS = "200 W Cermak Rd, Chicago, IL 60616, USA"
ALLIANCE_ADDRESS = "Rue du Test 1, 1000 Brussels, Belgium"


def project_of(make_project: ProjectFactory, text: str = CHAPTERS_YAML) -> Project:
    return load_project(make_project(text))


def test_a_chapter_subscribe_page_lists_its_own_lists_in_the_page_language(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    client = web_app(project_of(make_project), store_engine).test_client()
    spanish = page(client, "/usa/subscribe?lang=es")
    assert '<html lang="es">' in spanish
    assert "Trabajadores Unidos EE. UU." in spanish and US_ADDRESS in spanish
    assert 'href="/usa/subscribe/usa-members"' in spanish and "Miembros en EE. UU." in spanish
    assert "/subscribe/members" not in spanish  # the alliance's list is on the alliance's page
    english = page(client, "/usa/subscribe", headers={"Accept-Language": "en"})
    assert "Workers United USA" in english and "US members" in english
    alliance = page(client, "/subscribe?lang=es")
    assert "Alianza de Prueba" in alliance and ALLIANCE_ADDRESS in alliance
    assert "Miembros" in alliance and "usa-members" not in alliance
    assert client.get("/nowhere/subscribe").status_code == 404
    assert client.get("/subscribe/usa-members?lang=es").headers["Location"] == (
        "/usa/subscribe/usa-members?lang=es"
    )
    assert client.get("/usa/subscribe/members").status_code == 404


def test_the_spanish_form_answers_in_spanish(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    client = web_app(project_of(make_project), store_engine).test_client()
    for url in ("/subscribe/members", "/usa/subscribe/usa-members"):
        # The browser asks for English; the person chose the Spanish page.
        form = page(client, url + "?lang=es", headers={"Accept-Language": "en"})
        assert f'action="{url}?lang=es"' in form
        data = {"csrf_token": csrf(form), "email": "not-an-address", "name": "", "language": "es"}
        wrong = client.post(f"{url}?lang=es", data=data, headers={"Accept-Language": "en"})
        assert wrong.status_code == 400
        answer = wrong.get_data(as_text=True)
        assert "Escribe una dirección de correo válida" in answer and '<html lang="es">' in answer
        data["email"] = "rosa@example.org"
        done = client.post(f"{url}?lang=es", data=data, headers={"Accept-Language": "en"})
        assert "Revisa tu correo" in done.get_data(as_text=True)


def test_the_confirmation_speaks_for_the_chapter(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = project_of(make_project)
    client = web_app(project, store_engine).test_client()
    form = page(client, "/usa/subscribe/usa-members?lang=es")
    data = {"csrf_token": csrf(form), "email": "rosa@example.org", "name": "Rosa", "language": "es"}
    client.post("/usa/subscribe/usa-members?lang=es", data=data)
    (letter,) = letters(project)
    assert letter["From"] == "Workers United USA <news@usa.example.org>"
    assert letter["Subject"] == "Confirma tu suscripción a Miembros en EE. UU."
    text = text_of(letter)
    assert "Trabajadores Unidos EE. UU." in text and US_ADDRESS in text
    assert "Brussels" not in text
    confirm = page(client, confirmation_path(letter))
    assert "Trabajadores Unidos EE. UU." in confirm and US_ADDRESS in confirm
    done = client.post(confirmation_path(letter), data={"csrf_token": csrf(confirm)})
    assert "Miembros en EE. UU." in done.get_data(as_text=True)
    assert subscribers.memberships_of(store_engine, "rosa@example.org") == {"usa-members": "active"}


def test_unsubscribe_and_preferences_speak_for_the_list_chapter(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    row = SubscriberRow(email="rosa@example.org", name="Rosa", language="es", row=2)
    subscribers.import_rows(store_engine, "usa-members", [row], source="test")
    stored = subscribers.subscriber(store_engine, "rosa@example.org")
    assert stored is not None
    sid = int(stored["id"])
    client = web_app(project_of(make_project), store_engine).test_client()
    token = subscriber_token("unsubscribe", sid, "rosa@example.org", "usa-members")
    unsubscribe = page(client, "/unsubscribe/" + token)
    assert '<html lang="es">' in unsubscribe
    assert "Trabajadores Unidos EE. UU." in unsubscribe and US_ADDRESS in unsubscribe
    assert "Miembros en EE. UU." in unsubscribe
    token = subscriber_token("preferences", sid, "rosa@example.org", "usa-members")
    preferences = page(client, "/preferences/" + token)
    assert "Trabajadores Unidos EE. UU." in preferences and US_ADDRESS in preferences
    assert "Miembros en EE. UU." in preferences


def _send(project: Project, engine: Engine, occurrence_id: str) -> None:
    ctx = context(project, engine)
    try:
        assert fire(ctx, calendar.occurrence(project.config, occurrence_id)).state == "done"
    finally:
        ctx.close()


def test_each_chapter_has_its_archive_and_feed_and_the_alliance_chooses(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    text = CHAPTERS_YAML.replace(
        "  unsubscribe_mailto: unsubscribe@example.org\n",
        "  unsubscribe_mailto: unsubscribe@example.org\n  archive_chapters: [usa]\n",
    )
    project = project_of(make_project, text)
    # Published once something really went out: the chapter's list needs a reader.
    row = SubscriberRow(email="rosa@example.org", name="Rosa", language="es", row=2)
    subscribers.import_rows(store_engine, "usa-members", [row], source="test")
    _send(project, store_engine, "may-day/2027/statement")
    _send(project, store_engine, "usa/may-day/2027/statement")
    client = web_app(project, store_engine).test_client()

    usa = page(client, "/usa/archive?lang=es")
    assert 'href="/usa/archive/may-day/2027/es"' in usa
    assert "/archive/may-day/2027/es" not in usa.replace("/usa/archive/", "")
    (entry,) = published(store_engine, project.config, "usa/may-day")
    # Dated when it went out, in the page's language (`8 de marzo de 2027`).
    assert localized_date(entry.published_at, "es") in usa and US_ADDRESS in usa
    statement = page(client, "/usa/archive/may-day/2027/es")
    assert "Union Park" in statement and "Trabajadores Unidos EE. UU." in statement
    assert (
        client.get("/usa/archive/may-day/2027")
        .headers["Location"]
        .startswith("/usa/archive/may-day/2027/")
    )
    feed = ET.fromstring(client.get("/usa/archive/feed.atom").data)
    links = {e.find(f"{ATOM}id").text for e in feed.findall(f"{ATOM}entry")}  # type: ignore[union-attr]
    assert links == {
        "https://lists.example.org/usa/archive/may-day/2027/en",
        "https://lists.example.org/usa/archive/may-day/2027/es",
    }
    assert feed.find(f"{ATOM}title").text == "Workers United USA"  # type: ignore[union-attr]

    # The alliance shows its own statement and the chapter's it chose (archive_chapters).
    alliance = page(client, "/archive?lang=en")
    assert 'href="/archive/may-day/2027/en"' in alliance
    assert 'href="/usa/archive/may-day/2027/en"' in alliance
    assert client.get("/archive/may-day/2027/en").status_code == 200
    without = project_of(make_project, CHAPTERS_YAML)
    alone = page(web_app(without, store_engine).test_client(), "/archive?lang=en")
    assert "/usa/archive/" not in alone and 'href="/archive/may-day/2027/en"' in alone


def test_the_shipped_asian_chapter_pages_speak_tagalog(
    tmp_path: Path, store_engine: Engine
) -> None:
    for name in ("statements", "templates", "lists"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "campaigns.yaml", tmp_path / "campaigns.yaml")
    project = load_project(tmp_path / "campaigns.yaml")
    client = web_app(project, store_engine).test_client()
    tagalog = page(client, "/philippines/subscribe")  # the chapter's default language
    assert '<html lang="tl">' in tagalog and "Mag-subscribe" in tagalog
    assert "Alyansa ng mga Manggagawang Migrante Pilipinas" in tagalog
    assert "Mga kasapi sa Pilipinas" in tagalog and "Quezon City" in tagalog
    english = page(client, "/philippines/subscribe?lang=en")
    assert "Members in the Philippines" in english
    # Spanish is not a language of this chapter: its pages do not offer it.
    assert '<html lang="tl">' in page(client, "/philippines/subscribe?lang=es")
