"""Send failed deliveries again, and wait out deliveries a stopped sender still holds.

Plain functions: `scheduler retry`, `scheduler send` and the dashboard call them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scheduler import calendar
from scheduler.delivery import ledger
from scheduler.delivery.batch import Progress
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.fire import Dispatch, FireReport, fire
from scheduler.errors import UnknownCampaignError

log = logging.getLogger(__name__)


@dataclass
class RetryReport:
    occurrence_id: str
    requeued: dict[str, int] = field(default_factory=dict)  # channel -> failed put back
    left_alone: dict[str, int] = field(default_factory=dict)  # bounced / skipped -> count
    fired: FireReport | None = None  # None when there was nothing to retry

    @property
    def total(self) -> int:
        return sum(self.requeued.values())


def retry_failed(
    ctx: DeliveryContext,
    occurrence_id: str,
    *,
    channels: Sequence[str] | None = None,
    dispatch: Dispatch | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RetryReport:
    """Put the occurrence's failed deliveries (never bounced, skipped or sent ones) back to
    pending and send them, here or through `dispatch`. Raises UnknownCampaignError for an
    occurrence the store has never fired."""
    engine = ctx.engine
    row = ledger.get_occurrence(engine, occurrence_id)
    if row is None:
        raise UnknownCampaignError(f"occurrence {occurrence_id!r} has not been sent")
    if row.state == "cancelled":
        raise UnknownCampaignError(f"occurrence {occurrence_id!r} was cancelled")
    occ = calendar.occurrence(ctx.config, occurrence_id)
    report = RetryReport(occurrence_id)
    report.requeued = ledger.requeue_failed(engine, occurrence_id, channels)
    report.left_alone = ledger.not_retryable(engine, occurrence_id, channels)
    if not report.requeued:
        return report
    log.info(
        "event=retry occurrence=%s requeued=%d channels=%s",
        occurrence_id,
        report.total,
        ",".join(sorted(report.requeued)),
    )
    report.fired = fire(
        ctx,
        occ,
        channels=sorted(report.requeued),
        dispatch=dispatch,
        progress=progress,
        on_total=on_total,
    )
    return report


def wait_for_held(
    report: FireReport,
    again: Callable[[], FireReport],
    *,
    on_wait: Callable[[int, dt.datetime | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> FireReport:
    """While deliveries are held by another sender (or were left by one that died), wait
    for their lease to end and send again (`again`), so the remainder a crash left behind
    goes out in this run; returns the last report, with the results of every run added."""
    total = report
    while report.held and not report.result.cancelled and not report.interrupted:
        until = report.held_until
        if on_wait is not None:
            on_wait(report.held, until)
        wait = 1.0 if until is None else max(0.5, (until - now()).total_seconds() + 0.5)
        sleep(wait)
        report = again()
        total.result.add(report.result)
        total.held, total.held_until = report.held, report.held_until
        total.deferred = report.deferred
        total.state = report.state
        total.interrupted = report.interrupted
    return total
