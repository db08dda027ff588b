"""`run`, `clock`, `worker`, `migrate`: the long-running processes and the store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scheduler import settings
from scheduler.console import err, out, safe_url, state, store, valid_project
from scheduler.delivery.context import broker_url

if TYPE_CHECKING:
    from scheduler.clock.daemon import Clock

# --- worker --------------------------------------------------------------------------------


def worker_command(
    concurrency: Annotated[int, typer.Option(min=1, help="worker processes")] = 2,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """A Celery worker that sends batches (distributed mode; broker SCHEDULER_BROKER_URL)."""
    import os

    valid_project()  # refuse to start on a broken campaigns.yaml
    if state.config:
        os.environ[settings.CONFIG.name] = str(Path(state.config).resolve())
    from scheduler.tasks import QUEUE, app

    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--queues={QUEUE}",
            "--without-gossip",
            "--without-mingle",
            "--pool=prefork",
        ]
    )


# --- the clock ------------------------------------------------------------------------------


def _logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # APScheduler logs every run of the sweep at INFO; our own lines say what matters.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _brief(clock: Clock) -> None:
    """Where email goes, which channels cannot send, what has a timer: before the start."""
    from scheduler.clock.briefing import startup_lines

    for line in startup_lines(
        clock.project, clock.scheduled, dt.datetime.now(dt.UTC), mode=clock.mode
    ):
        err.print(line, markup=False)


def run_command(
    tick: Annotated[float, typer.Option(min=0.5, help="seconds between reconciliations")] = 5.0,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Embedded daemon: fires every occurrence at its instant and sends it in this process."""
    from scheduler.clock.daemon import Clock

    project = valid_project()
    _logging(loglevel)
    engine = store()
    clock = Clock(project, engine, tick_seconds=tick)
    clock.on_start = _brief
    clock.run_forever()


def clock_command(
    tick: Annotated[float, typer.Option(min=0.5, help="seconds between reconciliations")] = 5.0,
    leader_ttl: Annotated[
        float, typer.Option(min=1, help="seconds a dead leader keeps the lead")
    ] = 15.0,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Distributed scheduler: fires occurrences by handing them to `scheduler worker`s.
    Run two for safety: one leads (a Redis lock), the other takes over if it dies."""
    import redis

    from scheduler.clock.daemon import Clock
    from scheduler.clock.leader import LeaderLock

    project = valid_project()
    _logging(loglevel)
    engine = store()
    url = broker_url()
    leader = LeaderLock(
        redis.Redis.from_url(url),
        ttl_seconds=leader_ttl,
        key=settings.leader_key(),
    )
    clock = Clock(
        project,
        engine,
        distributed=True,
        leader=leader,
        redis_url=url,
        tick_seconds=min(tick, leader_ttl / 3),
    )
    clock.on_start = _brief
    clock.run_forever()


def migrate_command() -> None:
    """Create or upgrade the store's tables (safe to run again)."""
    store()
    out.print(f"database {safe_url()} is up to date", markup=False)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
    app.command("run")(run_command)
    app.command("clock")(clock_command)
    app.command("migrate")(migrate_command)
