"""The clock and a campaign blocked by a problem of its own, with explicit times: a campaign
whose entry fails the schema (so its dates are unknown while it is broken) is looked back for
once fixed, and sent late inside its window. The real process is in test_clock_process.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ProjectFactory
from delivery_helpers import EMAIL_ONLY, add_subscribers, outbox
from sqlalchemy.engine import Engine

from scheduler.clock.daemon import Clock
from scheduler.delivery import ledger
from scheduler.store import problems
from scheduler.store.db import make_engine, migrate
from scheduler.validate import require_valid


def one_off(when: dt.datetime, extra: str = "") -> str:
    text = EMAIL_ONLY.replace("timezone: Europe/Madrid", "timezone: UTC")
    text = text.replace(
        '    date: "05-01"\n    time: "09:00"\n',
        f'    date: "{when:%Y-%m-%d}"\n    time: "{when:%H:%M}"\n',
    )
    return text.replace("    audience: [members]\n", f"    audience: [members]\n{extra}")


def test_a_campaign_fixed_after_failing_the_schema_is_sent_late_inside_its_window(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    real_now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    when = real_now + dt.timedelta(minutes=2)
    path = make_project(one_off(when, extra="    statment: typo\n"), members_csv="email\n")
    project = require_valid(path)
    assert "may-day" in project.blocked and "may-day" not in project.config.campaigns
    add_subscribers(store_engine, 3)
    fake = {"now": real_now}
    clock = Clock(project, store_engine, now=lambda: fake["now"])
    try:
        clock.announce_blocked()
        (row,) = problems.current(store_engine, problems.CAMPAIGN)
        assert row.subject == "may-day" and "statment" in row.detail[0]["message"]
        # Its instant passes while it is broken: nothing can be sent, nothing is guessed.
        fake["now"] = when + dt.timedelta(minutes=30)
        clock.tick()
        assert outbox(project) == []
        # Fixed: the reload takes it, and the next sweep looks back to when it was blocked.
        path.write_text(one_off(when))
        assert clock.reload(reason="test")
        assert problems.current(store_engine, problems.CAMPAIGN) == []
        clock.tick()
    finally:
        clock.ctx.close()
    occ_id = f"may-day/{when.year}/statement"
    fired = ledger.get_occurrence(store_engine, occ_id)
    assert fired is not None and fired.state == "done" and fired.late
    assert "30 min late" in str(fired.note)
    assert len(outbox(project)) == 3


def test_an_occurrence_blocked_at_its_instant_shows_as_blocked_with_its_reason(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    real_now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    when = real_now - dt.timedelta(minutes=5)
    path = make_project(
        one_off(when).replace("statement: may-day", "statement: not-written-yet"),
        members_csv="email\n",
    )
    project = require_valid(path)
    assert "may-day" in project.blocked
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(url)
    migrate(engine)
    clock = Clock(project, engine)
    try:
        clock.announce_blocked()
        clock.tick()
    finally:
        clock.ctx.close()
        engine.dispose()
    occ_id = f"may-day/{when.year}/statement"
    env = {**os.environ, "SCHEDULER_CONFIG": str(path), "SCHEDULER_DATABASE_URL": url}

    def status(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "scheduler", "status", *args],
            env={**env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    (row,) = json.loads(status("--json"))["occurrences"]
    assert row["id"] == occ_id and row["state"] == "blocked"
    assert "not-written-yet" in row["blocked_reason"]
    assert "blocked at its instant" in row["note"]  # the note, with its window, is kept
    text = status()
    assert re.search(rf"{re.escape(occ_id)}\s*│ blocked\s*│", text), text
    assert "not-written-yet" in text
    # Not shown as planned: nothing will fire it until the file is fixed.
    assert "planned" not in re.findall(rf"{re.escape(occ_id)}\s*│ (\w+)", text)
