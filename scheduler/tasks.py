"""Celery tasks: thin wrappers around the plain delivery functions.

Settings follow rule 2 of docs/ARCHITECTURE.md: late acknowledgement and
reject-on-worker-lost (a killed worker's batch goes back to the queue), prefetch 1, no
results stored, no long ETAs, no chords. Re-running a batch is safe: the ledger hands out
only deliveries nobody holds.
"""

from __future__ import annotations

import atexit
import datetime as dt
import gc
import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from scheduler import calendar, settings
from scheduler.delivery import alerts
from scheduler.delivery.batch import send_batch
from scheduler.delivery.context import DeliveryContext, broker_url
from scheduler.delivery.fire import fire
from scheduler.store.db import make_engine, migrate
from scheduler.validate import require_valid

log = logging.getLogger(__name__)

QUEUE = settings.queue()
# Two minutes by default (settings.py): a killed worker's batch is handed to another within
# about that (plus the 10 s restore sweep), and by then the dead worker's 60 s leases have
# ended, so recovery takes ~2 minutes instead of 10. A batch that runs longer (a slow server,
# an outage being waited out) is handed out a second time meanwhile; the copy finds its
# deliveries held (their lease is renewed) and retries after the lease, never sending one
# twice. Keep it above the lease (SCHEDULER_LEASE_SECONDS): a held batch retries after it.
VISIBILITY_TIMEOUT = settings.visibility_timeout()

app = Celery("scheduler")
app.conf.update(
    broker_url=broker_url(),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    # Redis hands an unacknowledged task (its worker was killed) to another worker after
    # this long (see VISIBILITY_TIMEOUT); the sweep that finds such tasks runs every few
    # seconds instead of kombu's default hundred.
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": min(10, VISIBILITY_TIMEOUT),
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue=QUEUE,
)

_context: DeliveryContext | None = None


def context() -> DeliveryContext:
    """One per worker process: config, engine, SMTP connections and rendered messages."""
    global _context
    if _context is None:
        project = require_valid(settings.CONFIG.raw())
        engine = make_engine()
        migrate(engine)
        _context = DeliveryContext(project, engine, redis_url=broker_url())
        atexit.register(_close)
    return _context


def _close() -> None:
    global _context
    if _context is not None:
        _context.close()
        _context.engine.dispose()
        _context = None


@worker_process_init.connect
def _on_start(**_: object) -> None:
    # Ready before the first task: loading the project, migrating and compiling the
    # templates took the first batch of a send about a second.
    try:
        context().renderer.warm_up()
    except Exception:
        # A project that does not load fails the first task, with its error, as before.
        log.exception("event=worker_warm_up_failed")
        _close()
    # What the process holds from here on (the inherited imports, the project, the compiled
    # templates) lives as long as it does: frozen, no full collection walks it again (one
    # such walk took 30-55 ms in each worker process of a 50,000-message send, measured).
    gc.freeze()


@worker_process_shutdown.connect
def _on_shutdown(**_: object) -> None:
    _close()


@app.task(
    name="scheduler.send_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    bind=True,
    max_retries=None,
)
def send_batch_task(self: Any, occurrence_id: str, channel: str, lo: int, hi: int) -> None:
    ctx = context()
    report = send_batch(ctx, occurrence_id, channel, lo, hi)
    # The embedded clock alerts after its fire returns; here the batch that ends the
    # occurrence does (an alert must never fail the batch, which is already recorded). A
    # batch that sent and left work open skips the look (one query per batch); one that
    # claimed nothing asks, so a worker killed between the end and the alert is made good
    # by the task's redelivery, which finds the batch done.
    if report.finished or not report.claimed:
        try:
            alerts.failure_rate_when_done(ctx, occurrence_id)
        except Exception:
            log.exception("event=alert_failed occurrence=%s", occurrence_id)
    if report.held_until is not None:
        # Another worker holds part of this range, or held it and died. Come back when its
        # lease ends (minutes at most: never a long ETA); if it died, we take over then.
        wait = (report.held_until - dt.datetime.now(dt.UTC)).total_seconds()
        raise self.retry(countdown=max(1.0, wait + 1.0))
    log.info(
        "batch %s/%s [%d,%d) sent=%d failed=%d skipped=%d",
        occurrence_id,
        channel,
        lo,
        hi,
        report.sent,
        report.failed,
        report.skipped,
    )


def enqueue_batch(occurrence_id: str, channel: str, lo: int, hi: int) -> None:
    send_batch_task.delay(occurrence_id, channel, lo, hi)


@app.task(
    name="scheduler.fire_occurrence", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def fire_occurrence_task(
    occurrence_id: str,
    late: bool = False,
    note: str | None = None,
    channels: list[str] | None = None,
) -> None:
    """Claim, fan out and enqueue the batches of `channels` (None: the whole step). Re-run,
    it enqueues only unfinished batches."""
    ctx = context()
    occ = calendar.occurrence(ctx.config, occurrence_id)
    fire(ctx, occ, channels=channels, dispatch=enqueue_batch, late=late, note=note)
