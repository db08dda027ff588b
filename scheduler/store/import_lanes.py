"""PostgreSQL imports on several connections at once.

The merge is the server's work (`pg_import`), one core per connection: with one connection
the import waits for one server process while the other core idles. Here each batch is
split into lanes by its addresses, and each lane merges on its own connection in its own
thread (waiting on the server releases the interpreter lock).

An address always falls in the same lane, and a lane merges its batches one after the
other, in file order: a row repeated further down the file merges onto the earlier one as it
would in one transaction after another, and two lanes never write the same subscriber or
membership (so they never wait for, or deadlock with, each other). Each lane's batch commits
on its own, like a batch of the serial import: an interrupted import keeps what it did.

Each lane keeps one connection for the whole import, and the main thread asks once a batch
whether anyone was erased: a lane's round trips are then its COPY, its merge and its COMMIT.
After each round trip a lane waits for the interpreter lock, which the thread parsing the
file holds for up to `sys.getswitchinterval()` (5 ms) at a time; with a checkout ping, a
staging table, an erasure probe and a savepoint each batch, that waiting was as long as
the server's work.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.store import pg_import
from scheduler.store.db import writer
from scheduler.store.import_batch import Batch, anyone_erased
from scheduler.store.schema import MembershipStatus
from scheduler.thread_handoff import quick_handoff

LANES = 2  # one per core of the machines this runs on; the server's processes do the work
AHEAD = 2  # batches handed to a lane before waiting for its oldest


class Lanes:
    """Hand batches over with `submit`, then `finish`; both give the rows of each batch once
    every lane's part of it has committed, in order, and raise a lane's failure. `close`
    drops what has not started and waits for what has."""

    def __init__(
        self,
        engine: Engine,
        list_name: str,
        source: str,
        status: MembershipStatus,
        *,
        lanes: int = LANES,
    ) -> None:
        self._engine = engine
        self._args = (list_name, source, status)
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-lane-{i}")
            for i in range(lanes)
        ]
        self._pending: deque[tuple[list[Future[Counter[str]]], int]] = deque()
        self._local = threading.local()  # each lane thread's connection
        self._connections: list[sa.Connection] = []
        self._probe: sa.Connection | None = None  # the main thread's, for anyone_erased
        self.counts: Counter[str] = Counter()

    def submit(self, unique: Batch, rows: int) -> list[int]:
        """Start merging `unique` (from `rows` input rows); returns the rows of each batch
        that finished meanwhile, waiting for the oldest when too many are in flight."""
        n = len(self._lanes)
        parts: list[Batch] = [{} for _ in range(n)]
        for key, value in unique.items():
            parts[hash(key) % n][key] = value
        if self._probe is None:  # one statement, no transaction around it to commit
            self._probe = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        erased = anyone_erased(self._probe)
        futures = [
            lane.submit(self._merge, part, erased)
            for lane, part in zip(self._lanes, parts, strict=True)
            if part
        ]
        self._pending.append((futures, rows))
        finished = []
        while self._pending and (
            len(self._pending) > AHEAD or all(f.done() for f in self._pending[0][0])
        ):
            finished.append(self._collect())
        return finished

    def finish(self) -> Iterator[int]:
        """Wait for every batch, yielding each one's rows as it completes."""
        while self._pending:
            yield self._collect()

    def close(self) -> None:
        """Stop: batches not started are dropped, the ones merging finish (or roll back)."""
        for lane in self._lanes:
            lane.shutdown(wait=True, cancel_futures=True)
        # The lanes are done: their connections are used by no thread now.
        for connection in [*self._connections, *([self._probe] if self._probe else [])]:
            connection.close()
        self._connections.clear()
        self._probe = None

    def _collect(self) -> int:
        futures, rows = self._pending.popleft()
        for future in futures:
            self.counts.update(future.result())  # a lane's failure is raised here
        return rows

    def _merge(self, part: Batch, someone_erased: bool) -> Counter[str]:
        list_name, source, status = self._args
        conn: sa.Connection | None = getattr(self._local, "connection", None)
        if conn is None or conn.invalidated:
            conn = self._local.connection = writer(self._engine).connect()
            self._connections.append(conn)
        counts: Counter[str] = Counter()
        pg_import.merge_batch(
            conn, list_name, part, source, status, counts, someone_erased=someone_erased
        )
        return counts


def run(
    lanes: Lanes, batches: Iterator[tuple[Batch, int]], progress: Callable[[int], None] | None
) -> None:
    """Feed `batches` through `lanes`, reporting the rows done after each completed batch.
    The lanes come back from the server while this thread parses the file: the interpreter
    lock is handed over quickly meanwhile (`thread_handoff`)."""
    done = 0
    try:
        with quick_handoff():
            for unique, rows in batches:
                for finished in lanes.submit(unique, rows):
                    done += finished
                    if progress is not None:
                        progress(done)
            for finished in lanes.finish():
                done += finished
                if progress is not None:
                    progress(done)
    finally:
        lanes.close()
