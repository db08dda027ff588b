"""More sender processes for the embedded runner: one per core, so composing, SMTP and the
ledger writes of one occurrence are not all held by one interpreter's lock.

The firing process keeps sending batches itself (the first message of an occurrence never
waits for a process to start); batches go to a helper only when one is free. A helper is
`send_batch` in another process on the same store, so every rule of the ledger holds: a batch
is claimed with a lease, sent once, and left to the lease if a helper dies.

A helper outlives a firing process that is killed (SIGKILL, OOM): it would wait for work
forever, holding the killed process's stdout open. It watches its parent instead, and once
the parent is gone it finishes the batch in hand (its outcomes are written) and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from scheduler.config.project import load_project
from scheduler.delivery import prestart
from scheduler.delivery.batch import BatchReport, send_batch
from scheduler.delivery.context import DeliveryContext
from scheduler.store.db import make_engine

log = logging.getLogger(__name__)

_context: DeliveryContext | None = None

# What a helper needs to set itself up: the project, the store, the broker, the lease.
_Args = tuple[str, str, str | None, float]


class Helpers:
    """`count` sender processes for one fire; started on first use, stopped by `close`."""

    def __init__(self, ctx: DeliveryContext, count: int) -> None:
        self.count = count
        self._args: _Args = (
            str(Path(ctx.project.path).resolve()),
            ctx.engine.url.render_as_string(hide_password=False),
            ctx.redis_url,
            ctx.lease.total_seconds(),
        )
        self._executor: ProcessPoolExecutor | None = None
        self._running: list[Future[BatchReport]] = []

    @property
    def started(self) -> bool:
        return self._executor is not None

    def free(self) -> bool:
        self._running = [f for f in self._running if not f.done()]
        # Two batches per helper: the next one is there when it finishes the first.
        return len(self._running) < 2 * self.count

    def start(self) -> None:
        """Start the processes now (they take a second or two to import and load the
        project), so they are ready when the batches are; those `scheduler send` started
        before its own imports (delivery/prestart.py) if there are."""
        if self._executor is None:
            self._executor = prestart.take(self.count) or prestart.new_pool(self.count)
            for _ in range(self.count):
                self._executor.submit(_prepare, self._args)

    def submit(self, occurrence_id: str, channel: str, lo: int, hi: int) -> Future[BatchReport]:
        self.start()
        assert self._executor is not None
        future = self._executor.submit(_send, self._args, occurrence_id, channel, lo, hi)
        self._running.append(future)
        return future

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _prepare(args: _Args) -> None:
    """Load the project and connect, once per helper (the first task it takes does it)."""
    if _context is None:
        _start(*args)


def _start(config: str, url: str, redis_url: str | None, lease_seconds: float) -> None:
    import datetime as dt

    global _context
    project = load_project(config)
    _context = DeliveryContext(
        project,
        make_engine(url),
        redis_url=redis_url,
        lease=dt.timedelta(seconds=lease_seconds),
    )
    # Run at the helper's exit (atexit is not, in a multiprocessing child): QUIT to the server.
    multiprocessing.util.Finalize(None, _context.close, exitpriority=10)


def watch_parent(parent: int) -> None:
    """In a helper, from its start (delivery/prestart.warm_up): exit once `parent` is gone,
    also while the helper still imports or waits for its first batch."""
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True
    ).start()


# How often a helper checks that the process that started it is still there.
PARENT_CHECK_SECONDS = 0.5


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    log.warning("the sending process %d is gone: this helper stops after its batch", parent)
    if _context is not None:  # else it had not taken a batch yet
        while _context.busy:
            time.sleep(0.05)
        _context.close()
    os._exit(0)  # the executor's call queue would wait for the dead parent forever


def _send(args: _Args, occurrence_id: str, channel: str, lo: int, hi: int) -> BatchReport:
    _prepare(args)
    assert _context is not None
    with _context.in_use():
        return send_batch(_context, occurrence_id, channel, lo, hi)
