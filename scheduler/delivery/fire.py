"""Fire one occurrence: claim it, sync and snapshot the audience, split into batches, send.

`fire` is the one entry point for `scheduler send`, the embedded daemon and the Celery
`fire_occurrence` task; only `dispatch` differs (call `send_batch` here, or enqueue it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from scheduler.audience.csvfile import read_csv
from scheduler.calendar import Occurrence
from scheduler.channels import get_channel_class
from scheduler.delivery import ledger
from scheduler.delivery.batch import BatchReport, Progress, send_batch
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.ledger import Claim
from scheduler.delivery.senders import Helpers
from scheduler.store import subscribers

log = logging.getLogger(__name__)

Dispatch = Callable[[str, str, int, int], None]
HELPERS_FROM_BATCHES = 4


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
    interrupted: bool = False  # the process is stopping: the rest is left pending


def sync_sources(ctx: DeliveryContext, list_names: Sequence[str]) -> dict[str, int]:
    """Import each list's CSV `source` (upsert; never resurrects an unsubscribe)."""
    org = ctx.config.organization
    synced: dict[str, int] = {}
    for name in list_names:
        mlist = ctx.config.lists.get(name)
        if mlist is None or mlist.source is None:
            continue
        path = ctx.project.base_dir / mlist.source
        result = read_csv(path, languages=org.languages, default_language=org.default_language)
        report = subscribers.import_rows(ctx.engine, name, result.rows, source=mlist.source)
        synced[name] = report.total
    return synced


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
    """`processes` > 1: send with that many processes in all (this one and helpers, see
    `scheduler.delivery.senders`) when the occurrence has more than one batch."""
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
    claim, row = ledger.claim_occurrence(
        engine, occ, late=late, note=note, revive_missed=revive_missed
    )
    report = FireReport(occurrence_id=occ.id, claim=claim, state=row.state)
    if claim is Claim.REFUSED:
        log.warning("occurrence %s is %s: nothing sent", occ.id, row.state)
        return report
    campaign = ctx.config.campaigns[occ.campaign_id]
    wanted = list(channels or occ.channels)
    before = ledger.counts(engine, occ.id).get(occ.id, {})
    report.already_final = sum(
        n
        for by_state in before.values()
        for state, n in by_state.items()
        if state in ("sent", "failed", "skipped")
    )
    email_channels = [
        c for c in wanted if get_channel_class(ctx.config.channels[c].type).kind == "email"
    ]
    if email_channels and row.fanned_out_at is None:
        report.synced = sync_sources(ctx, campaign.audience)
    for channel in wanted:
        if channel in before:
            continue  # its fan-out ran (one statement, so all or nothing): never add late joiners
        if channel in email_channels:
            report.new_rows += ledger.fan_out_email(engine, occ.id, channel, campaign.audience)
        else:
            ledger.add_post_delivery(engine, occ.id, channel)
            report.new_rows += 1
    report.total = ledger.mark_fanned_out(engine, occ.id)
    if report.new_rows > 1000:
        ledger.refresh_statistics(engine)
    if on_total is not None:
        on_total(ledger.remaining(engine, occ.id))
    log.info(
        "occurrence %s: %s, %d deliveries (%d new)",
        occ.id,
        claim.value,
        report.total,
        report.new_rows,
    )

    def run_here(occurrence_id: str, channel: str, lo: int, hi: int) -> None:
        def batch_progress(batch: BatchReport) -> None:
            if progress:
                combined = BatchReport()
                combined.add(report.result)
                combined.add(batch)
                progress(combined)

        report.result.add(send_batch(ctx, occurrence_id, channel, lo, hi, progress=batch_progress))

    send = dispatch or run_here
    size = ctx.config.settings.batch_size
    ranges = [
        (channel, lo, hi)
        for channel in wanted
        for lo, hi in ledger.batch_ranges(ledger.id_range(engine, occ.id, channel), size)
    ]
    # Helpers only for a large send: starting a process costs more than a few batches.
    helpers = (
        Helpers(ctx, processes - 1)
        if dispatch is None and processes > 1 and len(ranges) > HELPERS_FROM_BATCHES
        else None
    )
    if helpers is not None:
        helpers.start()
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

    try:
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
    finally:
        if helpers is not None:
            helpers.close()
    ledger.finish_if_complete(engine, occ.id)
    if dispatch is None:
        report.held, report.held_until = ledger.held(engine, occ.id)
    final = ledger.get_occurrence(engine, occ.id)
    report.state = final.state if final else report.state
    return report
