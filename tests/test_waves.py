"""`deliver: local`: waves per subscriber zone — the pure wave instants with real zones and
DST, the policy, and the ledger (due_at, claims, catch-up per wave) on SQLite and PostgreSQL.
The real clock process is in test_waves_process.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import ProjectFactory
from delivery_helpers import context, email_project, may_day
from sqlalchemy.engine import Engine

from scheduler import calendar, waves
from scheduler.audience.csvfile import SubscriberRow
from scheduler.clock.policy import Action, LocalWaves, decide
from scheduler.config.project import load_project
from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.store.subscribers import import_rows

FIVE = [
    "Pacific/Kiritimati",
    "Asia/Manila",
    "Europe/Madrid",
    "America/Chicago",
    "Pacific/Pago_Pago",
]
UTC = dt.UTC


def local_occurrence(wall: dt.datetime, zone: str = "America/Chicago") -> calendar.Occurrence:
    instant = wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return calendar.Occurrence(
        id="may-day/2027/statement",
        campaign_id="may-day",
        step_id="statement",
        anchor=wall.date(),
        local=wall.replace(tzinfo=ZoneInfo(zone)),
        instant=instant,
        timezone=zone,
        channels=("email",),
        template="statement",
        wall=wall,
        deliver_local=True,
    )


def z(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_waves_go_zone_by_zone_earliest_first() -> None:
    occ = local_occurrence(dt.datetime(2027, 5, 1, 9, 0))
    found = waves.waves(occ, {zone: 2 for zone in reversed(FIVE)} | {None: 3})
    assert [(w.instant, w.zones, w.size) for w in found] == [
        (z(2027, 4, 30, 19), ("Pacific/Kiritimati",), 2),  # UTC+14
        (z(2027, 5, 1, 1), ("Asia/Manila",), 2),  # UTC+8
        (z(2027, 5, 1, 7), ("Europe/Madrid",), 2),  # CEST, UTC+2
        (z(2027, 5, 1, 14), ("America/Chicago",), 5),  # CDT; no zone: the campaign's
        (z(2027, 5, 1, 20), ("Pacific/Pago_Pago",), 2),  # UTC-11
    ]
    assert found[0].local().isoformat() == "2027-05-01T09:00:00+14:00"
    assert found[0].as_json()["instant"] == "2027-04-30T19:00:00Z"


def test_zones_with_the_same_offset_share_a_wave() -> None:
    occ = local_occurrence(dt.datetime(2027, 12, 18, 10, 0))
    found = waves.waves(occ, {"Asia/Manila": 3, "Asia/Hong_Kong": 4, "Asia/Tokyo": 0})
    assert [(w.zones, w.size) for w in found] == [(("Asia/Hong_Kong", "Asia/Manila"), 7)]


def test_dst_rules_apply_per_zone() -> None:
    # 14 March 2027: Chicago springs forward at 02:00; Madrid is still on CET until 28 March.
    gap = local_occurrence(dt.datetime(2027, 3, 14, 2, 30), zone="Europe/Madrid")
    found = {w.zones[0]: w for w in waves.waves(gap, {"America/Chicago": 1, None: 1})}
    assert found["America/Chicago"].instant == z(2027, 3, 14, 8, 30)  # moved to 03:30 CDT
    assert "DST gap" in (found["America/Chicago"].note or "")
    assert (
        found["Europe/Madrid"].instant == z(2027, 3, 14, 1, 30) and not found["Europe/Madrid"].note
    )
    # 7 November 2027: 01:30 happens twice in Chicago; the first (CDT) is used.
    fold = local_occurrence(dt.datetime(2027, 11, 7, 1, 30), zone="Europe/Madrid")
    (chicago,) = waves.waves(fold, {"America/Chicago": 1})
    assert chicago.instant == z(2027, 11, 7, 6, 30) and "DST fold" in (chicago.note or "")


def test_a_step_not_local_is_one_wave_at_its_instant() -> None:
    occ = dataclasses.replace(local_occurrence(dt.datetime(2027, 5, 1, 9)), deliver_local=False)
    assert [(w.instant, w.size) for w in waves.waves(occ, {"Asia/Manila": 2, None: 1})] == [
        (occ.instant, 3)
    ]
    assert waves.zone_instant(occ, "Asia/Manila") == (occ.instant, None)


def test_deliver_local_is_read_from_campaigns_yaml(make_project: ProjectFactory) -> None:
    project = email_project(make_project)
    assert not may_day(project).deliver_local
    text = project.path.read_text().replace(
        "template: statement", "template: statement\n        deliver: local"
    )
    project.path.write_text(text)
    occ = may_day(load_project(project.path))
    assert occ.deliver_local and occ.wall == dt.datetime(2030, 5, 1, 9, 0)


def test_policy_fires_from_the_first_wave_and_then_each_due_wave(
    make_project: ProjectFactory,
) -> None:
    config = email_project(make_project).config  # may-day: catch_up 6h by default
    occ = local_occurrence(dt.datetime(2027, 5, 1, 9, 0))
    instants = tuple(w.instant for w in waves.waves(occ, {zone: 1 for zone in FIVE}))
    lw = {occ.id: LocalWaves(instants)}
    before = decide(config, [occ], {}, set(), instants[0] - dt.timedelta(seconds=1), local=lw)
    assert before == []
    (first,) = decide(config, [occ], {}, set(), instants[0], local=lw)
    assert first.action is Action.FIRE  # at Kiritimati's 09:00, hours before Chicago's
    # Down for 10 hours after the first wave: later waves are inside their windows.
    (late,) = decide(config, [occ], {}, set(), instants[0] + dt.timedelta(hours=10), local=lw)
    assert late.action is Action.LATE
    assert "10.0 h late (due 2027-04-30 19:00 UTC, its first wave)" in (late.note or "")
    # Every wave more than the window ago: missed.
    gone = instants[-1] + dt.timedelta(hours=7)
    (missed,) = decide(config, [occ], {}, set(), gone, local=lw)
    assert missed.action is Action.MISSED
    # Claimed: a wave due that nobody sends is fired; none due, nothing to do.
    now = instants[2] + dt.timedelta(seconds=2)
    row = ledger.OccurrenceRow(
        occ.id, "may-day", "statement", occ.instant, "firing", False, None, 5,
        instants[0], instants[0], None, now - dt.timedelta(seconds=1),
    )  # fmt: skip
    due = {occ.id: LocalWaves(instants, open_due=instants[2])}
    (wave,) = decide(config, [occ], {occ.id: row}, set(), now, local=due)
    assert wave.action is Action.WAVE and wave.note is None
    assert decide(config, [occ], {occ.id: row}, {"may-day"}, now, local=due)[0].action is (
        Action.WAIT
    )
    assert decide(config, [occ], {occ.id: row}, set(), now, local=lw) == []


def _people(engine: Engine) -> dict[str, str | None]:
    zones: dict[str, str | None] = {
        f"{(zone or 'none').split('/')[-1].lower()}{i}@example.org": zone
        for zone in [*FIVE, None]
        for i in range(2)
    }
    rows = [
        SubscriberRow(email=e, name=None, language="en", timezone=zone, row=n + 2)
        for n, (e, zone) in enumerate(zones.items())
    ]
    import_rows(engine, "members", rows, source="test")
    return zones


def test_fire_sends_the_due_waves_and_leaves_later_ones_for_their_instant(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = email_project(make_project, extra=", connections: 1")
    _people(store_engine)
    # Chicago's (and the zone-less') wave an hour from now: Kiritimati's was 19 hours ago,
    # Manila's 13, Madrid's about 6; Pago Pago's is 6 hours on. catch_up 16h: Kiritimati's
    # wave is missed, Manila's and Madrid's go out late.
    now = dt.datetime.now(UTC)
    wall = (now + dt.timedelta(hours=1)).astimezone(ZoneInfo("America/Chicago"))
    occ = local_occurrence(wall.replace(tzinfo=None, microsecond=0))
    text = project.path.read_text().replace(
        "audience: [members]", "audience: [members]\n    catch_up: 16h"
    )
    project.path.write_text(text)
    ctx = context(load_project(project.path), store_engine)
    report = fire(ctx, occ)
    assert (report.result.sent, report.skipped_waves, report.state) == (4, 2, "firing")
    by_wave = ledger.wave_counts(store_engine, [occ.id])[occ.id]
    assert [(w.zones, w.states) for w in by_wave] == [
        (("Pacific/Kiritimati",), {"skipped": 2}),
        (("Asia/Manila",), {"sent": 2}),
        (("Europe/Madrid",), {"sent": 2}),
        (("America/Chicago",), {"pending": 4}),
        (("Pacific/Pago_Pago",), {"pending": 2}),
    ]
    # Again: nothing doubles, nothing later goes early.
    again = fire(ctx, occ)
    assert (again.result.sent, again.new_rows, again.state) == (0, 0, "firing")
    assert ledger.open_waves(store_engine, [occ.id], dt.datetime.now(UTC)) == {}
    later = now + dt.timedelta(hours=1, minutes=1)
    assert ledger.open_waves(store_engine, [occ.id], later) == {occ.id: by_wave[3].due_at}
    bounds = ledger.id_range(store_engine, occ.id, "email")
    assert bounds is not None
    claimed = ledger.claim_batch(
        store_engine, occ.id, "email", bounds[0], bounds[1] + 1,
        lease=dt.timedelta(minutes=1), now=later,
    )  # fmt: skip
    assert len(claimed) == 4  # Chicago's wave only, each once
    recipients = {d.recipient for d in claimed}
    assert ledger.claim_batch(
        store_engine, occ.id, "email", bounds[0], bounds[1] + 1,
        lease=dt.timedelta(minutes=1), now=later,
    ) == []  # fmt: skip
    assert len(recipients) == 4
    ctx.close()


LOCAL_CSV = (
    "email,language,timezone\n"
    "k@example.org,en,Pacific/Kiritimati\n"
    "m@example.org,en,Asia/Manila\n"
    "h@example.org,en,Asia/Hong_Kong\n"
    "c@example.org,en,America/Chicago\n"
    "n@example.org,en,\n"
    "x@example.org,en,Mars/Olympus_Mons\n"
)


def test_plan_and_calendar_json_show_the_waves(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    from conftest import MINIMAL
    from test_cli import run

    text = MINIMAL.replace("channels: [email, mastodon]", "channels: [email]").replace(
        "template: statement", "template: statement\n        deliver: local"
    )
    path = make_project(text, members_csv=LOCAL_CSV)
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    result = run("calendar", "--from", "2027-04-29", "--to", "2027-05-02", "--json",
                 cwd=path.parent, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["deliver"] == "local"
    # The unknown zone is a bad row, left out (a warning of `validate`); no zone: Madrid's.
    assert [(w["instant"], w["zones"], w["size"]) for w in record["waves"]] == [
        ("2027-04-30T19:00:00Z", ["Pacific/Kiritimati"], 1),
        ("2027-05-01T01:00:00Z", ["Asia/Hong_Kong", "Asia/Manila"], 2),
        ("2027-05-01T07:00:00Z", ["Europe/Madrid"], 1),
        ("2027-05-01T14:00:00Z", ["America/Chicago"], 1),
    ]
    assert record["waves"][0]["local"] == "2027-05-01T09:00:00+14:00"
    plan = run("plan", "--days", "3660", "--json", cwd=path.parent, env=env)
    assert plan.returncode == 0, plan.stderr
    first = next(r for r in json.loads(plan.stdout) if r["deliver"] == "local")
    assert [w["size"] for w in first["waves"]] == [1, 2, 1, 1]
    shown = run("plan", "--days", "3660", cwd=path.parent, env=env)
    assert "wave" in shown.stdout and "Pacific/Kiritimati" in shown.stdout
    warned = run("validate", cwd=path.parent, env=env)
    assert "Mars/Olympus_Mons" in warned.stdout + warned.stderr


def test_the_dashboard_shows_each_wave(make_project: ProjectFactory, store_engine: Engine) -> None:
    import re

    from web_helpers import DASHBOARD_TOKEN, page, web_app, web_project

    project = web_project(make_project)
    _people(store_engine)
    now = dt.datetime.now(UTC)
    wall = (now + dt.timedelta(hours=2)).astimezone(ZoneInfo("America/Chicago"))
    occ = local_occurrence(wall.replace(tzinfo=None, microsecond=0))
    # catch_up 6h: Kiritimati's (18 h ago) and Manila's (12 h) waves are skipped, Madrid's
    # (5 h) goes out late, Chicago's (and the zone-less) and Pago Pago's wait.
    fire(context(project, store_engine), occ)
    client = web_app(project, store_engine).test_client()
    html = page(client, "/dashboard", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    rows = [r.split("</tr>")[0] for r in " ".join(html.split()).split('<tr class="wave">')[1:]]
    cells = [
        (re.findall(r"<small>([^<]+)</small>", row)[0], re.findall(r'class="num[^"]*">(\d+)<', row))
        for row in rows
    ]
    # zone, then sent, failed, pending, skipped
    assert cells == [
        ("Pacific/Kiritimati", ["0", "0", "0", "2"]),
        ("Asia/Manila", ["0", "0", "0", "2"]),
        ("Europe/Madrid", ["2", "0", "0", "0"]),
        ("America/Chicago", ["0", "0", "4", "0"]),
        ("Pacific/Pago_Pago", ["0", "0", "2", "0"]),
    ]
