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
from scheduler.delivery import ledger
from scheduler.delivery.attempts import Attempts, GiveUp, Round
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.ledger import ClaimedDelivery, Result
from scheduler.delivery.posting import post_delivery
from scheduler.delivery.reasons import reason_key
from scheduler.mail.envelope import Outcome, Outgoing
from scheduler.store.schema import DeliveryState

log = logging.getLogger(__name__)

# Outcomes are written to the ledger at least this often, so a crash loses (and so may
# repeat) only a few messages, each with the same Message-ID. Each write is a commit (on
# SQLite an fsync, with the write lock held): 125 is half a batch.
FLUSH_EVERY = 125
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
    claimed: int = 0  # deliveries this batch took from the ledger
    finished: bool = False  # this batch's finish check made the occurrence `done`
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
        self.claimed += other.claimed
        self.finished = self.finished or other.finished
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
    # Nothing is claimed of a cancelled occurrence (the claim asks); only an empty claim
    # asks why.
    claimed = ledger.claim_batch(ctx.engine, occurrence_id, channel, lo, hi, lease=ctx.lease)
    if not claimed:
        if ledger.is_cancelled(ctx.engine, occurrence_id):
            report.cancelled = True
            return report
        report.held_until = ledger.held_in_range(ctx.engine, occurrence_id, channel, lo, hi)
        report.finished = ledger.finish_if_complete(ctx.engine, occurrence_id)
        return report
    report.claimed = len(claimed)
    occ = calendar.occurrence(ctx.config, occurrence_id)
    kind = get_channel_class(ctx.config.channels[channel].type).kind
    if kind == "email":
        _send_email(ctx, occ, channel, claimed, report, progress)
    else:
        _send_posts(ctx, occ, channel, claimed, report)
        if progress:
            progress(report)
    report.finished = ledger.finish_if_complete(ctx.engine, occurrence_id)
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
        if outcome.deferred:
            report.deferred += 1  # the loop recorded its next attempt (see deferral.py)
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
    # Composed once, when a connection is ready for it (so composing overlaps waiting on the
    # server), and kept: a retry sends the very same bytes (same Message-ID, same Date).
    messages: dict[int, Outgoing] = {}
    uncomposable: set[int] = set()

    def composed(d: ClaimedDelivery) -> Outgoing | None:
        message = messages.get(d.id)
        if message is not None or d.id in uncomposable:
            return message
        stored_address, name = wanted[d.subscriber_id or 0]
        # An internationalized domain goes out in its IDNA (xn--) form, which every server
        # takes; only a non-ASCII part before '@' needs SMTPUTF8 (the transport checks).
        email_address = wire_address(stored_address)
        try:
            data, ready = composer.compose_for_wire(
                subscriber_id=d.subscriber_id or 0,
                email_address=email_address,
                name=name,
                language=d.language,
            )
        except ValueError as e:  # an address no message can be addressed to
            uncomposable.add(d.id)
            recorder.add(Result(d.id, DeliveryState.FAILED, error=f"cannot compose: {e}"))
            report.failed += 1
            key = reason_key(f"cannot compose: {e}")
            report.reasons[key] = report.reasons.get(key, 0) + 1
            return None
        if signer is not None:
            data = signer.sign(data, crlf=ready)
        message = messages[d.id] = Outgoing(
            key=d.id,
            envelope_from=composer.envelope_from(d.id),
            recipient=email_address,
            data=data,
            wire=ready,
        )
        return message

    breaker = ctx.breaker(channel)

    def send(batch: list[ClaimedDelivery]) -> Round:
        recorder.held = [d.id for d in batch]
        round_ = Round()
        seen: set[int] = set()
        tripped = threading.Event()

        def feed() -> Iterator[Outgoing]:
            # Once the server is found unreachable, stop handing it messages: the few in
            # flight come back, the rest wait with them for the server.
            for d in batch:
                if tripped.is_set():
                    return
                message = composed(d)
                if message is None:
                    seen.add(d.id)  # failed to compose: recorded, nothing to wait for
                else:
                    yield message

        waiting: dict[int, str] = {}
        for outcome in pool.send_all(feed()):
            delivery = by_id[outcome.key]
            seen.add(delivery.id)
            if outcome.status == "unavailable":
                waiting[delivery.id] = outcome.response
                tripped.set()
                continue
            message_id = composer.message_id(delivery.subscriber_id or 0)
            result = _classify(outcome, delivery, message_id, round_.again, bounced, report)
            if outcome.status == "sent":
                breaker.success()
            if result is not None:
                recorder.add(result)
        recorder.flush()
        if waiting:
            round_.reason = next(iter(waiting.values()))
            round_.waiting = [d for d in batch if d.id in waiting or d.id not in seen]
        return round_

    def give_up(deliveries: list[tuple[ClaimedDelivery, str]], why: GiveUp) -> None:
        if why.deferred:  # the loop recorded their next attempt (see deferral.py)
            return
        for d, reply in deliveries:
            error = f"{why.error}: {reply}"
            if why.pending:
                recorder.add(Result(d.id, DeliveryState.PENDING, error=error))
                continue
            response = None if why.unreachable else reply
            recorder.add(Result(d.id, DeliveryState.FAILED, response=response, error=error))
            key = reason_key(error)
            report.reasons[key] = report.reasons.get(key, 0) + 1
            report.failed += 1
        recorder.flush()

    def shown() -> None:
        if progress:
            progress(report)

    attempts = Attempts(
        ctx, occ.id, channel, attempt=max((d.attempts for d in todo), default=1), on_wait=shown
    )
    attempts.run(todo, send, give_up)
    report.retried += attempts.retried
    report.waited += attempts.waited
    report.deferred += attempts.deferred
    if bounced:
        ledger.mark_bounced(engine, bounced)
    if progress:
        progress(report)


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
