"""The failure-rate alert with the distributed clock: `scheduler clock` enqueues, a real
Celery worker sends, and the batch that ends the occurrence raises the alert, once."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from smtp_server import SmtpTestServer
from test_clock_process import (
    REDIS_URL,
    at,
    campaigns,
    project_env,
    queue,
    start,
    status,
    stop,
    wait_for,
)

from scheduler.accounts import store as accounts
from scheduler.store.db import make_engine
from scheduler.store.schema import Role, alerts

__all__ = ["project_env", "queue"]  # the fixtures, used by name

ORG = "org@example.org"


def alert_subjects(server: SmtpTestServer) -> list[str]:
    return [
        str(email.message_from_bytes(m.data, policy=email.policy.default)["Subject"])
        for m in server.messages
        if ORG in m.rcpt_tos
    ]


def test_a_worker_alerts_a_failure_rate_once(
    project_env: Callable[[str], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    queue: tuple[str, str],
) -> None:
    name, key = queue
    # Three of the five members are refused for good: 60 % failed, over the 5 % default.
    for i in (0, 1, 2):
        smtp_server.reject_rcpt[f"m{i}@example.org"] = "550 5.1.1 No such user"
    when = at(6)
    text = campaigns(smtp_server.url, ("rapid", when))
    # Batches of two: three batches, one alert.
    env = project_env(text.replace("campaigns:\n", "settings:\n  batch_size: 2\ncampaigns:\n", 1))
    env.update(SCHEDULER_BROKER_URL=REDIS_URL, SCHEDULER_QUEUE=name, SCHEDULER_LEADER_KEY=key)
    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    accounts.add(engine, ORG, Role.ORGANIZER)
    clock = start(["clock", "--tick", "1"], env, tmp_path / "clock.log")
    worker = start(["worker", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        occ = f"rapid/{when.year}/statement"
        assert wait_for(lambda: status(env).get(occ, {}).get("state") == "done", 60), (
            tmp_path / "worker.log"
        ).read_text()[-3000:]
        assert wait_for(lambda: len(alert_subjects(smtp_server)) >= 1, 20), (
            tmp_path / "worker.log"
        ).read_text()[-3000:]
    finally:
        for p in (clock, worker):
            stop(p)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alerts.c.cause, alerts.c.kind)).all()
    engine.dispose()
    # One alert for the occurrence (its cause), not one per failed delivery or per batch.
    assert rows == [(f"failures:{occ}", "failure_rate")]
    assert alert_subjects(smtp_server) == [f"[Test Org] 3 of 5 deliveries failed: {occ}"]
    log = (tmp_path / "worker.log").read_text()
    assert log.count("event=alert kind=failure_rate") == 1
    assert log.count(f"batch {occ} email") == 3
