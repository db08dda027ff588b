"""One bad row, or one campaign's own problem, never stops anything else (issue 9, part 2).
Through the real CLI on a copy of the shipped example, as an organizer meets it."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from test_cli import run

from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.fire import sync_sources
from scheduler.store.db import make_engine, migrate
from scheduler.validate import require_valid

BAD_ROW = "joe.smith@example,Joe Smith,en,US\n"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    for name in ("statements", "templates", "lists"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "campaigns.yaml", tmp_path / "campaigns.yaml")
    return tmp_path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"}


def with_bad_row(example: Path) -> int:
    """Append the bad row; its line number."""
    members = example / "lists" / "members.csv"
    text = members.read_text(encoding="utf-8")
    members.write_text(text + BAD_ROW, encoding="utf-8")
    return len(text.splitlines()) + 1


def test_a_bad_row_is_a_warning_and_every_command_still_works(
    example: Path, env: dict[str, str]
) -> None:
    line = with_bad_row(example)
    where = f"lists/members.csv:{line}:1: warning: column 'email': invalid address"
    checked = run("validate", cwd=example, env=env)
    assert checked.returncode == 0, checked.stderr
    assert where in checked.stderr and "ok — 6 campaigns" in checked.stdout
    strict = run("validate", "--strict", cwd=example, env=env)
    assert strict.returncode == 1
    assert f"lists/members.csv:{line}:1: error: column 'email'" in strict.stderr

    imported = run("lists", "import", "members", "lists/members.csv", cwd=example, env=env)
    assert imported.returncode == 0, imported.stderr
    assert where in imported.stderr and "1 rejected rows" in imported.stdout
    again = run("lists", "import", "members", "lists/members.csv", "--json", cwd=example, env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["rejected"] == 1 and report["unchanged"] >= 1
    (problem,) = report["problems"]
    assert problem["line"] == line and problem["field"] == "email"
    assert problem["severity"] == "warning" and "joe.smith@example" in problem["message"]

    for args in (
        ("lists", "show"),
        ("calendar",),
        ("plan", "--days", "400"),
        ("preview", "may-day", "--json"),
        ("send", "may-day", "--dry-run"),
    ):
        result = run(*args, cwd=example, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert "nothing was sent" not in result.stderr.lower() or args[0] == "preview"


def test_a_file_with_no_readable_row_is_still_an_error_for_lists_import(
    example: Path, env: dict[str, str]
) -> None:
    (example / "people.csv").write_text("mail,name\na@example.org,A\n", encoding="utf-8")
    result = run("lists", "import", "members", "people.csv", cwd=example, env=env)
    assert result.returncode == 1
    assert "people.csv:1: warning: column 'email': there is no 'email' column" in result.stderr
    assert "rename column 'mail' to 'email'" in result.stderr


def test_a_sync_logs_the_rows_left_out_and_status_shows_them(
    example: Path, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    line = with_bad_row(example)
    members = example / "lists" / "members.csv"
    members.write_text(members.read_text() + "ana@example,Ana,en,ES\n", encoding="utf-8")
    project = require_valid(example / "campaigns.yaml")
    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    migrate(engine)
    ctx = DeliveryContext(project, engine)
    try:
        with caplog.at_level(logging.WARNING, logger="scheduler.delivery.fire"):
            synced = sync_sources(ctx, ["members"])
    finally:
        ctx.close()
        engine.dispose()
    assert synced["members"] >= 4  # the good rows went in
    (record,) = [r for r in caplog.records if "list_rows_left_out" in r.getMessage()]
    assert "list=members" in record.getMessage() and "count=2" in record.getMessage()
    assert f"lines={line},{line + 1}" in record.getMessage()

    status = run("status", cwd=example, env=env)
    assert status.returncode == 0, status.stderr
    assert (
        "list members: 2 rows of" in status.stdout and f"lines {line}, {line + 1}" in status.stdout
    )
    data = json.loads(run("status", "--json", cwd=example, env=env).stdout)
    (listed,) = data["list_problems"]
    assert listed["list"] == "members" and listed["count"] == 2
    assert listed["lines"] == [line, line + 1]


def test_a_missing_statement_blocks_that_campaign_only(example: Path, env: dict[str, str]) -> None:
    (example / "statements" / "may-day.es.md").unlink()
    checked = run("validate", cwd=example, env=env)
    assert checked.returncode == 1
    assert "statement 'may-day' has no 'es' version" in checked.stderr
    assert "blocked until fixed: may-day; every other campaign is scheduled" in checked.stderr
    as_json = json.loads(run("validate", "--json", cwd=example, env=env).stdout)
    assert as_json["blocked"] == ["may-day"]
    assert {p["scope"] for p in as_json["problems"]} == {"campaign"}

    for args in (("calendar",), ("plan", "--days", "400"), ("preview", "womens-day", "--json")):
        result = run(*args, cwd=example, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert "campaign 'may-day' is blocked" in result.stderr
    listed = json.loads(run("calendar", "--json", cwd=example, env=env).stdout)
    assert {o["campaign"] for o in listed if o["blocked"]} == {"may-day"}
    dry = run("send", "womens-day", "--dry-run", cwd=example, env=env)
    assert dry.returncode == 0, dry.stderr
    for args in (("preview", "may-day"), ("send", "may-day", "--dry-run")):
        result = run(*args, cwd=example, env=env)
        assert result.returncode == 1
        assert "campaign 'may-day' is blocked by 1 problem of its own" in result.stderr
        assert "may-day.es.md not found" in result.stderr


def test_a_template_that_fails_blocks_the_campaign_using_it(
    example: Path, env: dict[str, str]
) -> None:
    (example / "templates" / "post" / "broken.txt").write_text("{{ statement.nope }}\n")
    path = example / "campaigns.yaml"
    text = path.read_text()
    start = text.index("  stop-the-raids:")
    tail = text[start:].replace(
        "channels: [email, mastodon, mastodon-es, bluesky]\n        template: statement",
        "channels: [mastodon]\n        template: broken",
    )
    path.write_text(text[:start] + tail)
    checked = json.loads(run("validate", "--json", cwd=example, env=env).stdout)
    assert checked["blocked"] == ["stop-the-raids"], checked
    assert run("calendar", cwd=example, env=env).returncode == 0
    assert run("preview", "may-day", "--json", cwd=example, env=env).returncode == 0
    blocked = run("preview", "stop-the-raids", cwd=example, env=env)
    assert blocked.returncode == 1
    assert "post/broken.txt:1" in blocked.stderr and "nope" in blocked.stderr


def test_a_campaign_failing_the_schema_is_blocked_not_unknown(
    example: Path, env: dict[str, str]
) -> None:
    path = example / "campaigns.yaml"
    path.write_text(path.read_text().replace('    date: "05-01"', '    dat: "05-01"', 1))
    calendar = run("calendar", "--json", cwd=example, env=env)
    assert calendar.returncode == 0, calendar.stderr
    assert "may-day" not in {o["campaign"] for o in json.loads(calendar.stdout)}
    assert "campaign 'may-day' is blocked" in calendar.stderr
    preview = run("preview", "may-day", cwd=example, env=env)
    assert preview.returncode == 1
    assert "unknown key 'dat'" in preview.stderr and "unknown campaign" not in preview.stderr


def test_a_broken_shared_structure_still_stops_everything(
    example: Path, env: dict[str, str]
) -> None:
    path = example / "campaigns.yaml"
    path.write_text(path.read_text().replace("  website: https://", "  website: ftp://", 1))
    for args in (("calendar",), ("preview", "womens-day")):
        result = run(*args, cwd=example, env=env)
        assert result.returncode == 1
        assert "organization.website" in result.stderr and "nothing was sent" in result.stderr
