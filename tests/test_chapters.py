"""Chapters: their campaigns join the alliance's days, they own lists and channels, and their
email speaks in their voice (From, header, footer address, signature, unsubscribe mailto,
dates in the reader's language)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
from email.message import EmailMessage
from pathlib import Path

import pytest
from chapter_helpers import CHAPTERS_YAML
from conftest import ROOT, ProjectFactory
from delivery_helpers import context, outbox
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.audience.csvfile import SubscriberRow
from scheduler.config.project import Project, load_project
from scheduler.content.dates import localized_date
from scheduler.delivery.fire import fire
from scheduler.errors import Diagnostic
from scheduler.preview import build_preview
from scheduler.store.subscribers import import_rows
from scheduler.validate import validate_project

UTC = dt.UTC


def chapters_project(make_project: ProjectFactory, text: str = CHAPTERS_YAML) -> Project:
    return load_project(make_project(text))


def problems(make_project: ProjectFactory, text: str) -> list[Diagnostic]:
    return validate_project(make_project(text)).diagnostics


def only(found: list[Diagnostic], fragment: str) -> Diagnostic:
    matching = [d for d in found if fragment in d.message]
    assert len(matching) == 1, f"expected one problem containing {fragment!r}, got {found}"
    return matching[0]


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(f"{fragment!r} not in the text")


# --- the shared day --------------------------------------------------------------------------


def test_the_chapter_joins_the_alliance_day_in_its_own_zone_and_hour(
    make_project: ProjectFactory,
) -> None:
    config = chapters_project(make_project).config
    found = calendar.expand(
        config, dt.datetime(2027, 1, 1, tzinfo=UTC), dt.datetime(2028, 1, 1, tzinfo=UTC)
    )
    assert [o.id for o in found] == ["may-day/2027/statement", "usa/may-day/2027/statement"]
    alliance, usa = found
    assert alliance.local == dt.datetime(2027, 5, 1, 9, 0, tzinfo=alliance.local.tzinfo)
    assert alliance.timezone == "Europe/Brussels" and alliance.chapter is None
    assert usa.timezone == "America/Chicago" and usa.chapter == "usa"
    assert (usa.local.hour, usa.instant) == (10, dt.datetime(2027, 5, 1, 15, 0, tzinfo=UTC))
    assert usa.day_key == "2027" and usa.campaign_id == "usa/may-day"
    # The id reads back into the same occurrence, as `send` and the archive do.
    assert calendar.occurrence(config, "usa/may-day/2027/statement") == usa
    assert config.campaigns["usa/may-day"].display_name("es") == "Primero de Mayo"


def test_the_joined_day_follows_the_alliance_rule_without_copying_it(
    make_project: ProjectFactory,
) -> None:
    moved = CHAPTERS_YAML.replace('date: "05-01"', 'date: "05-02"\n    last_year: 2028')
    config = chapters_project(make_project, moved).config
    found = calendar.expand(
        config, dt.datetime(2027, 1, 1, tzinfo=UTC), dt.datetime(2030, 1, 1, tzinfo=UTC)
    )
    usa = [o for o in found if o.chapter == "usa"]
    assert [o.anchor for o in usa] == [dt.date(2027, 5, 2), dt.date(2028, 5, 2)]


def test_a_join_of_an_unknown_campaign_points_at_its_line(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace("joins: may-day", "joins: mayday")
    d = only(problems(make_project, text), "'mayday' is not a campaign of the alliance")
    assert (d.line, d.column) == (line_of(text, "joins: mayday"), 16)
    assert d.hint == "did you mean 'may-day'?"


def test_a_joining_campaign_may_not_bring_its_own_date(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace(
        "        joins: may-day\n", '        joins: may-day\n        date: "05-03"\n'
    )
    d = only(problems(make_project, text), "takes its days from it")
    assert d.line == line_of(text, "      may-day:", 1)


# --- who owns what ---------------------------------------------------------------------------


def test_a_chapter_uses_the_alliance_lists_only_where_shared(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace("audience: [usa-members]", "audience: [usa-members, members]")
    d = only(
        problems(make_project, text), "uses the alliance's list 'members', which is not shared"
    )
    assert d.line == line_of(text, "audience: [usa-members, members]")
    assert d.hint is not None and "shared: true" in d.hint
    shared = text.replace(
        "source: members.csv, public: true}", "source: members.csv, public: true, shared: true}"
    )
    assert problems(make_project, shared) == []


def test_the_alliance_does_not_use_a_chapter_channel(make_project: ProjectFactory) -> None:
    # The last step of the file is the alliance's May Day.
    text = "channels: [email, mastodon-usa]".join(CHAPTERS_YAML.rsplit("channels: [email]", 1))
    d = only(problems(make_project, text), "of chapter 'usa'")
    assert d.message == "the alliance's campaign uses channel 'mastodon-usa' of chapter 'usa'"
    assert d.line == line_of(text, "channels: [email, mastodon-usa]")


def test_a_chapter_does_not_use_another_chapter_list(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace(
        "senders:\n",
        "  mexico:\n    name: Trabajadores México\n    timezone: America/Mexico_City\nsenders:\n",
    ).replace(
        "    chapter: usa\n    name: {en: US members",
        "    chapter: mexico\n    name: {en: US members",
    )
    d = only(problems(make_project, text), "of chapter 'mexico'")
    assert d.message == "chapter 'usa' uses list 'usa-members' of chapter 'mexico'"


def test_chapter_mistakes_are_named_where_they_are(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace(
        "  usa:\n    name: {en: Workers", "  archive:\n    name: {en: Workers"
    )
    text = text.replace("chapter: usa", "chapter: archive").replace(
        "    sender: usa\n", "    sender: nobody\n"
    )
    found = problems(make_project, text)
    reserved = only(found, "cannot name a chapter")
    assert (reserved.line, reserved.column) == (line_of(text, "  archive:"), 3)
    sender = only(found, "unknown sender 'nobody'")
    assert sender.line == line_of(text, "sender: nobody")
    shared = CHAPTERS_YAML.replace(
        "    chapter: usa\n    name: {en: US",
        "    chapter: usa\n    shared: true\n    name: {en: US",
    )
    d = only(problems(make_project, shared), "only the alliance's lists can be shared")
    assert d.line == line_of(shared, "shared: true")


def test_a_schema_error_in_a_chapter_campaign_sets_aside_that_campaign_only(
    make_project: ProjectFactory,
) -> None:
    text = CHAPTERS_YAML.replace('time: "10:00"', 'time: "25:00"')
    report = validate_project(make_project(text))
    d = only(report.diagnostics, "is not a time of day")
    assert d.line == line_of(text, 'time: "25:00"')
    assert [x for x in report.diagnostics if x.severity == "error"] == [d]


# --- the chapter's voice ---------------------------------------------------------------------


def sent_messages(project: Project, engine: Engine, occurrence_id: str) -> list[EmailMessage]:
    ctx = context(project, engine)
    try:
        report = fire(ctx, calendar.occurrence(project.config, occurrence_id))
        assert report.result.failed == 0
    finally:
        ctx.close()
    messages = []
    for path in outbox(project):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
        path.unlink()
    return messages


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def add(engine: Engine, list_name: str, *people: tuple[str, str, str]) -> None:
    rows = [
        SubscriberRow(email=address, name=name, language=lang, row=i + 2)
        for i, (address, name, lang) in enumerate(people)
    ]
    import_rows(engine, list_name, rows, source="test")


def test_chapter_email_speaks_in_the_chapter_voice(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = chapters_project(make_project)
    add(
        store_engine,
        "usa-members",
        ("rosa@example.org", "Rosa", "es"),
        ("dave@example.org", "Dave", "en"),
    )
    messages = {
        str(m["Content-Language"]): m
        for m in sent_messages(project, store_engine, "usa/may-day/2027/statement")
    }
    assert set(messages) == {"es", "en"}
    for lang, message in messages.items():
        assert message["From"] == "Workers United USA <news@usa.example.org>"
        assert "mailto:unsubscribe@usa.example.org" in message["List-Unsubscribe"]
        assert "/unsubscribe/" in message["List-Unsubscribe"]
        html, text = body(message, "html"), body(message, "plain")
        for part in (html, text):
            assert "200 W Cermak Rd, Chicago, IL 60616, USA" in part
            assert "Brussels" not in part
            # The chapter's own statement (statements/usa/), not the alliance's.
            assert "Chicago" in part and "Union Park" in part
        assert "https://lists.example.org/usa/archive/may-day/2027/" + lang in text
        assert "#1f4e79" in html  # the chapter's accent colour
    es_html, es_text = body(messages["es"], "html"), body(messages["es"], "plain")
    assert "Trabajadores Unidos EE. UU." in es_html.split('class="content"')[0]  # the header
    assert "1 de mayo de 2027" in es_text and "1 de mayo de 2027" in es_html
    assert "Workers United USA\nTrabajadores Unidos EE. UU." in es_text  # the signature
    en_text = body(messages["en"], "plain")
    assert "May 1, 2027" in en_text and "Dear Dave," in en_text


def test_the_alliance_email_keeps_the_alliance_voice(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = chapters_project(make_project)  # members.csv: Ana (es) and Bo (en)
    messages = sent_messages(project, store_engine, "may-day/2027/statement")
    (message,) = [m for m in messages if m["Content-Language"] == "es"]
    assert message["From"] == "Test Alliance <news@example.org>"
    assert "mailto:unsubscribe@example.org" in message["List-Unsubscribe"]
    text = body(message, "plain")
    assert "Alianza de Prueba · Rue du Test 1, 1000 Brussels, Belgium" in text
    assert "Chicago" not in text and "1 de mayo de 2027" in text
    assert "https://lists.example.org/archive/may-day/2027/es" in text


def test_a_chapter_template_overrides_the_alliance_one_also_when_extended(
    make_project: ProjectFactory,
) -> None:
    path = make_project(CHAPTERS_YAML)
    templates = path.parent / "templates"
    (templates / "usa" / "email").mkdir(parents=True)
    base = (templates / "email" / "base.html").read_text(encoding="utf-8")
    (templates / "usa" / "email" / "base.html").write_text(
        base.replace('<div class="content">', '<div class="content"><p>Union-made in Chicago</p>'),
        encoding="utf-8",
    )
    project = load_project(path)
    assert validate_project(path).ok
    now = dt.datetime(2027, 1, 1, tzinfo=UTC)
    (usa,) = build_preview(project, "usa/may-day", language="en", now=now)
    (alliance,) = build_preview(project, "may-day", language="en", now=now)
    # statement.html is the alliance's; the base.html it extends is the chapter's.
    assert "Union-made in Chicago" in usa.email_html
    assert "Union-made in Chicago" not in alliance.email_html


def test_dates_are_localized_with_babel() -> None:
    day = dt.date(2027, 3, 8)
    assert localized_date(day, "es") == "8 de marzo de 2027"
    assert localized_date(day, "en") == "March 8, 2027"
    assert localized_date(day, "xx") == "March 8, 2027"  # unknown: English, not a failed send


def test_list_names_are_translatable(make_project: ProjectFactory) -> None:
    config = chapters_project(make_project).config
    assert config.lists["usa-members"].title("usa-members", "es") == "Miembros en EE. UU."
    assert config.lists["usa-members"].title("usa-members", "en") == "US members"
    assert config.lists["usa-members"].title("usa-members", "tl") == "US members"
    plain = CHAPTERS_YAML.replace("name: {en: Members, es: Miembros}", "name: Members")
    assert (
        chapters_project(make_project, plain).config.lists["members"].title("members", "es")
        == "Members"
    )


# --- the shipped example ---------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Path:
    for name in ("statements", "templates", "lists"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "campaigns.yaml", tmp_path / "campaigns.yaml")
    return tmp_path / "campaigns.yaml"


def test_the_shipped_chapters_validate_and_preview_every_step(example: Path) -> None:
    report = validate_project(example)
    assert report.ok and report.diagnostics == [], report.diagnostics
    project = load_project(example)
    config = project.config
    assert set(config.chapters) == {"usa", "philippines"}
    now = dt.datetime(2026, 11, 28, tzinfo=UTC)
    for campaign_id, campaign in config.campaigns.items():
        if campaign.chapter is None:
            continue
        items = build_preview(project, campaign_id, now=now)
        assert {i.occurrence.step_id for i in items} == set(campaign.steps)
        languages = {i.language for i in items if i.is_email}
        assert languages == set(config.campaign_languages(campaign))
    (tagalog,) = build_preview(project, "philippines/migrants-day", language="tl", now=now)
    assert tagalog.occurrence.id == "philippines/migrants-day/2026/statement"
    assert tagalog.occurrence.timezone == "Asia/Manila"
    assert "Quezon City" in tagalog.email_text and "Disyembre" in tagalog.email_text
    assert tagalog.email_headers["From"].startswith("Migrant Workers Alliance Philippines")
    usa = build_preview(project, "usa/may-day", now=now)
    assert {i.channel for i in usa} == {"email", "mastodon-usa"}


def test_a_campaign_cannot_claim_a_chapter_by_itself(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace('    date: "05-01"\n', '    date: "05-01"\n    chapter: usa\n')
    d = only(problems(make_project, text), "under chapters.usa.campaigns")
    assert d.line == line_of(text, 'date: "05-01"') + 1


def test_joining_a_broken_campaign_reports_the_break_once(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace('    time: "09:00"\n', '    time: "9 o\'clock"\n')
    found = problems(make_project, text)
    d = only(found, "cannot read time")
    assert d.line == line_of(text, "9 o'clock")
    assert not [x for x in found if "is not a campaign of the alliance" in x.message]


def test_a_sender_name_is_translated_in_the_message_language(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    text = CHAPTERS_YAML.replace(
        "usa: {name: Workers United USA, address: news@usa.example.org}",
        "usa: {name: {en: Workers United USA, es: Envíos de Trabajadores Unidos}, "
        "address: news@usa.example.org}",
    )
    assert text != CHAPTERS_YAML
    project = chapters_project(make_project, text)
    add(
        store_engine,
        "usa-members",
        ("rosa@example.org", "Rosa", "es"),
        ("dave@example.org", "Dave", "en"),
    )
    messages = {
        str(m["Content-Language"]): m
        for m in sent_messages(project, store_engine, "usa/may-day/2027/statement")
    }
    assert messages["es"]["From"] == "Envíos de Trabajadores Unidos <news@usa.example.org>"
    assert messages["en"]["From"] == "Workers United USA <news@usa.example.org>"
    # {{ sender.name }} (the signature) in the same language as the message.
    assert "Envíos de Trabajadores Unidos" in body(messages["es"], "plain")
    assert "Envíos de Trabajadores Unidos" in body(messages["es"], "html")
    assert "Envíos" not in body(messages["en"], "plain")
    assert "Workers United USA" in body(messages["en"], "plain")


def test_a_sender_name_per_language_is_still_one_line(make_project: ProjectFactory) -> None:
    text = CHAPTERS_YAML.replace(
        "usa: {name: Workers United USA,", 'usa: {name: {en: "Workers\\nUnited"},'
    )
    found = problems(make_project, text)
    assert any("one line" in d.message for d in found), found
