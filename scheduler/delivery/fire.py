"""Fire one occurrence: claim it, sync and snapshot the audience, split into batches, send.

`fire` is the one entry point for `scheduler send`, the embedded daemon and the Celery
`fire_occurrence` task; only `dispatch` differs (call `send_batch` here, or enqueue it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler import waves
from scheduler.audience.csvfile import iter_csv
from scheduler.calendar import Occurrence
from scheduler.channels import get_channel_class
from scheduler.delivery import alerts, channel_state, ledger
from scheduler.delivery.addresses import DeliverableRows
from scheduler.delivery.batch import BatchReport, Progress, send_batch
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.ledger import Claim
from scheduler.delivery.readiness import not_ready_reason, unset_variables
from scheduler.delivery.senders import Helpers
from scheduler.store import problems, subscribers
from scheduler.store.schema import ChannelState

log = logging.getLogger(__name__)

Dispatch = Callable[[str, str, int, int], None]
HELPERS_FROM_BATCHES = 4
# Batches of rows a fan-out adds per transaction: small enough that workers start on the
# first ones soon, large enough that the per-statement costs vanish.
FAN_OUT_CHUNK_BATCHES = 20
ANALYZE_GROWTH = 8  # a chunked fan-out refreshes deliveries' statistics each time it grows so


@dataclass
class FireReport:
    occurrence_id: str
    claim: Claim
    state: str
    total: int = 0  # delivery rows of the occurrence
    new_rows: int = 0  # rows this call added
    batches: int = 0
    already_final: int = 0  # sent, failed or skipped before this call
    result: BatchReport = field(default_factory=BatchReport)
    synced: dict[str, int] = field(default_factory=dict)  # list -> rows read from its source
    held: int = 0  # deliveries another sender holds (or a crashed one left) after this call
    held_until: dt.datetime | None = None
    # channel -> deliveries waiting after a temporary failure of their own (deferral.py)
    deferred: dict[str, ledger.DeferredSummary] = field(default_factory=dict)
    interrupted: bool = False  # the process is stopping: the rest is left pending
    channels: list[str] = field(default_factory=list)  # the channels this call worked on
    skipped_waves: int = 0  # deliveries of waves due longer ago than the catch-up window
    # Every channel of the step after this call: sent, failed, still planned.
    progress: list[channel_state.ChannelProgress] = field(default_factory=list)

    @property
    def still_planned(self) -> list[str]:
        """Channels of the step nobody has fired yet: the clock sends them at the instant."""
        return [p.channel for p in self.progress if p.still_planned]


def sync_sources(ctx: DeliveryContext, list_names: Sequence[str]) -> dict[str, int]:
    """Import each list's CSV `source` (upsert; never resurrects an unsubscribe).

    Bad rows are left out, logged in one line and kept in the store for `status`. A file
    this process synced already and that has not changed since is not read again."""
    synced: dict[str, int] = {}
    for name in list_names:
        mlist = ctx.config.lists.get(name)
        if mlist is None or mlist.source is None:
            continue
        path = ctx.project.base_dir / mlist.source
        with ctx.sync_lock:
            seen = _fingerprint(path)
            known = ctx.synced_lists.get(name)
            if seen is not None and known is not None and known[0] == seen:
                synced[name] = known[1]
                continue
            synced[name] = _sync_one(ctx, name, mlist.source, path)
            if seen is not None:
                ctx.synced_lists[name] = (seen, synced[name])
    return synced


def _due_plan(ctx: DeliveryContext, occ: Occurrence, lists: Sequence[str]) -> ledger.DuePlan:
    """Each audience zone's instant for a `deliver: local` step (scheduler/waves.py)."""
    zones = ledger.audience_zones(ctx.engine, lists)
    return ledger.DuePlan(waves.due_by_zone(occ, zones), occ.instant, occ.timezone)


