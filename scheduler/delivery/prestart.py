"""Start the embedded sender's helper processes before the command's own imports.

A helper (delivery/senders.py) is a spawned interpreter: it imports the project's sending
code (a second or more) and loads the project before it can take a batch. Started once the
occurrence is claimed, it spent that second while the command fanned out and sent alone;
meanwhile, during the command's own imports, the other core was idle. So `scheduler send`
(embedded, not --enqueue or --dry-run) starts them first thing, from `scheduler.entry`,
and they import while the command does. `senders.Helpers` takes the pool when the send is
large enough to use it; a send too small for helpers (or one refused) kills the processes
at the command's end, which costs that core's second of CPU and no wall time.

This module imports nothing heavy (it runs before anything else of the command), and a
helper started here imports only `scheduler.delivery.senders`, never the command line.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import multiprocessing.util
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from scheduler import settings

# The module a helper needs for its batches (`senders._send`); imported by `warm_up`.
SENDING_MODULE = "scheduler.delivery.senders"

# Options of `scheduler send` under which it sends nothing itself.
_NOT_HERE = frozenset({"--enqueue", "--dry-run", "--help", "-h"})
# The global options before the command that take a value.
_GLOBAL_WITH_VALUE = frozenset({"-c", "--config"})

_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def warm_up(parent: int) -> None:
    """A helper's first act: leave Ctrl-C to the sending process (it decides when to stop;
    a helper finishes the batch in hand), import the sending code, and watch the parent
    (`parent`, its pid as it passed it: it may have died while this one was starting)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A spawned child ends like any interpreter, with a final collection over every object
    # its imports made (0.3–0.4 s here, measured), and the sending process waits for it at
    # the end of each send. Run last of its exit steps (priority 0, after the context's
    # close at 10): what is frozen is not walked.
    multiprocessing.util.Finalize(None, gc.freeze, exitpriority=0)
    from scheduler.gc_pause import frozen_when_done

    with frozen_when_done():
        sending = importlib.import_module(SENDING_MODULE)
    sending.watch_parent(parent)


def new_pool(count: int) -> ProcessPoolExecutor:
    """`count` helper processes, started now (a pool starts them at the first tasks)."""
    # spawn, not fork: the parent has threads (SMTP pool, the clock's scheduler), and
    # SQLite's connection state must not cross a fork.
    executor = ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=warm_up,
        initargs=(os.getpid(),),
    )
    for _ in range(count):
        executor.submit(os.getpid)
    return executor


def sends_here(argv: Sequence[str]) -> bool:
    """Whether the command line is `scheduler [-c FILE] send …` that sends in this process."""
    args = list(argv)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in _GLOBAL_WITH_VALUE else 1
    if i >= len(args) or args[i] != "send":
        return False
    return not any(a in _NOT_HERE for a in args[i + 1 :])


def start_for(argv: Sequence[str]) -> None:
    """Start the helpers now if this command line is an embedded send that would use them."""
    global _pool, _pool_size
    if _pool is not None or not sends_here(argv):
        return
    try:
        count = settings.sender_processes() - 1
    except ValueError:
        return  # a bad value: the command says so where it reads it
    if count > 0:
        _pool, _pool_size = new_pool(count), count


def take(count: int) -> ProcessPoolExecutor | None:
    """The helpers started by `start_for`, if there are `count` of them; they are the
    caller's from now on (to shut down)."""
    global _pool
    if _pool is None or _pool_size != count:
        return None
    pool, _pool = _pool, None
    return pool


def discard() -> None:
    """End helpers started for a send that did not use them, without waiting for their
    imports to finish (they hold nothing yet: no connection, no batch)."""
    global _pool
    if _pool is None:
        return
    pool, _pool = _pool, None
    # ProcessPoolExecutor has no public way to end its processes before Python 3.14
    # (`terminate_workers`); shutting down alone would wait for each import to finish.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
