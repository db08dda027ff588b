"""`deliver: local` with the real clock: `scheduler run` (and `scheduler clock` with a
worker) as processes, subscribers in Pacific/Kiritimati, Asia/Manila, Europe/Madrid,
America/Chicago and Pacific/Pago_Pago.

Real zones are hours apart, and a test cannot wait hours; so the step's wall time is chosen
so that Chicago's wave is a few seconds ahead: Kiritimati's (20 h before), Manila's (14 h)
and Madrid's (7 h) are then overdue inside the 24 h catch-up window and go out at once,
earliest first; Chicago's goes at its instant; Pago Pago's (5 h on) stays pending. The
wave instants of real zones, DST included, are pinned in test_waves.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import MINIMAL, ProjectFactory
from redis_queue import own_queue
from smtp_server import SmtpTestServer
from test_clock_process import REDIS_URL, at, kill9, start, stop, wait_for

from scheduler.audience.csvfile import SubscriberRow
from scheduler.store.db import make_engine, migrate
from scheduler.store.subscribers import import_rows

ZONES = [
    "Pacific/Kiritimati",
    "Asia/Manila",
    "Europe/Madrid",
    "America/Chicago",
    "Pacific/Pago_Pago",
]
CHICAGO = ZoneInfo("America/Chicago")
PER_ZONE = 3


def project_text(url: str, chicago_wave: dt.datetime) -> str:
    wall = chicago_wave.astimezone(CHICAGO)
    text = MINIMAL.split("campaigns:")[0].replace('"file:outbox"', f'"{url}", connections: 1')
    return text + (
        "campaigns:\n  rapid:\n    name: Rapid\n"
        f'    date: "{wall:%Y-%m-%d}"\n    time: "{wall:%H:%M:%S}"\n'
        "    timezone: America/Chicago\n    statement: may-day\n    audience: [members]\n"
        "    catch_up: 24h\n    steps:\n      statement:\n        channels: [email]\n"
        "        template: statement\n        deliver: local\n"
    )


def zone_of(address: str) -> str | None:
    label = address.split("@")[0].rstrip("0123456789")
    return next((z for z in ZONES if z.split("/")[-1].lower() == label), None)


@pytest.fixture
def waves_env(
    make_project: ProjectFactory, tmp_path: Path
) -> Callable[[str, dt.datetime], dict[str, str]]:
    def make(url: str, chicago_wave: dt.datetime) -> dict[str, str]:
        path = make_project(project_text(url, chicago_wave), members_csv="email\n")
        db = f"sqlite:///{tmp_path / 'state.db'}"
        engine = make_engine(db)
        migrate(engine)
        rows = [
            SubscriberRow(
                email=f"{(zone or 'nozone').split('/')[-1].lower()}{i}@example.org",
                name=None,
                language="en",
                timezone=zone,
                row=n * PER_ZONE + i + 2,
            )
            for n, zone in enumerate([*ZONES, None])
            for i in range(PER_ZONE)
        ]
        import_rows(engine, "members", rows, source="test")
        engine.dispose()
        return {
            **os.environ,
            "SCHEDULER_CONFIG": str(path),
            "SCHEDULER_DATABASE_URL": db,
            # A killed sender's deliveries come back after 3 s, not a minute.
            "SCHEDULER_LEASE_SECONDS": "3",
        }

    return make


def status_json(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "scheduler", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def wave_order(server: SmtpTestServer) -> list[str]:
    """The zone of each message in the order the server first accepted it, runs collapsed."""
    order: list[str] = []
    seen: set[str | None] = set()
    for m in server.messages:
        if m.message_id in seen:
            continue
        seen.add(m.message_id)
        zone = zone_of(m.rcpt_tos[0]) or "America/Chicago"  # no zone: the campaign's
        if not order or order[-1] != zone:
            order.append(zone)
    return order


def by_message_id(server: SmtpTestServer) -> Counter[tuple[str, str | None]]:
    return Counter((m.rcpt_tos[0], m.message_id) for m in server.messages)


def expected_recipients() -> set[str]:
    return {
        f"{(z or 'nozone').split('/')[-1].lower()}{i}@example.org"
        for z in [*ZONES[:4], None]
        for i in range(PER_ZONE)
    }


def test_waves_go_out_zone_by_zone_once_each(
    waves_env: Callable[[str, dt.datetime], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    chicago_wave = at(8)
    env = waves_env(smtp_server.url, chicago_wave)
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: len(smtp_server.messages) >= 3 * PER_ZONE, 30), log.read_text()
        assert wait_for(lambda: len(smtp_server.messages) >= 5 * PER_ZONE, 30), log.read_text()
        time.sleep(3)  # more sweeps: nothing goes twice, Pago Pago's wave does not go early
    finally:
        stop(proc)
    assert wave_order(smtp_server) == ZONES[:4]
    counts = smtp_server.count_by_recipient()
    assert set(counts) == expected_recipients() and set(counts.values()) == {1}
    chicago = [m for m in smtp_server.messages if zone_of(m.rcpt_tos[0]) in (None, ZONES[3])]
    # Chicago's wave (and the zone-less, the campaign's zone) waited for its instant.
    assert min(m.received_at for m in chicago) >= chicago_wave.timestamp() - 0.05
    (occ,) = status_json(env)["occurrences"]  # type: ignore[misc]
    assert occ["state"] == "firing"  # Pago Pago's wave is hours away
    waves = occ["waves"]
    assert [w["zones"] for w in waves] == [[z] for z in ZONES]
    assert [w["sent"] for w in waves] == [PER_ZONE] * 3 + [2 * PER_ZONE, 0]
    assert waves[-1]["pending"] == PER_ZONE


def test_a_kill_in_the_middle_of_the_waves_loses_and_doubles_nothing(
    waves_env: Callable[[str, dt.datetime], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    # Slow answers, so the kill lands inside the overdue waves' batch (mid-wave).
    smtp_server.data_delay = 0.4
    chicago_wave = at(25)
    env = waves_env(smtp_server.url, chicago_wave)
    log = tmp_path / "run.log"
    first = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: len(smtp_server.messages) >= PER_ZONE + 1, 40), log.read_text()
    finally:
        kill9(first)
    killed_at = len(smtp_server.messages)
    assert killed_at < 3 * PER_ZONE  # killed in the middle of the overdue waves
    smtp_server.data_delay = 0.0
    second = start(["run", "--tick", "1"], env, log)
    try:
        # The rest of the overdue waves (after the 3 s lease of the killed sender's rows) ...
        assert wait_for(lambda: len(set(by_message_id(smtp_server))) >= 3 * PER_ZONE, 40), (
            log.read_text()
        )
        if time.time() < chicago_wave.timestamp() - 2:
            # ... then a second kill between the waves, and a restart after Chicago's instant.
            kill9(second)
            time.sleep(max(0.0, chicago_wave.timestamp() - time.time()) + 2)
            second = start(["run", "--tick", "1"], env, log)
        assert wait_for(lambda: len(set(by_message_id(smtp_server))) >= 5 * PER_ZONE, 60), (
            log.read_text()
        )
        time.sleep(3)
    finally:
        stop(second)
    distinct = by_message_id(smtp_server)
    recipients = Counter(r for r, _ in distinct)
    # Every recipient due got their message, under one Message-ID each: nothing lost.
    assert set(recipients) == expected_recipients() and set(recipients.values()) == {1}
    # Nothing doubled: at most the message in flight at the kill (accepted by the server,
    # not yet recorded) went again, as the same message (same Message-ID).
    resent = sum(distinct.values()) - len(distinct)
    assert resent <= 1, distinct
    assert wave_order(smtp_server) == ZONES[:4]
    (occ,) = status_json(env)["occurrences"]  # type: ignore[misc]
    assert occ["state"] == "firing"
    assert [w["sent"] for w in occ["waves"]] == [PER_ZONE] * 3 + [2 * PER_ZONE, 0]


@pytest.fixture
def redis_queue() -> Iterator[tuple[str, str]]:
    """A Celery queue and a clock leader key of this test's own."""
    yield from own_queue(REDIS_URL)


def test_distributed_clock_and_worker_send_each_wave_once(
    waves_env: Callable[[str, dt.datetime], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    redis_queue: tuple[str, str],
) -> None:
    name, key = redis_queue
    chicago_wave = at(12)
    env = waves_env(smtp_server.url, chicago_wave)
    env.update(SCHEDULER_BROKER_URL=REDIS_URL, SCHEDULER_QUEUE=name, SCHEDULER_LEADER_KEY=key)
    log = tmp_path / "clock.log"
    clock = start(["clock", "--tick", "1", "--leader-ttl", "3"], env, log)
    worker = start(["worker", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: len(smtp_server.messages) >= 5 * PER_ZONE, 60), (
            log.read_text()[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
        )
        time.sleep(3)
    finally:
        stop(clock)
        stop(worker)
    assert wave_order(smtp_server) == ZONES[:4]
    counts = smtp_server.count_by_recipient()
    assert set(counts) == expected_recipients() and set(counts.values()) == {1}
    chicago = [m for m in smtp_server.messages if zone_of(m.rcpt_tos[0]) in (None, ZONES[3])]
    assert min(m.received_at for m in chicago) >= chicago_wave.timestamp() - 0.05
    assert "event=wave" in log.read_text()
