"""What makes the first message leave soon after the instant, without giving up exactly-once:
a list synced ahead of time is not read again at the instant unless its file changed, and a
fan-out cut short by a crash is completed at the resume, each recipient once."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import ProjectFactory
from delivery_helpers import EMAIL_ONLY, add_subscribers, context, email_project, may_day, outbox
from sqlalchemy.engine import Engine

from scheduler.audience.csvfile import SubscriberRow
from scheduler.clock.daemon import SYNC_AHEAD, SYNC_PREFIX, Clock
from scheduler.config.project import load_project
from scheduler.delivery import channel_state, ledger
from scheduler.delivery import fire as fire_module
from scheduler.delivery.batch import send_batch
from scheduler.delivery.fire import fire, sync_sources
from scheduler.store import list_counts, subscriber
from scheduler.store.subscribers import import_rows

MEMBERS = "email,name\nana@example.org,Ana\nbo@example.org,Bo\n"


def test_an_unchanged_list_file_is_not_read_again(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    path = make_project(EMAIL_ONLY, members_csv=MEMBERS)
    project = load_project(path)
    ctx = context(project, store_engine)
    try:
        assert sync_sources(ctx, ["members"]) == {"members": 2}
        # Changed in the store since (as by hand): an unchanged file does not undo it...
        row = SubscriberRow(email="ana@example.org", name="Ana by hand", language="en")
        import_rows(store_engine, "members", [row], source="hand")
        assert sync_sources(ctx, ["members"]) == {"members": 2}
        assert (subscriber(store_engine, "ana@example.org") or {})["name"] == "Ana by hand"
        # ...a changed file is read again, whatever its timestamp says.
        (path.parent / "members.csv").write_text(MEMBERS + "cy@example.org,Cy\n")
        assert sync_sources(ctx, ["members"]) == {"members": 3}
        assert (subscriber(store_engine, "ana@example.org") or {})["name"] == "Ana"
        assert list_counts(store_engine, "members")["members"]["active"] == 3
    finally:
        ctx.close()


def test_the_clock_syncs_an_occurrences_lists_ahead_of_its_instant(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = load_project(make_project(EMAIL_ONLY, members_csv=MEMBERS))
    now = dt.datetime(2030, 4, 1, tzinfo=dt.UTC)
    clock = Clock(project, store_engine, now=lambda: now)
    try:
        clock.rebuild()
        occ = clock.scheduled[0]
        job = clock.scheduler.get_job(SYNC_PREFIX + occ.id)
        assert job is not None
        assert job.trigger.run_date == occ.instant - SYNC_AHEAD
        assert list_counts(store_engine).get("members", {}).get("active", 0) == 0
        clock.sync_ahead(occ.id)
        assert list_counts(store_engine, "members")["members"]["active"] == 2
        assert "members" in clock.ctx.synced_lists  # the fire at the instant skips it
    finally:
        clock.ctx.close()


def test_a_fan_out_cut_short_is_completed_at_the_resume_each_recipient_once(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = email_project(make_project, batch_size=7)
    emails = add_subscribers(store_engine, 30)
    ctx = context(project, store_engine)
    occ = may_day(project)
    try:
        # A crash after the first batch was fanned out and sent, before the rest was added.
        ledger.claim_occurrence(store_engine, occ)
        assert ledger.fan_out_email(store_engine, occ.id, "email", ["members"], limit=7) == 7
        lo, hi = ledger.batch_ranges(ledger.id_range(store_engine, occ.id, "email"), 7)[0]
        assert send_batch(ctx, occ.id, "email", lo, hi).sent == 7
        report = fire(ctx, occ)
    finally:
        ctx.close()
    assert (report.new_rows, report.already_final, report.result.sent) == (23, 7, 23)
    assert report.state == "done"
    sent = sorted(
        f.read_text(errors="replace").split("\nTo: ")[1].split("\n")[0] for f in outbox(project)
    )
    assert len(sent) == 30
    assert sorted(s.split("<")[1].rstrip(">\r") for s in sent) == sorted(emails)


def test_with_a_queue_each_chunk_of_the_fan_out_is_enqueued_as_it_commits(
    make_project: ProjectFactory, store_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a queue (Celery), workers start on the first chunks while the rest is added:
    complete batches go out during the fan-out, each range once, and every recipient is
    in exactly one range sent (truncated ones wait for the end)."""
    monkeypatch.setattr(fire_module, "FAN_OUT_CHUNK_BATCHES", 3)
    project = email_project(make_project, batch_size=4)
    emails = add_subscribers(store_engine, 53)
    ctx = context(project, store_engine)
    occ = may_day(project)
    enqueued: list[tuple[int, int, bool]] = []  # lo, hi, while the fan-out was running

    def enqueue(occurrence_id: str, channel: str, lo: int, hi: int) -> None:
        chans = channel_state.rows(store_engine, [occurrence_id])[occurrence_id]
        enqueued.append((lo, hi, chans[channel].fanned_out_at is None))

    try:
        report = fire(ctx, occ, dispatch=enqueue)
        assert report.new_rows == 53
        ranges = [(lo, hi) for lo, hi, _ in enqueued]
        assert len(ranges) == len(set(ranges))  # each range enqueued once
        bounds = ledger.id_range(store_engine, occ.id, "email")
        assert sorted(ranges) == ledger.batch_ranges(bounds, 4)  # the whole grid, no more
        # 1 + 3 + 3 + ... complete batches of 4 before the fan-out ended: the first one, and
        # those of each chunk of 12 rows but the one it ends in.
        during = [r for r in enqueued if r[2]]
        assert len(during) >= 10
        assert ranges[: len(during)] == sorted(ranges[: len(during)])
        # A worker running what was enqueued sends each recipient once.
        sent = sum(send_batch(ctx, occ.id, "email", lo, hi).sent for lo, hi in ranges)
        assert sent == 53
    finally:
        ctx.close()
    to = [f.read_text(errors="replace").split("\nTo: ")[1].split("\n")[0] for f in outbox(project)]
    assert sorted(t.split("<")[1].rstrip(">\r") for t in to) == sorted(emails)
