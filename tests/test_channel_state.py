"""Per-(occurrence, channel) state in the store and in the clock's rules, with explicit
clocks: the channels still planned after a hand send fire at the instant, late inside the
window, or are recorded missed; the occurrence is done when every channel is final."""

from __future__ import annotations

import datetime as dt

from conftest import MINIMAL, ProjectFactory
from delivery_helpers import add_subscribers, context
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.clock.policy import Action, decide
from scheduler.config.project import load_project
from scheduler.delivery import channel_state, ledger
from scheduler.delivery import clock_state as state
from scheduler.delivery.fire import fire, fire_still_planned


def project_with_two_channels(make_project: ProjectFactory):  # type: ignore[no-untyped-def]
    return load_project(make_project(MINIMAL, members_csv="email\n"))


def test_a_hand_send_of_one_channel_leaves_the_others_planned(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = project_with_two_channels(make_project)
    occ = calendar.occurrence(project.config, "may-day/2030/statement")
    add_subscribers(store_engine, 3)
    report = fire(context(project, store_engine), occ, channels=["email"])
    assert report.state == "firing" and report.still_planned == ["mastodon"]
    assert [(p.channel, p.state, p.sent) for p in report.progress] == [
        ("email", "done", 3),
        ("mastodon", "planned", 0),
    ]
    # The same hand send again: nothing new, mastodon still planned.
    again = fire(context(project, store_engine), occ, channels=["email"])
    assert again.result.sent == 0 and again.still_planned == ["mastodon"]
    # The clock's rules see the planned channel at the instant, not before.
    known = state.known(store_engine, [occ.id])
    rows = state.channels_of(store_engine, [occ.id])
    config = project.config
    assert (
        decide(config, [occ], known, set(), occ.instant - dt.timedelta(seconds=1), channels=rows)
        == []
    )
    (on_time,) = decide(config, [occ], known, set(), occ.instant, channels=rows)
    assert on_time.action is Action.FIRE and on_time.channels == ("mastodon",)
    (late,) = decide(
        config, [occ], known, set(), occ.instant + dt.timedelta(hours=1), channels=rows
    )
    assert late.action is Action.LATE and late.channels == ("mastodon",)
    assert late.note and "due 2030-05-01 09:00 +02:00" in late.note
    (waiting,) = decide(config, [occ], known, {"may-day"}, occ.instant, channels=rows)
    assert waiting.action is Action.WAIT
    (missed,) = decide(
        config, [occ], known, set(), occ.instant + dt.timedelta(hours=7), channels=rows
    )
    assert missed.action is Action.MISSED and missed.channels == ("mastodon",)
    # Missed outside the window: the email went out, so the occurrence is done.
    assert state.record_missed(store_engine, occ, missed.note or "", list(missed.channels))
    row = ledger.get_occurrence(store_engine, occ.id)
    assert row is not None and row.state == "done"
    progress = channel_state.occurrence_progress(store_engine, occ.id, occ.channels)
    assert [(p.channel, p.state) for p in progress] == [("email", "done"), ("mastodon", "missed")]
    assert fire_still_planned(context(project, store_engine), occ).result.sent == 0


def test_a_missed_channel_can_be_sent_by_hand_and_cancel_settles_every_channel(
    make_project: ProjectFactory, store_engine: Engine, monkeypatch: object
) -> None:
    project = project_with_two_channels(make_project)
    occ = calendar.occurrence(project.config, "may-day/2031/statement")
    assert state.record_missed(store_engine, occ, "nothing ran")
    rows = channel_state.rows(store_engine, [occ.id])[occ.id]
    assert {c: r.state for c, r in rows.items()} == {"email": "missed", "mastodon": "missed"}
    add_subscribers(store_engine, 2)
    # The clock never revives a missed occurrence; an organizer does, one channel at a time.
    assert fire(context(project, store_engine), occ, channels=["email"]).claim.value == "refused"
    sent = fire(context(project, store_engine), occ, channels=["email"], revive_missed=True)
    assert sent.result.sent == 2 and sent.state == "done"  # mastodon stays missed

    other = calendar.occurrence(project.config, "may-day/2032/statement")
    fire(context(project, store_engine), other, channels=["email"])
    assert state.cancel(store_engine, other)
    states = {c: r.state for c, r in channel_state.rows(store_engine, [other.id])[other.id].items()}
    assert states == {"email": "done", "mastodon": "cancelled"}
