"""Review and the clock as real processes: `scheduler run` holds an unapproved occurrence at
its instant and alerts the organizers once; `scheduler approve` inside the catch-up window lets
it fire (noted late); unapproved past the window it is recorded missed and reported."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from smtp_server import SmtpTestServer
from test_clock_process import at, campaigns, project_env, start, status, stop, wait_for

from scheduler.accounts import store as accounts
from scheduler.clock.policy import ON_TIME
from scheduler.store.db import make_engine
from scheduler.store.schema import Role

__all__ = ["project_env"]  # the fixture, used by name

PASSWORD = "approver passphrase"
MEMBERS = {f"m{i}@example.org" for i in range(5)}


def reviewed(url: str, when: object, catch_up: str) -> str:
    text = campaigns(url, ("rapid", when), catch_up=catch_up)  # type: ignore[arg-type]
    return text.replace(
        "    audience: [members]\n", "    audience: [members]\n    review: required\n"
    )


def add_accounts(env: dict[str, str]) -> None:
    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    approver = accounts.add(engine, "ana@example.org", Role.APPROVER)
    accounts.set_password(engine, approver.id, PASSWORD)
    accounts.add(engine, "org@example.org", Role.ORGANIZER)
    accounts.add(engine, "viewer@example.org", Role.VIEWER)
    engine.dispose()


def subjects(server: SmtpTestServer, to: str) -> list[str]:
    found = []
    for m in server.messages:
        if to in m.rcpt_tos:
            parsed = email.message_from_bytes(m.data, policy=email.policy.default)
            found.append(str(parsed["Subject"]))
    return found


def campaign_mail(server: SmtpTestServer) -> list[str]:
    return [r for m in server.messages for r in m.rcpt_tos if r in MEMBERS]


def test_held_then_approved_then_fired_late(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    when = at(4)
    env = project_env(reviewed(smtp_server.url, when, "1h"))
    add_accounts(env)
    occ = f"rapid/{when.year}/statement"
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: "event=held" in log.read_text(), 30), log.read_text()
        # Held: alerted, not sent, not missed; later sweeps do not alert again.
        assert wait_for(lambda: subjects(smtp_server, "org@example.org"), 10)
        time.sleep(3)
        assert campaign_mail(smtp_server) == []
        assert occ not in status(env)
        held_now = subprocess.run(
            [sys.executable, "-m", "scheduler", "status"], env=env, capture_output=True, text=True
        )
        assert f"HELD for review, not sent: {occ}" in held_now.stdout
        [held] = subjects(smtp_server, "org@example.org")
        assert f"HELD, not sent: {occ}" in held
        # The approver is told too (and, when a sweep ran before the instant, was reminded
        # once before: the process may start too late for that).
        to_ana = subjects(smtp_server, "ana@example.org")
        assert to_ana.count(held) == 1
        assert len([s for s in to_ana if s.startswith("[Test Org] Review needed")]) <= 1
        assert subjects(smtp_server, "viewer@example.org") == []
        # Approved once the instant is more than ON_TIME past, so the fire is late for
        # certain (inside the one-hour window) and the ledger must say so.
        time.sleep(max(0.0, when.timestamp() + ON_TIME.total_seconds() + 1 - time.time()))
        approved = subprocess.run(
            [sys.executable, "-m", "scheduler", "approve", occ, "--as", "ana@example.org"],
            env=env,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert approved.returncode == 0, approved.stderr
        assert "approved by ana@example.org" in approved.stdout
        assert wait_for(lambda: len(campaign_mail(smtp_server)) >= 5, 30), log.read_text()
        time.sleep(2)
    finally:
        stop(proc)
    assert sorted(campaign_mail(smtp_server)) == sorted(MEMBERS)  # each once
    row = status(env)[occ]
    assert row["state"] == "done"
    assert row["late"] is True
    note = str(row["note"])
    assert note.startswith("fired ") and " late (due " in note, note
    assert note.endswith("; after being held for review"), note


def test_held_and_never_approved_is_missed_and_reported(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    when = at(4)
    env = project_env(reviewed(smtp_server.url, when, "1m"))
    add_accounts(env)
    occ = f"rapid/{when.year}/statement"
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: "event=held" in log.read_text(), 30), log.read_text()
        # The catch-up window is one minute: past it, the hold ends as missed.
        assert wait_for(lambda: "event=missed" in log.read_text(), 100), log.read_text()
        assert wait_for(lambda: len(subjects(smtp_server, "org@example.org")) >= 2, 10)
        time.sleep(2)
    finally:
        stop(proc)
    assert campaign_mail(smtp_server) == []
    row = status(env)[occ]
    assert row["state"] == "missed"
    assert "held for review" in str(row["note"]) and "not approved" in str(row["note"])
    held, missed = subjects(smtp_server, "org@example.org")
    assert "HELD" in held and f"MISSED: {occ}" in missed
    assert os.path.exists(log)
