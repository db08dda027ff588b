"""No accidental early or very late sends by hand, and every message dated when it went."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import pty
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import MINIMAL, ProjectFactory
from pytest_httpserver import HTTPServer

from scheduler.calendar import occurrence
from scheduler.config.project import load_project
from scheduler.delivery.guard import Timing, check_send_time
from scheduler.timefmt import duration, local_time

EMAIL_ONLY = MINIMAL.replace("channels: [email, mastodon]", "channels: [email]")


def env_for(path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update(
        SCHEDULER_CONFIG=str(path), SCHEDULER_DATABASE_URL=f"sqlite:///{path.parent / 's.db'}"
    )
    return env


def send(path: Path, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", "send", *args],
        env=env_for(path),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
    )


def outbox(path: Path) -> list[Path]:
    return sorted((path.parent / "outbox").glob("*.eml"))


def test_an_early_send_needs_now_and_says_when_it_is_due(make_project: ProjectFactory) -> None:
    path = make_project(EMAIL_ONLY)
    year = dt.datetime.now(dt.UTC).year + 1
    refused = send(path, "may-day", "--occurrence", f"may-day/{year}/statement")
    assert refused.returncode == 1
    assert f"May Day {year} statement is due {year}-05-01 09:00 +02:00, in " in refused.stderr
    assert "pass --now" in refused.stderr and "nothing was sent" in refused.stderr
    assert outbox(path) == []
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sent = send(path, "may-day", "--occurrence", f"may-day/{year}/statement", "--now")
    assert sent.returncode == 0, sent.stderr
    assert "sending now as asked (--now)" in sent.stderr
    files = outbox(path)
    assert len(files) == 2
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    # Dated when it went out, not on May Day.
    date = msg["Date"].datetime
    assert before <= date <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


def test_on_a_terminal_it_asks(make_project: ProjectFactory) -> None:
    path = make_project(EMAIL_ONLY)
    year = dt.datetime.now(dt.UTC).year + 1
    for answer, code, files in (("n\n", 1, 0), ("y\n", 0, 2)):
        leader, follower = pty.openpty()
        os.write(leader, answer.encode())
        try:
            result = send(
                path, "may-day", "--occurrence", f"may-day/{year}/statement", stdin=follower
            )
        finally:
            os.close(follower)
            os.close(leader)
        assert result.returncode == code, result.stderr
        assert "Send it now?" in result.stderr
        assert len(outbox(path)) == files


def test_a_past_one_off_after_its_window_needs_now(make_project: ProjectFactory) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).date()
    text = EMAIL_ONLY.replace('date: "05-01"', f"date: {past.isoformat()}")
    path = make_project(text)
    refused = send(path, "may-day")
    assert refused.returncode == 1
    assert f"May Day {past.year} statement was due {past.isoformat()} 09:00 +0" in refused.stderr
    assert "ago, past its catch-up window of 6h" in refused.stderr
    assert outbox(path) == []
    assert send(path, "may-day", "--now").returncode == 0
    assert len(outbox(path)) == 2


def test_the_guard_allows_an_hour_early_and_the_catch_up_window(
    make_project: ProjectFactory,
) -> None:
    project = load_project(make_project(EMAIL_ONLY))
    occ = occurrence(project.config, "may-day/2027/statement")
    config = project.config
    assert check_send_time(config, occ, occ.instant - dt.timedelta(minutes=59)) is None
    assert check_send_time(config, occ, occ.instant + dt.timedelta(hours=5)) is None
    early = check_send_time(config, occ, dt.datetime(2026, 12, 1, 20, tzinfo=dt.UTC))
    assert early is not None and early.timing is Timing.EARLY
    assert early.message.startswith(
        "May Day 2027 statement is due 2027-05-01 09:00 +02:00, in 4 months 29 days"
    )
    late = check_send_time(config, occ, occ.instant + dt.timedelta(hours=7))
    assert late is not None and late.timing is Timing.LATE
    assert "7 hours ago, past its catch-up window of 6h" in late.message


@pytest.mark.parametrize(
    ("zone", "text"),
    [("Asia/Manila", "2027-01-01 09:00 +08:00"), ("America/New_York", "2027-01-01 09:00 -05:00")],
)
def test_times_carry_their_offset_not_an_abbreviation(zone: str, text: str) -> None:
    assert local_time(dt.datetime(2027, 1, 1, 9, tzinfo=ZoneInfo(zone))) == text


def test_durations_read_like_a_person_says_them() -> None:
    start = dt.datetime(2026, 12, 1, 20, tzinfo=dt.UTC)
    assert duration(start, dt.datetime(2027, 5, 1, 5, tzinfo=dt.UTC)) == "4 months 29 days"
    assert duration(start, start + dt.timedelta(minutes=1)) == "1 minute"
    assert duration(start, start + dt.timedelta(hours=2, minutes=5)) == "2 hours 5 minutes"
    assert duration(start, start + dt.timedelta(seconds=20)) == "less than a minute"


LATE_POSTS = """\
channels:
  email: {type: smtp, url: "file:outbox", sender: org}
  bluesky:
    type: bluesky
    handle: alliance.bsky.social
    app_password: "${BLUESKY_PASSWORD}"
    service: "ORIGIN"
  hook: {type: webhook, url: "ORIGIN/hook", secret: "${WEBHOOK_SECRET}"}