def _skip_overdue_waves(ctx: DeliveryContext, occ: Occurrence, catch_up: str) -> int:
    """Each wave has the catch-up window: one due longer ago is recorded skipped, said so."""
    window = ctx.config.campaigns[occ.campaign_id].catch_up_window
    now = dt.datetime.now(dt.UTC)
    skipped = ledger.skip_overdue(
        ctx.engine,
        occ.id,
        due_before=now - window,
        note=f"missed: its wave was due more than the catch-up window ({catch_up}) ago",
    )
    if skipped:
        log.warning(
            "event=wave_missed occurrence=%s deliveries=%d catch_up=%s", occ.id, skipped, catch_up
        )
    return skipped


def _fingerprint(path: Path) -> tuple[str, int, str] | None:
    """What the file holds, by hash (a few ms for 100,000 rows; reading them takes seconds):
    a timestamp could miss a rewrite within its granularity."""
    try:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "blake2b")
    except OSError:
        return None  # reading it says what is wrong
    return str(path), path.stat().st_size, digest.hexdigest()


def _sync_one(ctx: DeliveryContext, name: str, source: str, path: Path) -> int:
    voice = ctx.config.list_voice(name)
    # Read and merged at once: each batch merges on the server while the next is read.
    rows = DeliverableRows(
        ctx.project,
        iter_csv(path, languages=list(voice.languages), default_language=voice.default_language),
    )
    report = subscribers.import_rows(ctx.engine, name, rows, source=source)
    if rows.problems:
        messages = [d.format() for d in rows.diagnostics(source)]
        alerts.bad_rows(ctx, name, source, messages)
    shown = ctx.project.relative(path)
    problems.record_list(ctx.engine, name, shown, rows.diagnostics(shown))
    if rows.problems:
        lines = sorted({p.row for p in rows.problems})
        log.warning(
            "event=list_rows_left_out list=%s file=%s count=%d lines=%s%s",
            name,
            shown,
            len(rows.problems),
            ",".join(str(n) for n in lines[:5]),
            ",..." if len(lines) > 5 else "",
        )
    return report.total


def fire(
    ctx: DeliveryContext,
    occ: Occurrence,
    *,
    channels: Sequence[str] | None = None,
    dispatch: Dispatch | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    late: bool = False,
    note: str | None = None,
    revive_missed: bool = False,
    processes: int = 1,
) -> FireReport:
    """Fire `channels` of the occurrence (default: every channel of its step); the others
    stay `planned` for the clock, or another call, to fire. Channels already fired are
    resumed: only what is not final is sent.

    `processes` > 1: send with that many processes in all (this one and helpers, see
    `scheduler.delivery.senders`) when the occurrence has more than a few batches."""
    with ctx.in_use():
        return _fire(
            ctx,
            occ,
            channels=channels,
            dispatch=dispatch,
            progress=progress,
            on_total=on_total,
            late=late,
            note=note,
            revive_missed=revive_missed,
            processes=processes,
        )


def fire_still_planned(ctx: DeliveryContext, occ: Occurrence, **options: Any) -> FireReport:
    """Fire only the channels of the step nobody has fired yet (after a hand send of some
    of them): what the clock does at the instant. Nothing planned, nothing is claimed."""
    known = channel_state.rows(ctx.engine, [occ.id]).get(occ.id, {})
    planned = channel_state.still_planned(occ.channels, known)
    if not planned:
        row = ledger.get_occurrence(ctx.engine, occ.id)
        report = FireReport(occ.id, Claim.RESUMED, row.state if row else "planned")
        report.progress = channel_state.occurrence_progress(ctx.engine, occ.id, occ.channels)
        return report
    return fire(ctx, occ, channels=planned, **options)


