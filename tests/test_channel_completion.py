"""Completion per (occurrence, channel), through the real CLI and a real `scheduler run`:
a hand send of email before the instant leaves the step's posts to the running clock, and
a channel whose secret is unset at its instant gets failed deliveries with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cli_project
import pytest
from conftest import MINIMAL, ProjectFactory
from posting_fakes import TOKEN, FakeMastodon, origin
from pytest_httpserver import HTTPServer
from test_clock_process import at, start, status, stop, wait_for

from scheduler.store.db import make_engine, migrate


def campaign(mastodon_origin: str, when: object, catch_up: str = "1h") -> str:
    """One one-off campaign at `when` (UTC) on email (an outbox folder) and Mastodon."""
    text = MINIMAL.split("campaigns:")[0].replace("timezone: Europe/Madrid", "timezone: UTC")
    text = text.replace("https://social.example.org", mastodon_origin)
    return text + (
        "campaigns:\n"
        "  rapid:\n    name: Rapid response\n"
        f'    date: {when:%Y-%m-%d}\n    time: "{when:%H:%M:%S}"\n'
        "    statement: may-day\n    audience: [members]\n"
        f"    catch_up: {catch_up}\n"
        "    steps:\n      statement:\n"
        "        channels: [email, mastodon]\n        template: statement\n"
    )


@pytest.fixture
def project_env(make_project: ProjectFactory, tmp_path: Path) -> Callable[[str], dict[str, str]]:
    def make(text: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDULER_", "MASTODON"))}
        return cli_project.project_env(make_project, tmp_path, text, env)

    return make


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def outbox(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["SCHEDULER_CONFIG"]).parent / "outbox").glob("*.eml"))


def test_a_hand_send_of_email_leaves_the_posts_to_the_running_clock(
    project_env: Callable[[str], dict[str, str]], httpserver: HTTPServer, tmp_path: Path
) -> None:
    masto = FakeMastodon(httpserver).install()
    when = at(30)  # the hand send below must finish before it, on a busy machine too
    env = project_env(campaign(origin(httpserver), when))
    env["MASTODON_TOKEN"] = TOKEN
    occ = f"rapid/{when.year}/statement"

    sent = cli("send", "rapid", "--channel", "email", env=env)
    assert sent.returncode == 0, sent.stderr
    assert "email: done — sent 5, failed 0" in sent.stdout
    assert "mastodon: still planned" in sent.stdout
    assert "Still planned: mastodon will go at" in sent.stdout
    assert f"--occurrence {occ} --channel mastodon" in sent.stdout
    assert len(outbox(env)) == 5 and masto.statuses == []
    row = status(env)[occ]
    assert row["state"] == "firing"  # not done: one channel of two went out
    assert row["still_planned"] == ["mastodon"]
    channels = row["channels"]
    assert isinstance(channels, dict)
    assert channels["email"]["state"] == "done" and channels["email"]["sent"] == 5
    assert channels["mastodon"]["state"] == "planned"
    table = cli("status", env=env).stdout
    assert "mastodon: still planned" in table and "email: done — sent 5" in table

    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: len(masto.statuses) >= 1, 30), log.read_text()
        assert wait_for(lambda: status(env)[occ]["state"] == "done", 10), log.read_text()
        time.sleep(2)  # a few more sweeps: nothing goes twice
    finally:
        stop(proc)
    assert len(masto.statuses) == 1
    assert len(outbox(env)) == 5  # the email was not sent again
    row = status(env)[occ]
    channels = row["channels"]
    assert isinstance(channels, dict)
    assert channels["mastodon"]["state"] == "done" and channels["mastodon"]["sent"] == 1
    assert channels["email"]["sent"] == 5
    assert f"event=fired occurrence={occ} channels=mastodon" in log.read_text()


def test_a_clock_started_late_sends_the_planned_channels_late(
    project_env: Callable[[str], dict[str, str]], httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Email by hand just before the instant; no clock at the instant; a clock started a
    little later sends the post, marked late, inside the catch-up window."""
    masto = FakeMastodon(httpserver).install()
    when = at(3)
    env = project_env(campaign(origin(httpserver), when))
    env["MASTODON_TOKEN"] = TOKEN
    occ = f"rapid/{when.year}/statement"
    assert cli("send", "rapid", "--channel", "email", env=env).returncode == 0
    time.sleep(max(0.0, when.timestamp() - time.time()) + 11)  # no longer "on time"
    proc = start(["run", "--tick", "1"], env, tmp_path / "run.log")
    try:
        assert wait_for(lambda: status(env)[occ]["state"] == "done", 30)
    finally:
        stop(proc)
    channels = status(env)[occ]["channels"]
    assert isinstance(channels, dict)
    assert channels["mastodon"]["late"] is True and "late" in channels["mastodon"]["note"]
    assert channels["email"]["late"] is False
    assert len(masto.statuses) == 1 and len(outbox(env)) == 5


