"""Distributed sending with real Celery workers on the local Redis, killed mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, email_project
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.delivery import ledger
from scheduler.store.db import make_engine, migrate
from scheduler.store.schema import deliveries

REDIS_URL = os.environ.get("SCHEDULER_TEST_REDIS", "redis://127.0.0.1:6379/13")
OCCURRENCE = "may-day/2030/statement"
# A queue of its own, so another run of this suite on the same Redis cannot take its tasks.
QUEUE = f"scheduler-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required in CI: {e}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {e}")
    yield REDIS_URL
    client.delete(QUEUE)


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler", "worker", "--concurrency", "1", "--loglevel", "INFO"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # The whole worker, parent and pool children, as a crash or `kill -9` would.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _sent(engine: Engine) -> int:
    return ledger.counts(engine, OCCURRENCE).get(OCCURRENCE, {}).get("email", {}).get("sent", 0)


def _broker_state(url: str) -> str:
    client = redis.Redis.from_url(url)
    keys = {k.decode(): client.type(k).decode() for k in client.keys("*")}
    unacked = client.hgetall("unacked")
    index = client.zrange("unacked_index", 0, -1, withscores=True)
    return f"redis keys {keys}; unacked {len(unacked)}; index {index}; now {time.time()}"


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_at_most_in_flight(
    make_project: ProjectFactory, smtp_server: SmtpTestServer, broker: str, tmp_path: Path
) -> None:
    # Slow the channel down (20 messages/s, shared through Redis) so the kill lands mid-batch.
    project = email_project(
        make_project, smtp_server.url, batch_size=30, extra=", rate_per_second: 20"
    )
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(url)
    migrate(engine)
    emails = add_subscribers(engine, 90)
    env = {
        **os.environ,
        "SCHEDULER_CONFIG": str(project.path),
        "SCHEDULER_DATABASE_URL": url,
        "SCHEDULER_BROKER_URL": broker,
        # Short timeouts so the test waits seconds, not the production minutes.
        "SCHEDULER_VISIBILITY_TIMEOUT": "3",
        "SCHEDULER_LEASE_SECONDS": "4",
        "SCHEDULER_QUEUE": QUEUE,
    }
    log = tmp_path / "worker.log"
    first = _start_worker(env, log)
    try:
        enqueue = subprocess.run(
            [
                sys.executable,
                "-m",
                "scheduler",
                "send",
                "may-day",
                "--occurrence",
                OCCURRENCE,
                "--now",
                "--enqueue",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert enqueue.returncode == 0, enqueue.stderr
        assert _wait(lambda: len(smtp_server.messages) >= 15, 30), log.read_text()
    finally:
        _kill(first)
    at_kill = len(smtp_server.messages)
    assert at_kill < 90, "the worker finished before it could be killed"
    second = _start_worker(env, log)
    try:
        assert _wait(lambda: _sent(engine) == 90, 90), (
            f"sent {_sent(engine)} of 90\n{_broker_state(broker)}\n" + log.read_text()[-3000:]
        )
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _kill(second)
    received = smtp_server.count_by_recipient()
    # Nobody is missed.
    assert set(received) == set(emails)
    # Extra copies only for messages that were in flight or not yet recorded at the kill,
    # and each with the Message-ID of the first, so receivers drop it.
    extra = {r: n for r, n in received.items() if n > 1}
    assert all(n == 2 for n in extra.values())
    ids_by_recipient: dict[str, set[str | None]] = {}
    for message in smtp_server.messages:
        for rcpt in message.rcpt_tos:
            ids_by_recipient.setdefault(rcpt, set()).add(message.message_id)
    assert all(len(ids) == 1 for ids in ids_by_recipient.values())
    assert len(extra) <= 15  # at 20/s, a few hundred ms of unrecorded sends at most
    # The ledger agrees with the server: one sent delivery per recipient, same Message-ID.
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.message_id, deliveries.c.state)).all()
    assert Counter(state for _, state in rows) == {"sent": 90}
    assert {m for m, _ in rows} == {next(iter(ids)) for ids in ids_by_recipient.values()}
    assert ledger.get_occurrence(engine, OCCURRENCE).state == "done"  # type: ignore[union-attr]
    engine.dispose()
