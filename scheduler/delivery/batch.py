"""Send one batch of deliveries: the plain function both the embedded runner and the Celery
task call. Run twice, or after a crash, it sends only what is not already sent."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from scheduler import calendar
from scheduler.audience.address import wire_address
from scheduler.channels import get_channel_class
from scheduler.delivery import deferral, ledger
from scheduler.delivery.breaker import Breaker
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.deferral import Deferral
from scheduler.delivery.ledger import ClaimedDelivery, Result
from scheduler.delivery.posting import post_delivery
from scheduler.delivery.reasons import reason_key
from scheduler.mail.envelope import Outcome, Outgoing
from scheduler.store.schema import DeliveryState, utcnow

log = logging.getLogger(__name__)

# Outcomes are written to the ledger at least this often, so a crash loses (and so may
# repeat) only a handful of messages, each with the same Message-ID.
FLUSH_EVERY = 50
FLUSH_SECONDS = 0.2


@dataclass
class BatchReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    deferred: int = 0  # handed back to the ledger after a temporary failure, tried later
    waited: int = 0  # times a batch waited for an unreachable server
    cancelled: bool = False
    reasons: dict[str, int] = field(default_factory=dict)
    # Deliveries of this range that another sender holds; when its lease ends they may be
    # claimed again (if it died) — the caller should come back then.
    held_until: dt.datetime | None = None

    def add(self, other: BatchReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        self.retried += other.retried
        self.deferred += other.deferred
        self.waited += other.waited
        self.cancelled = self.cancelled or other.cancelled
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v


Progress = Callable[[BatchReport], None]


def send_batch(
    ctx: DeliveryContext,
    occurrence_id: str,
    channel: str,
    lo: int,
    hi: int,
    *,
    progress: Progress | None = None,
) -> BatchReport:
    report = BatchReport()
    if ledger.is_cancelled(ctx.engine, occurrence_id):
        report.cancelled = True
        return report
    claimed = ledger.claim_batch(ctx.engine, occurrence_id, channel, lo, hi, lease=ctx.lease)
    if not claimed:
        report.held_until = ledger.held_in_range(ctx.engine, occurrence_id, channel, lo, hi)
        ledger.finish_if_complete(ctx.engine, occurrence_id)
        return report
    occ = calendar.occurrence(ctx.config, occurrence_id)
    kind = get_channel_class(ctx.config.channels[channel].type).kind
    if kind == "email":
        _send_email(ctx, occ, channel, claimed, report, progress)
    else:
        _send_posts(ctx, occ, channel, claimed, report)
        if progress:
            progress(report)
    ledger.finish_if_complete(ctx.engine, occurrence_id)
    log.info(
        "batch %s %s [%d,%d): sent=%d failed=%d skipped=%d retried=%d deferred=%d",
        occurrence_id,
        channel,
        lo,
        hi,
        report.sent,
        report.failed,
        report.skipped,
        report.retried,
        report.deferred,
    )
    return report


def _send_posts(
    ctx: DeliveryContext,
    occ: calendar.Occurrence,
    channel: str,
    claimed: list[ClaimedDelivery],
    report: BatchReport,
) -> None:
    # One delivery per (occurrence, channel): the post or thread (see delivery/posting.py).
    # Recorded one by one: each may have taken several platform calls.
    for d in claimed:
        outcome = post_delivery(ctx, occ, channel, d)
        if outcome.deferral is not None:
            ledger.defer(ctx.engine, [outcome.deferral])
            report.deferred += 1
        else:
            ledger.record(ctx.engine, [outcome.result])
        report.retried += outcome.retries
        if outcome.result.state == DeliveryState.SENT:
            report.sent += 1
        elif outcome.result.state == DeliveryState.FAILED:
            report.failed += 1
            reason = outcome.reason or "failed"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1


class _Recorder:
    """Buffers outcomes and writes them to the ledger every few messages, renewing the lease
    on what this sender still holds when a slow server makes the batch long."""

    def __init__(self, ctx: DeliveryContext, report: BatchReport, progress: Progress | None):
        self.ctx = ctx
        self.report = report
        self.progress = progress
        self.buffer: list[Result] = []
        self.held: list[int] = []
        # When each delivery first failed temporarily in this batch (before: in the ledger).
        self.first_failed: dict[int, dt.datetime] = {}
        self.last_flush = time.monotonic()
        self.renew_at = self.last_flush + ctx.lease.total_seconds() / 2

    def add(self, result: Result) -> None:
        self.buffer.append(result)
        now = time.monotonic()
        if len(self.buffer) >= FLUSH_EVERY or now - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        ledger.record(self.ctx.engine, self.buffer)
        self.buffer.clear()
        self.last_flush = time.monotonic()
        if self.last_flush > self.renew_at:
            ledger.renew_lease(self.ctx.engine, self.held, lease=self.ctx.lease)
            self.renew_at = self.last_flush + self.ctx.lease.total_seconds() / 2
        if self.progress:
            self.progress(self.report)


def _send_email(
    ctx: DeliveryContext,
    occ: calendar.Occurrence,
    channel: str,
    claimed: list[ClaimedDelivery],
    report: BatchReport,
    progress: Progress | None,
) -> None:
    engine = ctx.engine
    campaign = ctx.config.campaigns[occ.campaign_id]
    ids = [d.subscriber_id for d in claimed if d.subscriber_id is not None]
    wanted = ledger.still_wanted(engine, ids, campaign.audience)
    skipped = [d for d in claimed if d.subscriber_id not in wanted]
    if skipped:
        ledger.record(
            engine,
            [
                Result(
                    d.id, DeliveryState.SKIPPED, error="unsubscribed or suppressed before sending"
                )
                for d in skipped
            ],
        )
        report.skipped += len(skipped)
    todo = [d for d in claimed if d.subscriber_id in wanted]
    composer = ctx.composer(occ, channel)
    signer = ctx.dkim_signer(channel, composer.domain)
    pool = ctx.pool(channel)
    by_id = {d.id: d for d in todo}
    bounced: list[int] = []
    recorder = _Recorder(ctx, report, progress)
    # Composed once: a retry sends the very same bytes (same Message-ID, same Date).
    messages: dict[int, Outgoing] = {}
    for d in todo:
        stored_address, name = wanted[d.subscriber_id or 0]
        # An internationalized domain goes out in its IDNA (xn--) form, which every server
        # takes; only a non-ASCII part before '@' needs SMTPUTF8 (the transport checks).
        email_address = wire_address(stored_address)
        try:
            data = composer.compose(
                subscriber_id=d.subscriber_id or 0,
                email_address=email_address,
                name=name,
                language=d.language,
            )
        except ValueError as e:  # an address no message can be addressed to
            recorder.add(Result(d.id, DeliveryState.FAILED, error=f"cannot compose: {e}"))
            report.failed += 1
            key = reason_key(f"cannot compose: {e}")
            report.reasons[key] = report.reasons.get(key, 0) + 1
            continue
        if signer is not None:
            data = signer.sign(data)
        messages[d.id] = Outgoing(
            key=d.id, envelope_from=composer.envelope_from(d.id), recipient=email_address, data=data
        )
    todo = [d for d in todo if d.id in messages]
    attempt = max((d.attempts for d in todo), default=1)
    tries_here = 0  # waits for a 4xx spent in this batch (see deferral.py)
    breaker = ctx.breaker(channel)
    while todo:
        recorder.held = [d.id for d in todo]
        retry: list[tuple[ClaimedDelivery, str]] = []  # the message's own 4xx: counted
        waiting: dict[int, str] = {}  # the server was unreachable: not the message's doing
        seen: set[int] = set()
        tripped = threading.Event()

        def feed(
            batch: list[ClaimedDelivery] = todo, tripped: threading.Event = tripped
        ) -> Iterator[Outgoing]:
            # Once the server is found unreachable, stop handing it messages: the few in
            # flight come back, the rest wait with them for the server.
            for d in batch:
                if tripped.is_set():
                    return
                yield messages[d.id]

        for outcome in pool.send_all(feed()):
            delivery = by_id[outcome.key]
            seen.add(delivery.id)
            if outcome.status == "unavailable":
                waiting[delivery.id] = outcome.response
                tripped.set()
                continue
            message_id = composer.message_id(delivery.subscriber_id or 0)
            result = _classify(outcome, delivery, message_id, retry, bounced, report)
            if outcome.status == "sent":
                breaker.success()
            if result is not None:
                recorder.add(result)
        recorder.flush()
        if waiting:
            reason = next(iter(waiting.values()))
            unsent = [d for d in todo if d.id in waiting or d.id not in seen]
            breaker.failure(reason)
            done_waiting = _wait_for_server(ctx, occ, channel, breaker, unsent, reason, recorder)
            if done_waiting:
                report.waited += 1
                # The unreachable ones again, plus the 4xx ones (which do count an attempt).
                if retry:
                    ledger.count_attempt(engine, [d.id for d, _ in retry])
                    report.retried += len(retry)
                todo = unsent + [d for d, _ in retry]
                todo.sort(key=lambda d: d.id)
                continue
            _give_up_waiting(ctx, channel, breaker, unsent, reason, recorder, report)
            if not retry:
                break
        if not retry:
            break
        retry, delay = _retry_later(ctx, occ, channel, retry, attempt, tries_here, recorder, report)
        if not retry:
            break
        log.info(
            "%s %s: %d transient failures, retrying in %.1fs (attempt %d)",
            occ.id,
            channel,
            len(retry),
            delay,
            attempt + 1,
        )
        # Held through the wait: the lease must outlast it, or another sender takes over.
        ledger.renew_lease(
            engine, [d.id for d, _ in retry], lease=ctx.lease + dt.timedelta(seconds=delay)
        )
        ctx.sleep(delay)
        attempt += 1
        tries_here += 1
        todo = [d for d, _ in retry]
        report.retried += len(todo)
        ledger.count_attempt(engine, [d.id for d in todo])
        ledger.renew_lease(engine, [d.id for d in todo], lease=ctx.lease)
    if bounced:
        ledger.mark_bounced(engine, bounced)
    if progress:
        progress(report)


def _retry_later(
    ctx: DeliveryContext,
    occ: calendar.Occurrence,
    channel: str,
    retry: list[tuple[ClaimedDelivery, str]],
    attempt: int,
    tries_here: int,
    recorder: _Recorder,
    report: BatchReport,
) -> tuple[list[tuple[ClaimedDelivery, str]], float]:
    """After the messages' own temporary failures: fail those whose retry window is over
    (or whose occurrence was cancelled), hand the others to the ledger for a later attempt
    when the wait is long; returns the ones to try again here, and after how long."""
    now = utcnow()
    cancelled = ledger.is_cancelled(ctx.engine, occ.id)
    delay = ctx.retry.delay(attempt)
    window = ctx.retry_window(channel)
    failed: list[tuple[ClaimedDelivery, str]] = []
    later: list[Deferral] = []
    for d, response in retry:
        first = d.first_failed_at or recorder.first_failed.setdefault(d.id, now)
        wait = None if cancelled else deferral.next_wait(first, now, window, delay)
        if wait is None:
            failed.append((d, response))
        else:
            later.append(Deferral(d.id, now + dt.timedelta(seconds=wait), first, response))
    for d, response in failed:
        if cancelled:
            error = f"cancelled after a temporary failure: {response}"
        else:
            error = deferral.window_error(ctx.retry_window_text(channel), response)
        recorder.add(Result(d.id, DeliveryState.FAILED, response=response, error=error))
        key = reason_key(error)
        report.reasons[key] = report.reasons.get(key, 0) + 1
    report.failed += len(failed)
    recorder.flush()
    if not later:
        return [], 0.0
    soonest = min(d.retry_at for d in later)
    if not ctx.stopping and ctx.retry.holds(tries_here, delay):
        keep = {d.id for d in later}
        wait = max(0.0, (soonest - now).total_seconds())
        return [(d, r) for d, r in retry if d.id in keep], wait
    ledger.defer(ctx.engine, later)
    report.deferred += len(later)
    log.info(
        "event=deferred occurrence=%s channel=%s count=%d next_attempt=%s reason=%r",
        occ.id,
        channel,
        len(later),
        soonest.isoformat(timespec="seconds"),
        reason_key(later[0].response),
    )
    return [], 0.0


def _wait_for_server(
    ctx: DeliveryContext,
    occ: calendar.Occurrence,
    channel: str,
    breaker: Breaker,
    held: list[ClaimedDelivery],
    reason: str,
    recorder: _Recorder,
) -> bool:
    """Wait out the channel's backoff, holding `held` (their leases renewed). False when the
    waiting must end instead: the retry window is over, the occurrence was cancelled, or the
    process is stopping."""
    if breaker.expired() or ctx.stopping or ledger.is_cancelled(ctx.engine, occ.id):
        return False
    delay = breaker.backoff()
    log.warning(
        "%s %s: server unreachable for %.0fs (%s); %d messages wait, next try in %.1fs",
        occ.id,
        channel,
        breaker.down_for(),
        reason,
        len(held),
        delay,
    )
    ids = [d.id for d in held]
    # Sleep in slices shorter than the lease, renewing it, so nobody takes these over while
    # this sender is alive and waiting.
    slice_seconds = max(0.05, ctx.lease.total_seconds() / 3)
    remaining = delay
    while remaining > 0:
        step = min(slice_seconds, remaining)
        ctx.sleep(step)
        remaining -= step
        ledger.renew_lease(ctx.engine, ids, lease=ctx.lease)
        if ctx.stopping:
            return False
    if recorder.progress:
        recorder.progress(recorder.report)
    return True


def _give_up_waiting(
    ctx: DeliveryContext,
    channel: str,
    breaker: Breaker,
    held: list[ClaimedDelivery],
    reason: str,
    recorder: _Recorder,
    report: BatchReport,
) -> None:
    """The wait ended without the server coming back: fail the messages once the retry
    window is over (or the occurrence was cancelled); when the process is stopping, leave
    them pending for the next start, no worse off than before."""
    if ctx.stopping and not breaker.expired():
        for d in held:
            recorder.add(
                Result(d.id, DeliveryState.PENDING, error=f"waiting for the server: {reason}")
            )
        recorder.flush()
        return
    window = ctx.retry_window_text(channel)
    error = f"server unreachable for the whole retry window ({window}): {reason}"
    if not breaker.expired():
        error = f"cancelled while the server was unreachable: {reason}"
    for d in held:
        recorder.add(Result(d.id, DeliveryState.FAILED, error=error))
    key = reason_key(error)
    report.reasons[key] = report.reasons.get(key, 0) + len(held)
    report.failed += len(held)
    recorder.flush()


def _classify(
    outcome: Outcome,
    delivery: ClaimedDelivery,
    message_id: str,
    retry: list[tuple[ClaimedDelivery, str]],
    bounced: list[int],
    report: BatchReport,
) -> Result | None:
    """The ledger result of one outcome, or None when it is to be retried."""
    if outcome.status == "sent":
        report.sent += 1
        return Result(
            delivery.id, DeliveryState.SENT, response=outcome.response, message_id=message_id
        )
    if outcome.status == "transient":
        retry.append((delivery, outcome.response))
        return None
    reason = reason_key(f"{outcome.status}: {outcome.response}")
    report.failed += 1
    report.reasons[reason] = report.reasons.get(reason, 0) + 1
    if outcome.status == "bounced" and delivery.subscriber_id is not None:
        bounced.append(delivery.subscriber_id)
    return Result(
        delivery.id,
        DeliveryState.FAILED,
        response=outcome.response,
        message_id=message_id,
        error=f"{outcome.status}: {outcome.response}",
    )
