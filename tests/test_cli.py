"""The organizer's CLI through its real entry point (`python -m scheduler`), as a user runs it."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import icalendar
import pytest
from conftest import MINIMAL, ROOT, ProjectFactory


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the shipped example project."""
    for name in ("statements", "templates", "lists"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "campaigns.yaml", tmp_path / "campaigns.yaml")
    return tmp_path


def test_shipped_example_validates(example: Path) -> None:
    result = run("validate", cwd=example)
    assert result.returncode == 0, result.stderr
    assert "ok — 4 campaigns" in result.stdout


def test_validate_reports_errors_with_positions_and_exit_1(make_project: ProjectFactory) -> None:
    path = make_project(MINIMAL.replace("channels: [email, mastodon]", "channels: [emial]"))
    result = run("validate", cwd=path.parent)
    assert result.returncode == 1
    assert "campaigns.yaml:23:20: error: unknown channel 'emial'" in result.stderr
    assert "hint: did you mean 'email'?" in result.stderr
    as_json = json.loads(run("validate", "--json", cwd=path.parent).stdout)
    assert as_json["ok"] is False
    assert as_json["problems"][0]["line"] == 23


def test_config_option_and_env(make_project: ProjectFactory, tmp_path: Path) -> None:
    path = make_project()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run("-c", str(path), "validate", cwd=elsewhere).returncode == 0
    assert run("validate", cwd=elsewhere, env={"SCHEDULER_CONFIG": str(path)}).returncode == 0
    missing = run("validate", cwd=elsewhere)
    assert missing.returncode == 1 and "campaigns.yaml: error: file not found" in missing.stderr


def test_usage_error_exits_2(example: Path) -> None:
    assert run("calendar", "--from", "soon", cwd=example).returncode == 2
    assert run("no-such-command", cwd=example).returncode == 2
    unknown = run("preview", "mayday", cwd=example)
    assert unknown.returncode == 2 and "did you mean 'may-day'?" in unknown.stderr