campaigns:
  may-day:
    name: May Day
    date: DATE
    time: "TIME"
    statement: may-day
    audience: [members]
    steps:
      statement:
        channels: [email, bluesky, hook]
        template: statement
"""


def test_an_occurrence_sent_hours_late_is_dated_when_it_went_not_at_its_instant(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    import json
    import re

    from posting_fakes import APP_PASSWORD, FakePds, origin
    from werkzeug import Request, Response

    pds = FakePds(httpserver).install()
    hooks: list[tuple[dict[str, str], dict[str, object]]] = []

    def hook(request: Request) -> Response:
        hooks.append((dict(request.headers), request.get_json()))
        return Response("", status=204)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    instant = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(second=0, microsecond=0)
    text = MINIMAL.split("channels:")[0].replace("Europe/Madrid", "UTC") + LATE_POSTS.replace(
        "ORIGIN", origin(httpserver)
    ).replace("DATE", instant.date().isoformat()).replace("TIME", f"{instant:%H:%M}")
    path = make_project(text)
    for statement in (path.parent / "statements").glob("*.md"):  # text only
        source = statement.read_text(encoding="utf-8")
        statement.write_text(re.sub(r"\nimage:\n(  .*\n)+", "\n", source), encoding="utf-8")
    env = {
        **env_for(path),
        "BLUESKY_PASSWORD": APP_PASSWORD,
        "WEBHOOK_SECRET": "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM=",
    }
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sent = subprocess.run(
        [sys.executable, "-m", "scheduler", "send", "may-day", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 4  # two emails, a post, a webhook event

    def sent_then(value: dt.datetime) -> None:
        assert before <= value <= after, (value, instant)
        assert value - instant > dt.timedelta(hours=2)  # not the occurrence's instant

    for file in outbox(path):
        msg = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        sent_then(msg["Date"].datetime)
    records = pds.thread()
    assert records
    for record in records:
        sent_then(dt.datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00")))
    ((headers, body),) = hooks
    sent_then(dt.datetime.fromtimestamp(int(headers["Webhook-Timestamp"]), dt.UTC))
    assert isinstance(body["timestamp"], str)
    sent_then(dt.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")))
    # The webhook says which occurrence it is, with its instant, apart from when it went.
    metadata = body["data"]["occurrence"]  # type: ignore[index]
    assert metadata["instant"] == instant.isoformat().replace("+00:00", "Z")
