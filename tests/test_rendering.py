"""Statements, templates and email messages: escaping, sandboxing, headers."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
from pathlib import Path

import pytest
from conftest import ProjectFactory

from scheduler.config.project import load_project
from scheduler.content.message import build_email, message_id_for
from scheduler.content.render import Recipient, Renderer
from scheduler.content.statements import parse_statement
from scheduler.content.templates import Templates
from scheduler.errors import TemplateError
from scheduler.tokens import BadToken, sign, verify
from scheduler.validate import sample_occurrence

STATEMENT = """---
title: "Rights <now> & {{ 7 * 7 }}"
summary: Short summary
language: en
---
First paragraph with **bold**, a [link](https://example.org/a) and <script>alert(1)</script>.

- one
- two

{{ not_a_template }}
"""


def test_statement_markdown_to_html_and_text() -> None:
    s = parse_statement(STATEMENT, slug="x", language="en", path="x.en.md")
    assert "<strong>bold</strong>" in s.html
    assert '<a href="https://example.org/a">link</a>' in s.html
    # Raw HTML in a statement is text, never markup.
    assert "<script>" not in s.html and "&lt;script&gt;" in s.html
    assert "bold" in s.text and "**" not in s.text
    assert "link (https://example.org/a)" in s.text
    assert "- one\n- two" in s.text
    assert "{{ not_a_template }}" in s.text


def test_statement_language_must_match_file_name() -> None:
    from scheduler.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_statement(STATEMENT, slug="x", language="es", path="x.es.md")
    (d,) = e.value.diagnostics
    assert d.line == 4 and "file name says 'es'" in d.message


def _project_with_statement(make_project: ProjectFactory, text: str) -> Renderer:
    path = make_project()
    (path.parent / "statements" / "may-day.en.md").write_text(text, encoding="utf-8")
    return Renderer(load_project(path))


def _occurrence(renderer: Renderer):  # type: ignore[no-untyped-def]
    zone = renderer.config.campaign_zone(renderer.config.campaigns["may-day"])
    return sample_occurrence(
        "may-day", "statement", dt.time(9), zone, ["email", "mastodon"], "statement"
    )


def test_email_escapes_statement_and_keeps_it_data(make_project: ProjectFactory) -> None:
    renderer = _project_with_statement(make_project, STATEMENT)
    occ = _occurrence(renderer)
    rendered = renderer.email(
        occ,
        Recipient(email="ana@example.org", name="Ana <b>", language="en", subscriber_id=1),
    )
    # The title is autoescaped in HTML, literal in text; statement text is never a template.
    assert "Rights &lt;now&gt; &amp; {{ 7 * 7 }}" in rendered.html
    assert "49" not in rendered.html
    assert "Ana &lt;b&gt;" in rendered.html
    assert rendered.text.startswith("Rights <now> & {{ 7 * 7 }}")
    assert rendered.subject == "Rights <now> & {{ 7 * 7 }}"
    # CSS is inlined for mail clients that drop <style>.
    assert "<style" not in rendered.html and 'style="' in rendered.html
    # Bulk-mail footer: postal address and a working unsubscribe link.
    assert "1 Main Street, Town" in rendered.html and "1 Main Street, Town" in rendered.text
    token = rendered.unsubscribe_url.rsplit("/", 1)[1]
    assert verify("unsubscribe", token) == {
        "s": 1,
        "e": "ana@example.org",
        "l": "members",
        "o": occ.id,  # unsubscribes are counted per mailing
    }
    assert rendered.unsubscribe_url in rendered.text


def test_recipient_language_falls_back_to_default(make_project: ProjectFactory) -> None:
    renderer = Renderer(load_project(make_project()))
    occ = _occurrence(renderer)
    es = renderer.email(occ, Recipient(email="a@example.org", name="A", language="es"))
    fr = renderer.email(occ, Recipient(email="b@example.org", name="B", language="fr"))
    assert es.language == "es" and "Primero de Mayo" in es.subject
    assert fr.language == "en" and fr.subject.startswith("May Day")


def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    (tmp_path / "post").mkdir()
    (tmp_path / "post" / "evil.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match="unsafe"):
        Templates(tmp_path).render("post/evil.txt", {})


def test_undefined_variable_is_an_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "post").mkdir()
    (tmp_path / "post" / "x.txt").write_text("line one\n{{ nope }}\n")
    with pytest.raises(TemplateError) as e:
        Templates(tmp_path).render("post/x.txt", {"statement": {}})
    assert "x.txt:2" in str(e.value) and "'nope' is undefined" in str(e.value)


def test_most_specific_post_template_wins(make_project: ProjectFactory) -> None:
    path = make_project()
    templates = path.parent / "templates" / "post"
    (templates / "statement.mastodon.es.txt").write_text("ES MASTODON {{ statement.title }}")
    renderer = Renderer(load_project(path))
    occ = _occurrence(renderer)
    assert renderer.post(occ, "mastodon").template == "post/statement.txt"
    bluesky_names = Templates.post_candidates("statement", "bluesky", "en")
    assert bluesky_names[:2] == ["post/statement.bluesky.en.txt", "post/statement.bluesky.txt"]


def test_email_headers_encoding_and_no_injection(make_project: ProjectFactory) -> None:
    renderer = Renderer(load_project(make_project()))
    config = renderer.config
    recipient = Recipient(
        email="jose@example.org",
        name="José Ramírez\r\nBcc: victim@example.org",
        language="es",
        subscriber_id=7,
    )
    rendered = renderer.email(_occurrence(renderer), recipient)
    msg = build_email(
        rendered=rendered,
        sender=config.senders["org"],
        recipient=recipient,
        delivery_key="may-day/2030/statement/email/7",
        list_name="members",
        unsubscribe_mailto="unsubscribe@example.org",
        date=dt.datetime(2030, 5, 1, 7, tzinfo=dt.UTC),
    )
    raw = msg.as_bytes()
    assert raw.isascii()  # RFC 2047 / quoted-printable: nothing 8-bit in the wire form
    assert b"\nBcc:" not in raw and b"\r\nBcc:" not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "José Ramírez" in str(parsed["To"])
    assert parsed["Subject"] == rendered.subject and "Primero" in parsed["Subject"]
    assert parsed["Message-ID"] == message_id_for("may-day/2030/statement/email/7", "example.org")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"].startswith("<https://") or parsed[
        "List-Unsubscribe"
    ].startswith("<http://")
    assert "mailto:unsubscribe@example.org" in parsed["List-Unsubscribe"]
    assert parsed["List-Id"] == "<members.example.org>"
    assert parsed.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in parsed.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert "Querida" in parsed.get_body(("plain",)).get_content()


def test_message_id_is_stable_per_delivery() -> None:
    a = message_id_for("k/1", "example.org")
    assert a == message_id_for("k/1", "example.org")
    assert a != message_id_for("k/2", "example.org")
    assert a.startswith("<") and a.endswith("@example.org>")


def test_tokens_cannot_be_forged_or_reused() -> None:
    token = sign("unsubscribe", {"s": 1, "e": "a@example.org", "l": "members"}, key=b"k1")
    assert verify("unsubscribe", token, key=b"k1")["e"] == "a@example.org"
    with pytest.raises(BadToken):
        verify("unsubscribe", token, key=b"other key")
    with pytest.raises(BadToken):
        verify("preferences", token, key=b"k1")  # another purpose
    _payload, mac = token.split(".")
    forged = sign("unsubscribe", {"s": 2, "e": "b@example.org", "l": "members"}, key=b"k1")
    with pytest.raises(BadToken):
        verify("unsubscribe", forged.split(".")[0] + "." + mac, key=b"k1")


def test_long_list_unsubscribe_stays_plain_ascii(make_project: ProjectFactory) -> None:
    renderer = Renderer(load_project(make_project()))
    recipient = Recipient(
        email="someone.with.a.long.address@example.org",
        name="X",
        language="en",
        subscriber_id=123456789,
    )
    rendered = renderer.email(_occurrence(renderer), recipient)
    msg = build_email(
        rendered=rendered,
        sender=renderer.config.senders["org"],
        recipient=recipient,
        delivery_key="k",
        list_name="members",
        unsubscribe_mailto="unsubscribe@example.org",
    )
    raw = msg.as_bytes().decode("ascii")
    header = raw.split("List-Unsubscribe: ", 1)[1].split("\nList-Unsubscribe-Post")[0]
    assert "=?utf-8?" not in header
    assert rendered.unsubscribe_url in header.replace("\r\n ", " ").replace("\n ", " ")
    # Every line within RFC 5322's hard limit.
    assert max(len(line) for line in raw.splitlines()) <= 998


def test_plain_text_keeps_list_structure() -> None:
    source = "---\ntitle: T\nsummary: S\nlanguage: en\n---\n- one\n- two\n\n1. a\n2. b\n\nEnd.\n"
    s = parse_statement(source, slug="x", language="en", path="x.en.md")
    assert s.text == "- one\n- two\n\n1. a\n2. b\n\nEnd.\n"


def test_every_step_of_the_shipped_example_renders() -> None:
    from conftest import ROOT

    from scheduler.preview import build_preview

    project = load_project(ROOT / "campaigns.yaml")
    now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    rendered_steps = set()
    for campaign_id, campaign in project.config.campaigns.items():
        items = build_preview(project, campaign_id, now=now)
        rendered_steps |= {(i.occurrence.campaign_id, i.occurrence.step_id) for i in items}
        for item in items:
            assert not item.over_limit
            assert item.email_text or item.parts
        assert {s for c, s in rendered_steps if c == campaign_id} == set(campaign.steps)


@pytest.mark.parametrize(
    ("subscriber_id", "address", "list_name"),
    [
        (1, "member.1@chapter.example.org", "members"),
        (0, "Ana.Ñúñez@Ejemplo.ORG", "members,chapter-quito"),
        (987654321, 'quo"te\\back\u2028@x.org', 'li"st\n'),
        (-3, "", ""),
    ],
)
def test_fast_links_are_the_tokens_recipient_links_makes(
    make_project: ProjectFactory, subscriber_id: int, address: str, list_name: str
) -> None:
    renderer = Renderer(load_project(make_project()))
    campaign = renderer.config.campaigns["may-day"]
    occurrence = "may-day/2030/statement"
    recipient = Recipient(
        email=address, name=None, language="en", subscriber_id=subscriber_id, list_name=list_name
    )
    base = renderer.link_base(campaign)
    expected = renderer.recipient_links(
        campaign, recipient, occurrence_id=occurrence, base=base, key=b"k1"
    )
    fast = renderer.links_for(campaign, list_name, occurrence, base, b"k1")
    assert fast(subscriber_id, address) == expected
    unsubscribe = expected[0].rsplit("/", 1)[1]
    assert verify("unsubscribe", unsubscribe, key=b"k1") == {
        "s": subscriber_id,
        "e": address.lower(),
        "l": list_name or ",".join(campaign.audience),
        "o": occurrence,
    }
    with pytest.raises(TypeError):
        fast(True, address)  # type: ignore[arg-type]


def test_warm_up_compiles_templates_ahead_and_keeps_edits_visible(
    make_project: ProjectFactory,
) -> None:
    # What a Celery worker does at its start (tasks._on_start): afterwards a send's first
    # batch finds every template compiled, and a template edited later is still read again.
    path = make_project()
    broken = path.parent / "templates" / "post" / "broken.txt"
    broken.write_text("{% if %}", encoding="utf-8")  # a syntax error does not stop the warm-up
    renderer = Renderer(load_project(path))
    renderer.warm_up()
    env = renderer.templates.env
    loader = env.loader
    assert loader is not None
    calls: list[str] = []
    real_get_source = loader.get_source

    def counting_get_source(environment, name):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real_get_source(environment, name)

    loader.get_source = counting_get_source  # type: ignore[method-assign]
    occ = _occurrence(renderer)
    recipient = Recipient(email="ana@example.org", name="Ana", language="en", subscriber_id=1)
    first = renderer.email(occ, recipient)
    assert calls == []  # every template came from the cache the warm-up filled
    text = path.parent / "templates" / "email" / "statement.txt"
    text.write_text("edited after warm-up\n" + text.read_text(encoding="utf-8"), encoding="utf-8")
    later = text.stat().st_mtime + 5
    os.utime(text, (later, later))
    again = renderer.email(occ, recipient)
    assert again.text.startswith("edited after warm-up") and "edited" not in first.text
    assert "email/statement.txt" in calls