def test_a_channel_whose_secret_is_unset_fails_with_the_reason(
    project_env: Callable[[str], dict[str, str]], httpserver: HTTPServer, tmp_path: Path
) -> None:
    masto = FakeMastodon(httpserver).install()
    when = at(20)  # still ahead when the clock has started, on a busy machine too
    env = project_env(campaign(origin(httpserver), when))  # no MASTODON_TOKEN
    occ = f"rapid/{when.year}/statement"
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: "event=start" in log.read_text(), 20), log.read_text()
        text = log.read_text()
        outbox_dir = Path(env["SCHEDULER_CONFIG"]).parent / "outbox"
        assert f"email (smtp): email goes to .eml files in {outbox_dir}" in text
        assert "not ready: mastodon (MASTODON_TOKEN is not set)" in text
        assert "recorded failed with that reason" in text and "scheduler retry" in text
        listed = [line for line in text.splitlines() if line.startswith("  ") and "→" in line]
        assert "next 1 occurrence, each with a timer:" in text
        assert f"occurrences_scheduled={len(listed)}" in text
        assert wait_for(lambda: occ in status(env) and status(env)[occ]["state"] == "done", 30)
    finally:
        stop(proc)
    row = status(env)[occ]
    channels = row["channels"]
    assert isinstance(channels, dict)
    assert channels["email"]["sent"] == 5
    assert channels["mastodon"]["failed"] == 1 and channels["mastodon"]["state"] == "done"
    assert row["failures"] == [
        {"channel": "mastodon", "reason": "MASTODON_TOKEN is not set", "count": 1}
    ]
    assert masto.statuses == []
    assert "mastodon: 1 × MASTODON_TOKEN is not set" in cli("status", env=env).stdout


def test_status_json_of_a_store_from_before_per_channel_state(tmp_path: Path) -> None:
    """Migrating a store whose occurrence went out gives each of its channels a row."""
    import sqlalchemy as sa

    from scheduler.delivery import channel_state

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrate(engine, "0002")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO occurrences (id, campaign, step, instant, state, late, fired_at, "
            "fanned_out_at, finished_at, created_at, updated_at) VALUES ('may-day/2026/statement',"
            " 'may-day', 'statement', '2026-05-01 07:00:00', 'done', 0, '2026-05-01 07:00:00', "
            "'2026-05-01 07:00:01', '2026-05-01 07:01:00', '2026-05-01 07:00:00', "
            "'2026-05-01 07:01:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO deliveries (occurrence_id, channel, recipient, state, sent_at, "
            "created_at, updated_at) VALUES ('may-day/2026/statement', 'email', '1', 'sent', "
            "'2026-05-01 07:00:02', '2026-05-01 07:00:01', '2026-05-01 07:00:02')"
        )
    migrate(engine)
    rows = channel_state.rows(engine, ["may-day/2026/statement"])["may-day/2026/statement"]
    assert rows["email"].state == "done"
    assert rows["email"].first_sent_at is not None
    assert rows["email"].first_sent_at.isoformat().startswith("2026-05-01T07:00:02")
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM occurrence_channels")) == 1
    engine.dispose()