def test_calendar_json_and_dst_note(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace('date: "05-01"', 'date: "03-08"').replace(
        'time: "09:00"', 'time: "02:30"'
    )
    text = text.replace("timezone: Europe/Madrid", "timezone: America/New_York")
    path = make_project(text)
    result = run(
        "calendar", "--from", "2026-01-01", "--to", "2026-12-31", "--json", cwd=path.parent
    )
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["id"] == "may-day/2026/statement"
    assert record["instant"] == "2026-03-08T07:30:00Z"
    assert record["local"] == "2026-03-08T03:30:00-04:00"
    assert "DST gap" in record["note"]
    table = run("calendar", "--from", "2026-01-01", "--to", "2026-12-31", cwd=path.parent)
    assert "may-day/2026/statement" in table.stdout and "DST gap" in table.stdout


def test_calendar_ics_file_parses_with_stable_uids(example: Path) -> None:
    for n in (1, 2):
        result = run(
            "calendar",
            "--from",
            "2027-01-01",
            "--to",
            "2027-12-31",
            "--ics",
            f"year{n}.ics",
            cwd=example,
        )
        assert result.returncode == 0, result.stderr
    cals = [icalendar.Calendar.from_ical((example / f"year{n}.ics").read_bytes()) for n in (1, 2)]
    uids = [[str(e["UID"]) for e in c.walk("VEVENT")] for c in cals]
    assert uids[0] == uids[1]
    assert "may-day/2027/statement@migrant-alliance.example.org" in uids[0]
    # 2027: women's day 2 steps, may day 3, migrants day 2, the one-off rapid response 1.
    assert len(uids[0]) == 8
    events = {str(e["UID"]): e for e in cals[0].walk("VEVENT")}
    may_day = events["may-day/2027/statement@migrant-alliance.example.org"]
    assert may_day.decoded("DTSTART").isoformat() == "2027-05-01T05:00:00+00:00"


def test_plan_json_counts_audience(example: Path) -> None:
    result = run("plan", "--days", "400", "--json", cwd=example)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    statement = next(
        r for r in records if r["id"].startswith("may-day/") and r["step"] == "statement"
    )
    assert statement["audience"]["recipients"] == 5  # the five rows of lists/members.csv
    countdown = next(r for r in records if r["step"] == "countdown")
    assert countdown["audience"]["recipients"] == 0  # social only


def test_preview_writes_email_files_and_shows_posts(example: Path) -> None:
    result = run("preview", "may-day", "--out", "out", cwd=example)
    assert result.returncode == 0, result.stderr
    folder = example / "out" / "may-day" / "statement"
    for lang in ("en", "es"):
        for suffix in ("html", "txt", "eml"):
            assert (folder / f"email.{lang}.{suffix}").is_file()
    msg = email.message_from_bytes(
        (folder / "email.es.eml").read_bytes(), policy=email.policy.default
    )
    assert "Primero de Mayo" in msg["Subject"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/500" in result.stdout and "/300" in result.stdout
    assert "nothing was sent" in result.stdout


def test_preview_json_is_what_would_be_sent(example: Path) -> None:
    result = run(
        "preview",
        "may-day",
        "--step",
        "statement",
        "--json",
        cwd=example,
        env={"MASTODON_TOKEN": "real-secret-value"},
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    by_channel = {(i["channel"], i["language"]): i for i in items}
    mail = by_channel[("email", "en")]["email"]
    assert mail["headers"]["Subject"] == "May Day: one working class, no borders"
    assert "Message-ID" in mail["headers"]
    toot = by_channel[("mastodon", "en")]["post"]
    assert toot["limit"] == 500
    (request,) = toot["requests"]
    assert request["url"].endswith("/api/v1/statuses")
    assert request["json"]["status"] == toot["parts"][0]["text"]
    assert "real-secret-value" not in result.stdout
    assert not (example / "preview").exists()  # --json writes no files unless --out is given


def test_preview_fails_when_a_post_is_too_long(example: Path) -> None:
    long = "word " * 400
    (example / "templates" / "post" / "reminder.txt").write_text(long)
    result = run("preview", "may-day", "--step", "reminder", "--channel", "mastodon", cwd=example)
    # Long posts become threads within the limit, so nothing is over it.
    assert result.returncode == 0, result.stderr
    assert "part 1/" in result.stdout


def test_send_refuses_before_anything_goes_out_when_a_channel_secret_is_unset(
    example: Path,
) -> None:
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{example / 'state.db'}"}
    refused = run("send", "may-day", cwd=example, env=env)
    assert refused.returncode == 1
    assert "nothing was sent" in refused.stderr and "MASTODON_TOKEN" in refused.stderr
    assert "--channel email" in refused.stderr
    assert not (example / "outbox").exists()
    sent = run("send", "may-day", "--channel", "email", "--now", "--json", cwd=example, env=env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 5
    assert len(list((example / "outbox").glob("*.eml"))) == 5


def test_plan_counts_the_store_and_the_csv_once_each(example: Path) -> None:
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{example / 'state.db'}"}
    extra = example / "extra.csv"
    # One address already in the CSV (counted once) and one new one.
    extra.write_text("email,name,language\namina.diallo@example.org,A,en\nnew@example.org,N,es\n")
    assert run("lists", "import", "press", str(extra), cwd=example, env=env).returncode == 0
    gone = example / "gone.csv"
    gone.write_text("email\nkwame.mensah@example.org\n")
    assert run("lists", "import", "members", str(gone), cwd=example, env=env).returncode == 0
    from scheduler.store.db import make_engine
    from scheduler.store.subscribers import unsubscribe

    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    assert unsubscribe(engine, "kwame.mensah@example.org", "members")
    engine.dispose()
    result = run("plan", "--days", "400", "--json", cwd=example, env=env)
    records = json.loads(result.stdout)
    statement = next(
        r for r in records if r["id"].startswith("may-day/") and r["step"] == "statement"
    )
    # 5 in lists/members.csv, minus Kwame who left, plus the new press address.
    assert statement["audience"]["recipients"] == 5
    assert "store" in statement["audience"]["source"]


def test_pause_resume_and_cancel(example: Path) -> None:
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{example / 'state.db'}"}
    assert run("pause", "may-day", "--note", "strike", cwd=example, env=env).stdout.strip() == (
        "may-day: paused"
    )
    assert "already paused" in run("pause", "may-day", cwd=example, env=env).stdout
    assert json.loads(run("status", "--json", cwd=example, env=env).stdout)["paused"] == ["may-day"]
    assert "resumed" in run("resume", "may-day", cwd=example, env=env).stdout
    assert run("pause", "mayday", cwd=example, env=env).returncode == 2
    cancelled = run("cancel", "may-day/2028/statement", cwd=example, env=env)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = run("cancel", "may-day/2028/statement", cwd=example, env=env)
    assert again.returncode == 1 and "already cancelled" in again.stderr
    refused = run(
        "send",
        "may-day",
        "--occurrence",
        "may-day/2028/statement",
        "--channel",
        "email",
        cwd=example,
        env=env,
    )
    assert refused.returncode == 1 and "cancelled: nothing was sent" in refused.stdout
    rows = json.loads(run("status", "--json", cwd=example, env=env).stdout)["occurrences"]
    assert [(r["id"], r["state"]) for r in rows] == [("may-day/2028/statement", "cancelled")]