def _fire(
    ctx: DeliveryContext,
    occ: Occurrence,
    *,
    channels: Sequence[str] | None,
    dispatch: Dispatch | None,
    progress: Progress | None,
    on_total: Callable[[int], None] | None,
    late: bool,
    note: str | None,
    revive_missed: bool = False,
    processes: int = 1,
) -> FireReport:
    engine = ctx.engine
    wanted = list(channels or occ.channels)
    claim, row = ledger.claim_occurrence(
        engine, occ, channels=wanted, late=late, note=note, revive_missed=revive_missed
    )
    report = FireReport(occurrence_id=occ.id, claim=claim, state=row.state)
    if claim is Claim.REFUSED:
        log.warning("occurrence %s is %s: nothing sent", occ.id, row.state)
        return report
    campaign = ctx.config.campaigns[occ.campaign_id]
    chans = channel_state.rows(engine, [occ.id]).get(occ.id, {})
    # Only channels in hand: claimed now, or fired before and not finished (a resume).
    # Done, missed and cancelled ones are left alone; planned ones not asked for wait for
    # the clock.
    active = [c for c in wanted if c in chans and chans[c].state == ChannelState.FIRING]
    report.channels = active
    before = ledger.counts(engine, occ.id).get(occ.id, {})
    report.already_final = sum(
        n
        for channel, by_state in before.items()
        if channel in wanted
        for state, n in by_state.items()
        if state in ("sent", "failed", "skipped")
    )
    email_channels = [
        c for c in active if get_channel_class(ctx.config.channels[c].type).kind == "email"
    ]
    # Channels whose fan-out is not complete: never started, or cut short by a crash (its
    # rows are kept and the rest added, the audience then as it is at the resume).
    unfanned = [c for c in active if chans[c].fanned_out_at is None]
    size = ctx.config.settings.batch_size
    # Helper processes (started only for a large send: starting one costs more than a few
    # batches) take a second to start: for an audience sure to be large they start now,
    # while this process syncs, fans out and sends the first batch; else once the batches
    # are counted.
    helpers = Helpers(ctx, processes - 1) if dispatch is None and processes > 1 else None
    if (
        helpers is not None
        and email_channels
        and subscribers.more_active_than(
            engine, campaign.audience, HELPERS_FROM_BATCHES * size * len(email_channels)
        )
    ):
        helpers.start()
    try:
        return _fire_claimed(
            ctx,
            occ,
            report,
            active=active,
            email_channels=email_channels,
            unfanned=unfanned,
            dispatch=dispatch,
            progress=progress,
            on_total=on_total,
            processes=processes,
            helpers=helpers,
        )
    finally:
        if helpers is not None:
            helpers.close()


def _fan_out_in_chunks(
    ctx: DeliveryContext,
    occ: Occurrence,
    channel: str,
    send: Callable[[str, Sequence[tuple[int, int]]], None] | None,
    *,
    there: int = 0,
) -> int:
    """Add the channel's audience in ranges of subscriber ids `FAN_OUT_CHUNK_BATCHES`
    batches wide, each committed; after each, `send` the batches it completed. A batch is
    the slice [lo, hi) of the id grid that `ledger.batch_ranges` draws from the channel's
    first delivery id, and ids only grow: once a chunk's last id reaches past a slice's
    end, that slice is complete. The slice a chunk ends in is left for later. `there`: the
    rows the channel has already (its first batch, added before)."""
    size = ctx.config.settings.batch_size
    width = size * FAN_OUT_CHUNK_BATCHES
    audience = ctx.config.campaigns[occ.campaign_id].audience
    top = ledger.last_subscriber_id(ctx.engine)
    added, after, analyzed_at = 0, 0, 0

    def refresh_if_grown() -> None:
        # With statistics from before the fan-out, PostgreSQL believes deliveries empty and
        # plans a chunk's "already there?" test as a loop over the rows there, for each
        # subscriber (0.3 s of the first 5,000-member chunk against the first batch's 250
        # rows, measured; half a minute per chunk at 50,000 against all of them), and the
        # workers' claims of these batches likewise; with those of a list imported just
        # before (a sync at the instant), each batch's "still wanted?" check takes a quarter
        # of a second. So: every table once rows are there (after the first batch, before
        # the first chunk), then deliveries as it grows eightfold (a few times, each a sample).
        nonlocal analyzed_at
        if there + added > ANALYZE_GROWTH * analyzed_at:
            ledger.refresh_statistics(ctx.engine, ["deliveries"] if analyzed_at else None)
            analyzed_at = there + added

    refresh_if_grown()
    while True:
        upto = after + width if after + width < top else None  # the last: no upper bound
        chunk = ledger.fan_out_email_chunk(
            ctx.engine, occ.id, channel, audience, after=after, upto=upto
        )
        added += chunk.added
        refresh_if_grown()
        if send is not None and chunk.last_id is not None:
            bounds = ledger.id_range(ctx.engine, occ.id, channel)
            # A slice [lo, hi) is complete when it holds no id above the chunk's last.
            last = chunk.last_id
            send(channel, [(lo, hi) for lo, hi in ledger.batch_ranges(bounds, size) if hi <= last])
        if upto is None:
            return added
        after = upto


