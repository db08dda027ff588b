"""A message's own temporary failure (`450 4.2.1 Mailbox busy` for one recipient) waits in the
ledger and is sent later, once, by the running clock or a re-run of `send`; it fails only
when the channel's retry window, counted from its first failure, is over. Real SMTP server,
real CLI, real `scheduler run`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cli_project
import pytest
from conftest import ProjectFactory
from redis_queue import own_queue
from smtp_server import SmtpTestServer
from test_clock_process import REDIS_URL, at, campaigns, start, stop, wait_for

MEMBERS = cli_project.MEMBERS
BUSY = MEMBERS[2]
# Waits of 0.1-0.2 s doubling: the first five tries fit in a few seconds.
FAST = {"SCHEDULER_RETRY_BASE_SECONDS": "0.2"}


@pytest.fixture
def project_env(make_project: ProjectFactory, tmp_path: Path) -> Callable[[str], dict[str, str]]:
    def make(text: str) -> dict[str, str]:
        return cli_project.project_env(make_project, tmp_path, text, {**os.environ, **FAST})

    return make


@pytest.fixture
def queue() -> Iterator[tuple[str, str]]:
    """A Celery queue and a clock leader key of this test's own."""
    yield from own_queue(REDIS_URL)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def occurrences(env: dict[str, str]) -> dict[str, dict[str, object]]:
    done = cli(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    return {o["id"]: o for o in json.loads(done.stdout)["occurrences"]}


def test_a_busy_mailbox_is_deferred_and_a_rerun_of_send_delivers_it_once(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer
) -> None:
    when = at(-30)
    env = project_env(campaigns(smtp_server.url, ("rapid", when)))
    env["SCHEDULER_RETRY_BASE_SECONDS"] = "0.5"  # the next attempt 4-8 s after the send
    occ = f"rapid/{when.year}/statement"
    # Busy for the five tries of the first send and the first of the next one.
    smtp_server.fail_rcpt_of(BUSY, "450 4.2.1 Mailbox busy", times=6)
    first = cli(env, "send", "rapid")
    assert first.returncode == 0, first.stderr
    assert "sent 4, failed 0" in first.stdout
    assert "email: 1 delivery deferred after a temporary failure (450 4.2.1 Mailbox busy)" in (
        first.stdout
    )
    assert smtp_server.count_by_recipient() == {e: 1 for e in MEMBERS if e != BUSY}
    # status shows it: deferred, with its next attempt, and the occurrence not done.
    row = occurrences(env)[occ]
    assert row["state"] == "firing"
    deferred = row["deferred"]["email"]  # type: ignore[index]
    assert deferred["count"] == 1 and deferred["reason"] == "450 4.2.1 Mailbox busy"
    next_attempt = dt.datetime.fromisoformat(deferred["next_attempt_at"])
    text = cli({**env, "COLUMNS": "250"}, "status").stdout
    assert "sent 4, failed 0, deferred 1" in text and "(next try" in text, text
    assert f"{occ} email: 1 deferred after a temporary failure (450 4.2.1 Mailbox busy)" in text
    # A re-run before the next attempt sends nothing; after it, the deferred one goes out.
    early = cli(env, "send", "rapid")
    assert early.returncode == 0, early.stderr
    if "nothing to send yet" in early.stdout:
        assert f"{occ}: nothing to send yet — 1 delivery waits" in early.stdout
        assert dt.datetime.now(dt.UTC) < next_attempt + dt.timedelta(seconds=1)
        time.sleep(max(0.0, (next_attempt - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
        again = cli(env, "send", "rapid")
    else:  # a slow machine: the status calls took longer than the wait
        again = early
    assert again.returncode == 0, again.stderr
    assert "sent 1, failed 0" in again.stdout
    assert smtp_server.count_by_recipient() == {e: 1 for e in MEMBERS}
    row = occurrences(env)[occ]
    assert row["state"] == "done" and row["deferred"] == {}
    assert row["deliveries"] == {"email": {"sent": 5}}
    # And once done, a re-run sends nothing again.
    last = cli(env, "send", "rapid")
    assert "nothing new to send" in last.stdout
    assert smtp_server.count_by_recipient() == {e: 1 for e in MEMBERS}


def test_the_running_clock_sends_a_deferred_message_later_exactly_once(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    when = at(3)
    env = project_env(campaigns(smtp_server.url, ("rapid", when)))
    smtp_server.fail_rcpt_of(BUSY, "450 4.2.1 Mailbox busy", times=7)
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: BUSY in smtp_server.count_by_recipient(), 60), log.read_text()
        time.sleep(3)  # a few more sweeps: nothing is sent again
    finally:
        stop(proc)
    text = log.read_text()
    assert smtp_server.count_by_recipient() == {e: 1 for e in MEMBERS}
    assert "event=deferred" in text
    assert "reason='sending deferred deliveries'" in text
    busy = [m for m in smtp_server.messages if BUSY in m.rcpt_tos]
    others = [m for m in smtp_server.messages if BUSY not in m.rcpt_tos]
    assert min(m.received_at for m in busy) > max(m.received_at for m in others)  # type: ignore[attr-defined]
    row = occurrences(env)[f"rapid/{when.year}/statement"]
    assert row["state"] == "done" and row["deliveries"] == {"email": {"sent": 5}}


def test_a_mailbox_busy_for_the_whole_retry_window_fails_saying_so(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    when = at(3)
    text = campaigns(smtp_server.url, ("rapid", when)).replace(
        "sender: org}", 'sender: org, retry_window: "2s"}'
    )
    env = project_env(text)
    smtp_server.reject_rcpt[BUSY] = "450 4.2.1 Mailbox busy"
    occ = f"rapid/{when.year}/statement"
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: occurrences(env).get(occ, {}).get("state") == "done", 60), (
            log.read_text()
        )
    finally:
        stop(proc)
    assert smtp_server.count_by_recipient() == {e: 1 for e in MEMBERS if e != BUSY}
    row = occurrences(env)[occ]
    assert row["deliveries"] == {"email": {"sent": 4, "failed": 1}}
    assert row["failures"] == [
        {
            "channel": "email",
            "reason": "temporary failures for the whole retry window (2s): 450 4.2.1 Mailbox busy",
            "count": 1,
        }
    ]


def test_through_celery_the_clock_hands_a_deferred_message_to_a_worker_once(
    project_env: Callable[[str], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    queue: tuple[str, str],
) -> None:
    name, key = queue
    when = at(4)
    env = project_env(campaigns(smtp_server.url, ("rapid", when)))
    env.update(SCHEDULER_BROKER_URL=REDIS_URL, SCHEDULER_QUEUE=name, SCHEDULER_LEADER_KEY=key)
    smtp_server.fail_rcpt_of(BUSY, "450 4.2.1 Mailbox busy", times=7)
    clock = start(["clock", "--tick", "1"], env, tmp_path / "clock.log")
    worker = start(["worker", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: BUSY in smtp_server.count_by_recipient(), 90), (
            (tmp_path / "clock.log").read_text()[-3000:],
            (tmp_path / "worker.log").read_text()[-3000:],
        )
        time.sleep(3)  # a few more sweeps: nothing is sent again
    finally:
        stop(clock)
        stop(worker)
    assert smtp_server.count_by_recipient() == {e: 1 for e in MEMBERS}
    assert "event=deferred" in (tmp_path / "worker.log").read_text()
    assert "reason='sending deferred deliveries'" in (tmp_path / "clock.log").read_text()
    row = occurrences(env)[f"rapid/{when.year}/statement"]
    assert row["state"] == "done" and row["deliveries"] == {"email": {"sent": 5}}
