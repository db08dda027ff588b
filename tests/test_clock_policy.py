"""The clock's rules with explicit clocks: due, late inside the window, missed outside it,
paused, resumed after a crash — across DST changes."""

from __future__ import annotations

import datetime as dt

from conftest import MINIMAL, ProjectFactory
from delivery_helpers import EMAIL_ONLY, add_subscribers
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.clock.daemon import Clock
from scheduler.clock.policy import Action, decide
from scheduler.config.project import load_project
from scheduler.delivery import clock_state as state
from scheduler.delivery.ledger import OccurrenceRow

UTC = dt.UTC


def config_for(
    make_project: ProjectFactory,
    *,
    date: str = '"05-01"',
    time: str = '"09:00"',
    tz: str = "Europe/Madrid",
    catch_up: str = "6h",
):  # type: ignore[no-untyped-def]
    text = (
        EMAIL_ONLY.replace('date: "05-01"', f"date: {date}\n    catch_up: {catch_up}")
        .replace('time: "09:00"', f"time: {time}")
        .replace("timezone: Europe/Madrid", f"timezone: {tz}")
    )
    return load_project(make_project(text, members_csv="email\n"))


def one(project, year: int = 2027):  # type: ignore[no-untyped-def]
    return calendar.occurrence(project.config, f"may-day/{year}/statement")


def test_due_late_and_missed(make_project: ProjectFactory) -> None:
    project = config_for(make_project)
    occ = one(project)  # 2027-05-01 09:00 Madrid = 07:00 UTC
    assert occ.instant == dt.datetime(2027, 5, 1, 7, tzinfo=UTC)
    cases = {
        dt.timedelta(seconds=-1): [],
        dt.timedelta(seconds=0): [Action.FIRE],
        dt.timedelta(seconds=9): [Action.FIRE],
        dt.timedelta(minutes=30): [Action.LATE],
        dt.timedelta(hours=6): [Action.LATE],
        dt.timedelta(hours=6, seconds=1): [Action.MISSED],
        dt.timedelta(days=40): [Action.MISSED],
    }
    for offset, expected in cases.items():
        decisions = decide(project.config, [occ], {}, set(), occ.instant + offset)
        assert [d.action for d in decisions] == expected, offset
    late = decide(project.config, [occ], {}, set(), occ.instant + dt.timedelta(minutes=30))[0]
    assert late.note and "30 min late" in late.note and "catch-up window of 6h" in late.note


def test_claimed_cancelled_or_missed_occurrences_are_left_alone(
    make_project: ProjectFactory,
) -> None:
    project = config_for(make_project)
    occ = one(project)
    now = occ.instant + dt.timedelta(minutes=1)
    for s in ("firing", "done", "cancelled", "missed"):
        row = OccurrenceRow(
            occ.id, "may-day", "statement", occ.instant, s, False, None, None, now, None, None, now
        )
        assert decide(project.config, [occ], {occ.id: row}, set(), now) == []
    # A `firing` row nobody has touched for a while was interrupted: resume it.
    stuck = OccurrenceRow(
        occ.id,
        "may-day",
        "statement",
        occ.instant,
        "firing",
        False,
        None,
        None,
        occ.instant,
        None,
        None,
        occ.instant,
    )
    later = occ.instant + dt.timedelta(minutes=20)
    assert [d.action for d in decide(project.config, [occ], {occ.id: stuck}, set(), later)] == [
        Action.RESUME
    ]


def test_paused_campaigns_wait(make_project: ProjectFactory) -> None:
    project = config_for(make_project)
    occ = one(project)
    decisions = decide(project.config, [occ], {}, {"may-day"}, occ.instant)
    assert [d.action for d in decisions] == [Action.WAIT]


