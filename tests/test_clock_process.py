"""The clock as real processes: `scheduler run` and two `scheduler clock`s with a worker,
killed with SIGKILL, restarted, and fed edits of campaigns.yaml."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cli_project
import pytest
from conftest import MINIMAL, ProjectFactory
from redis_queue import own_queue
from smtp_server import SmtpTestServer

REDIS_URL = os.environ.get("SCHEDULER_TEST_REDIS", "redis://127.0.0.1:6379/12")


def at(seconds: float) -> dt.datetime:
    """A whole second `seconds` from now, in UTC."""
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.replace(microsecond=0)


def campaigns(url: str, *steps: tuple[str, dt.datetime], catch_up: str = "1h") -> str:
    """A project with one one-off campaign per (id, instant), all emailing `members`."""
    text = MINIMAL.split("campaigns:")[0].replace('"file:outbox"', f'"{url}"')
    text = text.replace("timezone: Europe/Madrid", "timezone: UTC")
    text += "campaigns:\n"
    for cid, when in steps:
        text += (
            f"  {cid}:\n    name: {cid}\n    date: {when:%Y-%m-%d}\n"
            f'    time: "{when:%H:%M:%S}"\n    statement: may-day\n    audience: [members]\n'
            f"    catch_up: {catch_up}\n    steps:\n      statement:\n"
            "        channels: [email]\n        template: statement\n"
        )
    return text


@pytest.fixture
def project_env(make_project: ProjectFactory, tmp_path: Path) -> Callable[[str], dict[str, str]]:
    def make(text: str) -> dict[str, str]:
        return cli_project.project_env(make_project, tmp_path, text, os.environ)

    return make


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler", *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill9(proc)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def status(env: dict[str, str]) -> dict[str, dict[str, object]]:
    import json

    out = subprocess.run(
        [sys.executable, "-m", "scheduler", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {o["id"]: o for o in json.loads(out)["occurrences"]}


def test_run_sends_an_occurrence_once_at_its_instant(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    # Far enough ahead that a loaded CI machine has started the process (and listed the
    # occurrence as upcoming) before the instant: at 5 s it once started after it.
    when = at(15)
    env = project_env(campaigns(smtp_server.url, ("rapid", when)))
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: len(smtp_server.messages) >= 5, 30), log.read_text()
        first = min(m.received_at for m in smtp_server.messages)  # type: ignore[attr-defined]
        time.sleep(3)  # a few more sweeps: nothing fires again
    finally:
        stop(proc)
    assert smtp_server.count_by_recipient() == {f"m{i}@example.org": 1 for i in range(5)}
    assert first >= when.timestamp() - 0.05  # not before its instant
    rows = status(env)
    assert rows["rapid/" + str(when.year) + "/statement"]["state"] == "done"
    assert "next 1 occurrence, each with a timer" in log.read_text()
    assert "event=fired" in log.read_text()
    assert proc.returncode == 0  # SIGTERM is a clean stop


@pytest.mark.parametrize(("catch_up", "expected"), [("1h", "late"), ("0m", "missed")])
def test_killed_before_the_instant_and_restarted_after(
    project_env: Callable[[str], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    catch_up: str,
    expected: str,
) -> None:
    # The first clock runs while the instant is an hour away; once it is killed the instant
    # moves to just after the kill, so it passes while nothing runs however slowly a busy
    # machine started the process.
    env = project_env(campaigns(smtp_server.url, ("rapid", at(3600)), catch_up=catch_up))
    log = tmp_path / "run.log"
    first = start(["run", "--tick", "1"], env, log)
    assert wait_for(lambda: "event=start" in log.read_text(), 30), log.read_text()
    time.sleep(1.5)  # at least one sweep has recorded that the clock was alive
    kill9(first)
    when = at(2)
    Path(env["SCHEDULER_CONFIG"]).write_text(
        campaigns(smtp_server.url, ("rapid", when), catch_up=catch_up)
    )
    # Down over the instant, back more than ten seconds later (no longer "on time").
    time.sleep(max(0.0, when.timestamp() - time.time()) + 11)
    assert smtp_server.messages == []
    second = start(["run", "--tick", "1"], env, log)
    try:
        occ = f"rapid/{when.year}/statement"
        assert wait_for(
            lambda: occ in status(env) and status(env)[occ]["state"] in ("done", "missed"), 20
        ), log.read_text()
        time.sleep(2)
    finally:
        stop(second)
    row = status(env)[occ]
    if expected == "late":
        assert row["state"] == "done" and row["late"] is True
        assert "late" in str(row["note"])
        assert smtp_server.count_by_recipient() == {f"m{i}@example.org": 1 for i in range(5)}
    else:
        assert row["state"] == "missed"
        assert "outside the catch-up window" in str(row["note"])
        assert smtp_server.messages == []
        assert "event=missed" in log.read_text()


def test_a_broken_edit_is_refused_and_a_good_one_is_picked_up(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    first_at, second_at = at(9), at(16)
    env = project_env(campaigns(smtp_server.url, ("first", first_at)))
    path = Path(env["SCHEDULER_CONFIG"])
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    try:
        assert wait_for(lambda: "event=start" in log.read_text(), 20), log.read_text()
        good = path.read_text()
        # A shared structure broken: the whole file is refused, the old schedule kept.
        path.write_text(good.replace("  website: https://", "  website: ftp://"))
        assert wait_for(lambda: "event=reload_refused" in log.read_text(), 10), log.read_text()
        # The old schedule keeps firing.
        assert wait_for(lambda: len(smtp_server.messages) >= 5, 20), log.read_text()
        path.write_text(campaigns(smtp_server.url, ("first", first_at), ("second", second_at)))
        assert wait_for(lambda: "event=reloaded" in log.read_text(), 10), log.read_text()
        assert wait_for(lambda: len(smtp_server.messages) >= 10, 25), log.read_text()
    finally:
        stop(proc)
    assert "organization.website" in log.read_text()
    assert smtp_server.count_by_recipient() == {f"m{i}@example.org": 2 for i in range(5)}


def blocked_project(url: str, good_at: dt.datetime, broken_at: dt.datetime, catch_up: str) -> str:
    """`good` and `broken`, whose statement file does not exist."""
    text = campaigns(url, ("good", good_at), ("broken", broken_at), catch_up=catch_up)
    start = text.index("  broken:")
    return text[:start] + text[start:].replace("statement: may-day", "statement: late-text", 1)


def test_run_starts_with_a_blocked_campaign_fires_the_others_and_the_fixed_one_late(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    good_at, broken_at = at(6), at(6)
    env = project_env(blocked_project(smtp_server.url, good_at, broken_at, "1h"))
    statements = Path(env["SCHEDULER_CONFIG"]).parent / "statements"
    # And a bad row in the list's CSV: a warning, logged at the sync; it stops nothing.
    members = Path(env["SCHEDULER_CONFIG"]).parent / "members.csv"
    members.write_text("email\njoe.smith@example\n", encoding="utf-8")
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    broken = f"broken/{broken_at.year}/statement"
    try:
        assert wait_for(lambda: "event=start" in log.read_text(), 20), log.read_text()
        assert "event=blocked campaign=broken" in log.read_text()
        assert "late-text" in log.read_text()
        assert wait_for(lambda: len(smtp_server.messages) >= 5, 20), log.read_text()
        assert "event=list_rows_left_out list=members" in log.read_text()
        assert "count=1 lines=2" in log.read_text()
        # At its instant: said, and recorded with the reason instead of silently dropped.
        assert wait_for(lambda: f"event=blocked occurrence={broken}" in log.read_text(), 10)
        row = status(env)[broken]
        assert row["state"] == "blocked" and "blocked at its instant" in str(row["note"])
        assert "late-text" in str(row["blocked_reason"])
        shown = subprocess.run(
            [sys.executable, "-m", "scheduler", "status"], env=env, capture_output=True, text=True
        ).stdout
        assert "blocked campaign broken" in shown and "late-text" in shown
        # Fixed inside the catch-up window (and past "on time"): fired late, once.
        time.sleep(max(0.0, broken_at.timestamp() + 11 - time.time()))
        for lang in ("en", "es"):
            (statements / f"late-text.{lang}.md").write_text(
                (statements / f"may-day.{lang}.md").read_text()
            )
        assert wait_for(lambda: len(smtp_server.messages) >= 10, 25), log.read_text()
        assert wait_for(lambda: status(env)[broken]["state"] == "done", 10)
        time.sleep(2)
    finally:
        stop(proc)
    row = status(env)[broken]
    assert row["late"] is True and "late" in str(row["note"])
    assert status(env)[f"good/{good_at.year}/statement"]["late"] is False
    assert smtp_server.count_by_recipient() == {f"m{i}@example.org": 2 for i in range(5)}
    import json

    blocked = json.loads(
        subprocess.run(
            [sys.executable, "-m", "scheduler", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["blocked"]
    assert blocked == []  # the reload that took the fix cleared it


def test_a_campaign_still_blocked_after_its_window_is_recorded_missed_with_the_reason(
    project_env: Callable[[str], dict[str, str]], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    good_at, broken_at = at(5), at(5)
    env = project_env(blocked_project(smtp_server.url, good_at, broken_at, "0m"))
    log = tmp_path / "run.log"
    proc = start(["run", "--tick", "1"], env, log)
    broken = f"broken/{broken_at.year}/statement"
    try:
        assert wait_for(lambda: len(smtp_server.messages) >= 5, 20), log.read_text()
        assert wait_for(lambda: status(env).get(broken, {}).get("state") == "missed", 30), (
            log.read_text()
        )
    finally:
        stop(proc)
    note = str(status(env)[broken]["note"])
    assert "blocked" in note and "late-text" in note and "not fixed inside the catch-up" in note
    assert len(smtp_server.messages) == 5


@pytest.fixture
def queue() -> Iterator[tuple[str, str]]:
    """A Celery queue and a clock leader key of this test's own."""
    yield from own_queue(REDIS_URL)


