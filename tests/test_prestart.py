"""Helper processes started before `scheduler send`'s imports (delivery/prestart.py): which
command lines start them, that a send takes them, and that none outlives its command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, email_project, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.delivery import ledger, prestart
from scheduler.delivery.fire import fire
from scheduler.delivery.senders import Helpers

OCC = "may-day/2030/statement"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["send", "may-day"], True),
        (["-c", "other.yaml", "send", "may-day", "--now"], True),
        (["--config=other.yaml", "send", "may-day"], True),
        (["send", "may-day", "--enqueue"], False),  # workers send
        (["send", "may-day", "--dry-run"], False),
        (["send", "--help"], False),
        (["status"], False),
        (["-c", "send", "status"], False),  # "send" is the config file's name here
        ([], False),
    ],
)
def test_only_an_embedded_send_starts_helpers_early(argv: list[str], expected: bool) -> None:
    assert prestart.sends_here(argv) is expected


@pytest.fixture
def clean_prestart(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SCHEDULER_SENDER_PROCESSES", "2")
    yield
    prestart.discard()


def test_a_send_too_small_for_helpers_kills_them_without_waiting_for_their_imports(
    clean_prestart: object,
) -> None:
    prestart.start_for(["send", "may-day"])
    pool = prestart._pool
    assert pool is not None
    processes = list(pool._processes.values())  # type: ignore[attr-defined]
    assert len(processes) == 1  # two sender processes in all: this one and a helper
    prestart.discard()
    deadline = time.monotonic() + 30
    for process in processes:
        # (The pool's own thread reaps it too: whichever waits first gets the status.)
        while process.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # Killed (mid-import: it takes a second), not ended after its imports.
        assert process.exitcode == -signal.SIGKILL
    assert prestart._pool is None
    assert prestart.take(1) is None


def test_a_large_send_takes_the_helpers_started_early(
    clean_prestart: object,
    make_project: ProjectFactory,
    store_engine: Engine,
    smtp_server: SmtpTestServer,
) -> None:
    project = email_project(make_project, smtp_server.url, batch_size=25)
    emails = add_subscribers(store_engine, 300)
    prestart.start_for(["send", "may-day"])
    early = prestart._pool
    assert early is not None
    taken: list[object] = []
    original = Helpers.start

    def start(self: Helpers) -> None:
        original(self)
        taken.append(self._executor)

    ctx = context(project, store_engine)
    try:
        Helpers.start = start  # type: ignore[method-assign]
        report = fire(ctx, may_day(project), processes=2)
    finally:
        Helpers.start = original  # type: ignore[method-assign]
        ctx.close()
    assert taken and all(executor is early for executor in taken)
    assert prestart._pool is None  # the send's now: nothing left to discard
    assert (report.result.sent, report.state) == (300, "done")
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}
    # The helper sent some of them, on its own connections.
    assert smtp_server.connections > 4


def test_a_sender_killed_while_it_imports_leaves_no_helper_behind(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    # The helper starts first thing, before any batch: it must watch its parent from then
    # on, or it waits for work forever and holds the killed command's output open.
    project = email_project(make_project)
    env = {
        **os.environ,
        "SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "SCHEDULER_CONFIG": str(project.path),
        "SCHEDULER_SENDER_PROCESSES": "2",
    }
    command = [sys.executable, "-m", "scheduler", "send", "may-day", "--occurrence", OCC, "--now"]
    sender = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)  # the helper is spawned in the command's first tenth of a second
    sender.send_signal(signal.SIGKILL)
    # Returns once every holder of the pipes is gone: the command and its helper.
    sender.communicate(timeout=60)
    assert sender.returncode == -signal.SIGKILL


def test_helpers_send_while_the_audience_is_still_being_added(
    monkeypatch: pytest.MonkeyPatch,
    make_project: ProjectFactory,
    store_engine: Engine,
    smtp_server: SmtpTestServer,
) -> None:
    # 1,200 recipients in batches of 25: the fan-out is three chunks of 500 ids, and the
    # batches the first ones complete go to the helper before the last is added.
    monkeypatch.setenv("SCHEDULER_SENDER_PROCESSES", "2")
    project = email_project(make_project, smtp_server.url, batch_size=25)
    emails = add_subscribers(store_engine, 1200)
    fanned_out = False
    during: list[tuple[str, int, int]] = []
    mark, submit = ledger.mark_fanned_out, Helpers.submit

    def mark_fanned_out(engine: Engine, occurrence_id: str) -> int:
        nonlocal fanned_out
        fanned_out = True
        return mark(engine, occurrence_id)

    def submit_recorded(
        self: Helpers, occurrence_id: str, channel: str, lo: int, hi: int
    ) -> object:
        if not fanned_out:
            during.append((channel, lo, hi))
        return submit(self, occurrence_id, channel, lo, hi)

    monkeypatch.setattr(ledger, "mark_fanned_out", mark_fanned_out)
    monkeypatch.setattr(Helpers, "submit", submit_recorded)
    ctx = context(project, store_engine)
    try:
        report = fire(ctx, may_day(project), processes=2)
    finally:
        ctx.close()
    assert during  # handed over before the fan-out ended
    assert len(set(during)) == len(during)
    assert (report.result.sent, report.state) == (1200, "done")
    assert report.batches == 1200 // 25
    assert smtp_server.count_by_recipient() == {e: 1 for e in emails}


def test_the_command_runs_with_its_imports_frozen_and_the_collector_on() -> None:
    """The imports run with the cycle collector off and end frozen (gc_pause.frozen_when_done);
    the command itself, a daemon perhaps, runs with the collector on. A process that had it
    off keeps it off."""
    script = """
import gc, json, sys
from scheduler.gc_pause import frozen_when_done
seen = {}
with frozen_when_done():
    seen["inside"] = gc.isenabled()
    kept = [[i] for i in range(1000)]
seen["after"] = gc.isenabled()
seen["frozen"] = gc.get_freeze_count()
gc.disable()
with frozen_when_done():
    pass
seen["stays_off"] = not gc.isenabled()
gc.enable()
gc.unfreeze()
import scheduler.cli
def command():
    seen["command_collects"] = gc.isenabled()
    seen["command_frozen"] = gc.get_freeze_count()
scheduler.cli.main = command
sys.argv = ["scheduler", "status"]
from scheduler import entry
entry.main()
print(json.dumps(seen))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["inside"] is False and seen["after"] is True
    assert seen["frozen"] >= 1000  # at least the lists made inside
    assert seen["stays_off"] is True
    assert seen["command_collects"] is True
    # Everything the command line's imports made (tens of thousands of objects) is frozen.
    assert seen["command_frozen"] > 50_000