def test_catch_up_window_across_the_spring_forward_gap(make_project: ProjectFactory) -> None:
    # 02:30 on 8 March 2026 does not exist in New York: it fires at 03:30 EDT = 07:30 UTC.
    project = config_for(
        make_project, date='"03-08"', time='"02:30"', tz="America/New_York", catch_up="1h"
    )
    occ = calendar.occurrence(project.config, "may-day/2026/statement")
    assert occ.instant == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    # The window is measured in real elapsed time, not on the wall clock that jumped.
    assert (
        decide(project.config, [occ], {}, set(), occ.instant + dt.timedelta(minutes=59))[0].action
        is Action.LATE
    )
    assert (
        decide(project.config, [occ], {}, set(), occ.instant + dt.timedelta(minutes=61))[0].action
        is Action.MISSED
    )


def test_fall_back_fold_fires_once_at_the_first_instant(make_project: ProjectFactory) -> None:
    project = config_for(make_project, date='"11-01"', time='"01:30"', tz="America/New_York")
    occ = calendar.occurrence(project.config, "may-day/2026/statement")
    first = dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert occ.instant == first
    # An hour later the wall clock reads 01:30 again (EST): nothing fires a second time.
    window = calendar.expand(
        project.config, first - dt.timedelta(hours=2), first + dt.timedelta(hours=2)
    )
    assert [o.id for o in window] == [occ.id]


def test_a_restart_fires_late_inside_the_window_and_records_missed_outside(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    """The clock's sweep with an explicit time: what was due while nothing ran."""
    text = MINIMAL.replace("channels: [email, mastodon]", "channels: [email]").replace(
        'date: "05-01"', 'date: "05-01"\n    catch_up: 2h'
    )
    text += (
        '  assembly:\n    name: Assembly\n    date: "04-30"\n    time: "09:00"\n'
        "    statement: may-day\n    audience: [members]\n    catch_up: 2h\n"
        "    steps:\n      notice:\n        channels: [email]\n        template: statement\n"
    )
    project = load_project(make_project(text, members_csv="email\n"))
    add_subscribers(store_engine, 3)
    may_day = calendar.occurrence(project.config, "may-day/2027/statement")  # 07:00 UTC
    assembly = calendar.occurrence(project.config, "assembly/2027/notice")  # a day earlier
    # The clock was last alive two days before May Day, then the machine was off.
    state.mark_seen(store_engine, may_day.instant - dt.timedelta(days=2))
    restart = may_day.instant + dt.timedelta(minutes=45)
    clock = Clock(project, store_engine, now=lambda: restart)
    clock.tick()
    clock.ctx.close()
    rows = state.known(store_engine, [may_day.id, assembly.id])
    assert rows[may_day.id].state == "done" and rows[may_day.id].late
    assert "45 min late" in (rows[may_day.id].note or "")
    assert rows[assembly.id].state == "missed"
    assert "outside the catch-up window of 2h" in (rows[assembly.id].note or "")
    assert clock.fired == [may_day.id]
    # Run the sweep again: nothing fires twice, the missed one stays missed.
    again = Clock(project, store_engine, now=lambda: restart + dt.timedelta(minutes=1))
    again.tick()
    again.ctx.close()
    assert again.fired == []
    assert state.last_seen(store_engine) == restart + dt.timedelta(minutes=1)


def test_a_resumed_occurrence_is_not_resumed_again_at_the_next_sweep(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from dataclasses import replace

    from scheduler.delivery import ledger

    project = config_for(make_project)
    occ = one(project)
    _, row = ledger.claim_occurrence(store_engine, occ)
    sweep = occ.instant + dt.timedelta(minutes=20)
    stalled = replace(row, updated_at=sweep - dt.timedelta(minutes=10))
    assert [d.action for d in decide(project.config, [occ], {occ.id: stalled}, set(), sweep)] == [
        Action.RESUME
    ]
    # The clock touches the occurrence when it resumes it: the next sweeps leave it alone.
    before = dt.datetime.now(UTC)
    ledger.touch_occurrence(store_engine, occ.id)
    touched = state.known(store_engine, [occ.id])[occ.id]
    assert touched.updated_at >= before - dt.timedelta(seconds=1)
    resumed = replace(row, updated_at=sweep)
    next_sweep = sweep + dt.timedelta(seconds=5)
    assert decide(project.config, [occ], {occ.id: resumed}, set(), next_sweep) == []