def _fire_claimed(
    ctx: DeliveryContext,
    occ: Occurrence,
    report: FireReport,
    *,
    active: list[str],
    email_channels: list[str],
    unfanned: list[str],
    dispatch: Dispatch | None,
    progress: Progress | None,
    on_total: Callable[[int], None] | None,
    processes: int,
    helpers: Helpers | None,
) -> FireReport:
    engine = ctx.engine
    campaign = ctx.config.campaigns[occ.campaign_id]
    size = ctx.config.settings.batch_size
    if any(c in email_channels for c in unfanned):
        report.synced = sync_sources(ctx, campaign.audience)
    due = _due_plan(ctx, occ, campaign.audience) if occ.deliver_local else None

    def run_here(occurrence_id: str, channel: str, lo: int, hi: int) -> None:
        def batch_progress(batch: BatchReport) -> None:
            if progress:
                combined = BatchReport()
                combined.add(report.result)
                combined.add(batch)
                progress(combined)

        report.result.add(send_batch(ctx, occurrence_id, channel, lo, hi, progress=batch_progress))

    send = dispatch or run_here
    # The first batch of each email channel is fanned out (committed) and sent before the
    # rest of the audience is added: the first message leaves without waiting for the rows
    # of 100,000 recipients. Its deliveries are claimed like any batch's, so a crash while
    # the rest is added loses nothing and sends nothing twice.
    early: set[tuple[str, int, int]] = set()  # batches sent (or enqueued) during the fan-out
    ready = {c for c in email_channels if not unset_variables(ctx.config, c)}

    def send_early(channel: str, batches: Sequence[tuple[int, int]]) -> None:
        # Cancellation is asked once for the batches a chunk completed, not for each: with
        # a queue, 200 batches were 200 queries (each worker asks again before sending).
        batches = [(lo, hi) for lo, hi in batches if (channel, lo, hi) not in early]
        if not batches or ctx.stopping or ledger.is_cancelled(engine, occ.id):
            return
        for lo, hi in batches:
            send(occ.id, channel, lo, hi)
            report.batches += 1
            early.add((channel, lo, hi))

    elsewhere: dict[Future[BatchReport], tuple[str, int, int]] = {}
    failed_helper = False

    def collect(wait: bool) -> None:
        nonlocal failed_helper
        for future in [f for f in elsewhere if wait or f.done()]:
            channel, lo, hi = elsewhere.pop(future)
            try:
                report.result.add(future.result())
            except Exception as e:  # a helper that cannot work: this process sends its batch
                log.warning("helper failed on %s %s [%d,%d): %r", occ.id, channel, lo, hi, e)
                failed_helper = True
                send(occ.id, channel, lo, hi)
            if progress:
                progress(report.result)

    def hand_to_helpers(channel: str, batches: Sequence[tuple[int, int]]) -> None:
        # Embedded, during the fan-out: the batches a chunk completed go to free helpers
        # (up to two each in hand), so they send while this process adds the rest; the
        # others are sent after the fan-out like any batch.
        collect(wait=False)
        if helpers is None or failed_helper or ctx.stopping:
            return
        batches = [(lo, hi) for lo, hi in batches if (channel, lo, hi) not in early]
        if not batches or not helpers.free() or ledger.is_cancelled(engine, occ.id):
            return
        for lo, hi in batches:
            if not helpers.free():
                return
            elsewhere[helpers.submit(occ.id, channel, lo, hi)] = (channel, lo, hi)
            report.batches += 1
            early.add((channel, lo, hi))

    # A local-time step's first rows are its earliest wave, not due now: no early batch.
    chunked = [c for c in unfanned if c in ready and not occ.deliver_local]
    first_rows: dict[str, int] = {}
    for channel in chunked:
        first_rows[channel] = ledger.fan_out_email_chunk(
            engine, occ.id, channel, campaign.audience, after=0, limit=size
        ).added  # the first `size`, wherever their ids are
        report.new_rows += first_rows[channel]
        first = ledger.batch_ranges(ledger.id_range(engine, occ.id, channel), size)[:1]
        if first:
            send_early(channel, first)
    for channel in active:
        if channel in unfanned:
            if channel in chunked:
                # The rest chunk by chunk; with a queue, each chunk's complete batches are
                # enqueued as it commits, so workers send while the rest is added.
                # Embedded, once the helpers run, they take them likewise.
                during = (
                    send_early
                    if dispatch is not None
                    else hand_to_helpers
                    if helpers is not None and helpers.started
                    else None
                )
                report.new_rows += _fan_out_in_chunks(
                    ctx, occ, channel, during, there=first_rows[channel]
                )
            elif channel in email_channels:
                # In one statement; run again (after a crash) it adds only who is not
                # there yet.
                report.new_rows += ledger.fan_out_email(
                    engine, occ.id, channel, campaign.audience, due=due
                )
            else:
                # A local-time step's posts go at the step's own zone time.
                post_due = occ.instant if occ.deliver_local else None
                ledger.add_post_delivery(engine, occ.id, channel, due_at=post_due)
                report.new_rows += 1
        channel_state.mark_fanned_out(engine, occ.id, channel)
    if occ.deliver_local:
        report.skipped_waves = _skip_overdue_waves(ctx, occ, campaign.catch_up)
    report.total = ledger.mark_fanned_out(engine, occ.id)
    if report.new_rows > 1000:
        # A chunked fan-out refreshed the other tables at its first chunk.
        ledger.refresh_statistics(engine, ["deliveries"] if chunked else None)
    for channel in active:
        missing = unset_variables(ctx.config, channel)
        if missing:
            # Nothing on this channel can go out: each delivery is recorded failed with the
            # reason, so status shows it and a retry sends it once the variable is set.
            reason = not_ready_reason(missing)
            failed = ledger.fail_pending(engine, occ.id, channel, reason)
            report.result.failed += failed
            if failed:
                report.result.reasons[reason] = report.result.reasons.get(reason, 0) + failed
            log.warning(
                "event=channel_not_ready occurrence=%s channel=%s reason=%r failed=%d",
                occ.id,
                channel,
                reason,
                failed,
            )
    if on_total is not None:
        on_total(ledger.remaining(engine, occ.id))
    log.info(
        "occurrence %s: %s, %d deliveries (%d new) on %s",
        occ.id,
        report.claim.value,
        report.total,
        report.new_rows,
        ", ".join(active) or "no channel",
    )

    ranges = [
        (channel, lo, hi)
        for channel in active
        for lo, hi in ledger.batch_ranges(ledger.id_range(engine, occ.id, channel), size)
        if (channel, lo, hi) not in early
    ]
    if helpers is not None and len(ranges) > HELPERS_FROM_BATCHES:
        helpers.start()  # unless it started before the fan-out
    if helpers is not None and not helpers.started:
        helpers = None  # a small send: this process sends every batch
    for channel, lo, hi in ranges:
        if ledger.is_cancelled(engine, occ.id):
            report.result.cancelled = True
            break
        if ctx.stopping:
            report.interrupted = True
            break
        if helpers is not None and not failed_helper and helpers.free():
            elsewhere[helpers.submit(occ.id, channel, lo, hi)] = (channel, lo, hi)
        else:
            send(occ.id, channel, lo, hi)
        report.batches += 1
        collect(wait=False)
    collect(wait=True)  # a helper finishes the batch in hand, also when stopping
    ledger.finish_if_complete(engine, occ.id)
    if dispatch is None:
        report.held, report.held_until = ledger.held(engine, occ.id)
    report.deferred = ledger.deferred(engine, [occ.id]).get(occ.id, {})
    final = ledger.get_occurrence(engine, occ.id)
    report.state = final.state if final else report.state
    report.progress = channel_state.occurrence_progress(engine, occ.id, occ.channels)
    return report