def test_two_clocks_fire_once_and_the_survivor_takes_over(
    project_env: Callable[[str], dict[str, str]],
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    queue: tuple[str, str],
) -> None:
    name, key = queue
    first_at, second_at = at(8), at(20)
    env = project_env(campaigns(smtp_server.url, ("first", first_at), ("second", second_at)))
    env.update(SCHEDULER_BROKER_URL=REDIS_URL, SCHEDULER_QUEUE=name, SCHEDULER_LEADER_KEY=key)
    logs = [tmp_path / f"clock{i}.log" for i in (1, 2)]
    clocks = [start(["clock", "--tick", "1", "--leader-ttl", "3"], env, log) for log in logs]
    worker = start(["worker", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: len(smtp_server.messages) >= 5, 30), [
            p.read_text()[-2000:] for p in logs
        ]
        leaders = [i for i, log in enumerate(logs) if "event=enqueued" in log.read_text()]
        assert len(leaders) == 1, "exactly one clock fired the first occurrence"
        kill9(clocks[leaders[0]])
        assert wait_for(lambda: len(smtp_server.messages) >= 10, 40), [
            p.read_text()[-2000:] for p in logs
        ]
        survivor = logs[1 - leaders[0]].read_text()
        assert f"event=enqueued occurrence=second/{second_at.year}/statement" in survivor
    finally:
        for p in [*clocks, worker]:
            stop(p)
    assert smtp_server.count_by_recipient() == {f"m{i}@example.org": 2 for i in range(5)}
