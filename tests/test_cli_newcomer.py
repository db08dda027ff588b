"""What a newcomer reads: times with their UTC offset, plurals, counts that agree, and a
"did you mean" wherever a campaign or an occurrence is typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MINIMAL, ProjectFactory
from test_cli import example, run  # noqa: F401  (the `example` fixture)

ONE = MINIMAL.replace("channels: [email, mastodon]", "channels: [email]")


def test_calendar_plan_and_dry_run_show_offsets_not_abbreviations(
    make_project: ProjectFactory,
) -> None:
    path = make_project(ONE.replace("timezone: Europe/Madrid", "timezone: Asia/Manila"))
    table = run("calendar", "--from", "2027-01-01", "--to", "2027-12-31", cwd=path.parent).stdout
    assert "2027-05-01 09:00 +08:00" in table and "PST" not in table and "+08 " not in table
    assert "\n1 occurrence\n" in table  # not "1 occurrences"
    plan = run("plan", "--days", "400", cwd=path.parent).stdout
    assert "09:00 +08:00" in plan
    dry = run("send", "may-day", "--dry-run", cwd=path.parent)
    assert dry.returncode == 0, dry.stderr
    assert "09:00 +08:00" in dry.stdout
    assert "ok — 1 campaign, 1 step, 2 channels, 1 list," in run("validate", cwd=path.parent).stdout


def test_dry_run_counts_the_csv_sources_as_plan_does(example: Path) -> None:  # noqa: F811
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{example / 'state.db'}"}
    plan = json.loads(run("plan", "--days", "400", "--json", cwd=example, env=env).stdout)
    expected = next(r for r in plan if r["id"].startswith("may-day/") and r["step"] == "statement")
    dry = run("send", "may-day", "--dry-run", "--json", cwd=example, env=env)
    assert dry.returncode == 0, dry.stderr
    email = json.loads(dry.stdout)["channels"]["email"]
    assert email["recipients"] == expected["audience"]["recipients"] == 5
    text = run("send", "may-day", "--dry-run", cwd=example, env=env).stdout
    assert "email: 5 emails (5 more from the lists' CSV sources)" in text


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (("pause", "mayday"), "did you mean 'may-day'?"),
        (("resume", "mayday"), "did you mean 'may-day'?"),
        (("preview", "mayday"), "did you mean 'may-day'?"),
        (("send", "mayday", "--dry-run"), "did you mean 'may-day'?"),
        (("cancel", "may-day/2027/statment"), "did you mean 'may-day/2027/statement'?"),
        (("cancel", "may-day/2027"), "did you mean 'may-day/2027/statement'?"),
        (("cancel", "may-day/27/statement"), "did you mean 'may-day/2027/statement'?"),
        (
            ("send", "may-day", "--occurrence", "may-day/2027/statment", "--dry-run"),
            "did you mean 'may-day/2027/statement'?",
        ),
    ],
)
def test_every_command_that_takes_a_campaign_or_occurrence_suggests(
    example: Path,  # noqa: F811
    args: tuple[str, ...],
    suggestion: str,
) -> None:
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{example / 'state.db'}"}
    result = run(*args, cwd=example, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert suggestion in result.stderr
