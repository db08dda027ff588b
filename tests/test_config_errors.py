"""One test per kind of mistake an organizer can make, pinning file, line, column and message."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINIMAL, ProjectFactory

from scheduler.errors import Diagnostic
from scheduler.validate import validate_project


def problems(path: Path, *, strict: bool = False) -> list[Diagnostic]:
    return validate_project(path, strict=strict).diagnostics


def only(found: list[Diagnostic], fragment: str) -> Diagnostic:
    matching = [d for d in found if fragment in d.message]
    assert len(matching) == 1, f"expected one problem containing {fragment!r}, got {found}"
    return matching[0]


def test_minimal_project_is_clean(make_project: ProjectFactory) -> None:
    assert problems(make_project()) == []


def test_duplicate_key_is_rejected_with_both_lines(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('    time: "09:00"\n', '    time: "09:00"\n    time: "10:00"\n')
    (d,) = problems(make_project(text))
    assert d.file.endswith("campaigns.yaml")
    assert (d.line, d.column) == (19, 5)
    assert d.message == "duplicate key 'time'"
    assert d.hint is not None and "line 18" in d.hint


def test_unknown_key_suggests_the_close_one(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("    statement: may-day\n", "    statment: may-day\n")
    found = problems(make_project(text))
    d = only(found, "unknown key 'statment'")
    assert (d.line, d.column) == (19, 5)
    assert d.hint == "did you mean 'statement'?"
    missing = only(found, "missing required key 'statement'")
    assert missing.line == 15  # points at the campaign that lacks it


def test_unknown_time_zone(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("timezone: Europe/Madrid", "timezone: Europe/Madird")
    (d,) = problems(make_project(text))
    assert (d.line, d.column) == (5, 13)
    assert "unknown time zone 'Europe/Madird'" in d.message


def test_impossible_date(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('date: "05-01"', 'date: "02-30"')
    (d,) = problems(make_project(text))
    assert (d.line, d.column) == (17, 11)
    assert "'02-30' is not a date in any year" in d.message


def test_date_and_rrule_together(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('date: "05-01"', 'date: "05-01"\n    rrule: "FREQ=YEARLY"')
    (d,) = problems(make_project(text))
    assert "exactly one of 'date'" in d.message


def test_bad_offset(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("      statement:\n", "      statement:\n        offset: a week early\n")
    (d,) = problems(make_project(text))
    assert (d.line, d.column) == (23, 17)
    assert "cannot read offset 'a week early'" in d.message


def test_step_naming_unknown_channel(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("channels: [email, mastodon]", "channels: [email, mastadon]")
    (d,) = problems(make_project(text))
    assert (d.line, d.column) == (23, 27)
    assert d.message == "unknown channel 'mastadon'"
    assert d.hint == "did you mean 'mastodon'?"


def test_audience_naming_unknown_list(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("audience: [members]", "audience: [member]")
    (d,) = problems(make_project(text))
    assert (d.line, d.column) == (20, 16)
    assert d.message == "unknown list 'member'"


def test_missing_template(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("template: statement", "template: manifesto")
    found = problems(make_project(text))
    assert {d.message for d in found} == {
        "no template for 'manifesto' on channel 'email'",
        "no template for 'manifesto' on channel 'mastodon'",
    }
    assert all((d.line, d.column) == (24, 19) for d in found)
    assert any("email/manifesto.html" in (d.hint or "") for d in found)


def test_missing_statement_language(make_project: ProjectFactory) -> None:
    path = make_project()
    (path.parent / "statements" / "may-day.es.md").unlink()
    (d,) = problems(path)
    assert (d.line, d.column) == (19, 16)
    assert "statement 'may-day' has no 'es' version" in d.message


def test_bad_statement_front_matter(make_project: ProjectFactory) -> None:
    path = make_project()
    statement = path.parent / "statements" / "may-day.en.md"
    statement.write_text("---\ntitle: Hi\nsumary: x\nlanguage: en\n---\nBody\n", encoding="utf-8")
    found = problems(path)
    d = only(found, "unknown key 'sumary'")
    assert d.file.endswith("may-day.en.md")
    assert (d.line, d.column) == (3, 1)
    assert d.hint == "did you mean 'summary'?"


def test_template_syntax_error_points_into_the_template(make_project: ProjectFactory) -> None:
    path = make_project()
    post = path.parent / "templates" / "post" / "statement.txt"
    post.write_text("{{ statement.title }}\n\n{% if %}\n", encoding="utf-8")
    found = problems(path)
    assert len(found) == 1
    d = found[0]
    assert d.file.endswith("post/statement.txt")
    assert d.line == 3
    assert "syntax error" in d.message


def test_template_undefined_variable(make_project: ProjectFactory) -> None:
    path = make_project()
    post = path.parent / "templates" / "post" / "statement.txt"
    post.write_text("{{ statement.title }}\n{{ statement.hashtag }}\n", encoding="utf-8")
    found = problems(path)
    d = only(found, "hashtag")
    assert d.file.endswith("post/statement.txt")
    assert d.line == 2
    assert d.hint is not None and "statement" in d.hint


def test_secret_written_literally(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('token: "${MASTODON_TOKEN}"', "token: abc123supersecret")
    (d,) = problems(make_project(text))
    assert d.line == 13
    assert "${" in (d.hint or "") + d.message


def test_literal_password_in_smtp_url(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('url: "file:outbox"', 'url: "smtp://me:hunter2@mail.example.org:587"')
    (d,) = problems(make_project(text))
    assert d.line == 12
    assert "hunter2" not in d.message  # never echo a secret back


def test_csv_list_bad_rows(make_project: ProjectFactory) -> None:
    csv = (
        "email,name,language\n"
        "ana@example.org,Ana,es\n"
        "not-an-address,Bad,en\n"
        "ANA@example.org,Ana again,es\n"
    )
    found = problems(make_project(members_csv=csv))
    assert all(d.file.endswith("members.csv") for d in found)
    assert sorted(d.line for d in found) == [3, 4]
    invalid = next(d for d in found if d.line == 3)
    duplicate = next(d for d in found if d.line == 4)
    assert "address" in invalid.message
    assert "duplicate" in duplicate.message


def test_missing_list_file(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("source: members.csv", "source: nowhere.csv")
    (d,) = problems(make_project(text))
    assert d.line == 10
    assert "'nowhere.csv' not found" in d.message


def test_yaml_syntax_error(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('    time: "09:00"\n', "    time: [09:00\n")
    (d,) = problems(make_project(text))
    assert d.message.startswith("YAML syntax")
    assert d.line >= 19


def test_every_error_is_reported_at_once(make_project: ProjectFactory) -> None:
    text = (
        MINIMAL.replace("timezone: Europe/Madrid", "timezone: Mars/Olympus")
        .replace('date: "05-01"', 'date: "13-01"')
        .replace("name: Test Org\n  website", "name: Test Org\n  webiste")
    )
    found = problems(make_project(text))
    assert len(found) >= 3
    lines = sorted(d.line for d in found)
    assert 5 in lines and 17 in lines


def test_strict_requires_channel_secrets(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MASTODON_TOKEN", raising=False)
    monkeypatch.setenv("SCHEDULER_SECRET_KEY", "k" * 32)
    path = make_project()
    assert problems(path) == []
    d = only(problems(path, strict=True), "MASTODON_TOKEN")
    assert d.line == 13
    monkeypatch.setenv("MASTODON_TOKEN", "set")
    assert problems(path, strict=True) == []


def test_time_zone_typo_gets_a_suggestion(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace("timezone: Europe/Madrid", "timezone: Europe/Madird")
    (d,) = problems(make_project(text))
    assert "did you mean 'Europe/Madrid'?" in d.message


def test_schema_errors_and_cross_checks_are_reported_together(
    make_project: ProjectFactory,
) -> None:
    text = (
        MINIMAL.replace('token: "${MASTODON_TOKEN}"', 'token: "${MASTODON_TOKEN}", colour: red')
        .replace("channels: [email, mastodon]", "channels: [email, mastodon, telegarm]")
        .replace('date: "05-01"', 'date: "05-01"\n    timezone: Nowhere/Special')
    )
    found = problems(make_project(text))
    messages = " | ".join(d.message for d in found)
    assert "unknown key 'colour'" in messages  # schema of a channel's settings
    assert "unknown time zone 'Nowhere/Special'" in messages  # schema of a campaign
    # The campaign with a schema error is set aside; the mastodon channel too. Neither causes
    # a false "unknown channel 'mastodon'".
    assert "unknown channel 'mastodon'" not in messages
    report = validate_project(make_project(text))
    assert report.project is None  # never usable for sending


def test_reference_to_an_entry_set_aside_is_not_reported_twice(
    make_project: ProjectFactory,
) -> None:
    text = MINIMAL.replace("  email: {type: smtp", "  email: {type: smtp, bogus: 1")
    found = problems(make_project(text))
    assert [d.message for d in found] == ["unknown key 'bogus'"]


def test_dkim_settings_are_checked(make_project: ProjectFactory) -> None:
    half = MINIMAL.replace("sender: org}", "sender: org, dkim_selector: s1}")
    (d,) = problems(make_project(half))
    assert "dkim_selector and dkim_private_key_file" in d.message
    missing = MINIMAL.replace(
        "sender: org}", "sender: org, dkim_selector: s1, dkim_private_key_file: nokey.pem}"
    )
    (d,) = problems(make_project(missing))
    assert d.line == 12 and "DKIM key file" in d.message and "nokey.pem" in d.message
