"""`scheduler review`, `scheduler approve` and `scheduler send` of a reviewed occurrence,
through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import MINIMAL, ProjectFactory
from test_accounts import subprocess_input
from test_cli import run

from scheduler.accounts import store as accounts
from scheduler.store.db import make_engine, migrate
from scheduler.store.schema import Role

PASSWORD = "a long enough passphrase"
OCC = "may-day/2030/statement"
REVIEWED = MINIMAL.replace(
    "    audience: [members]\n", "    audience: [members]\n    review: required\n"
).replace("channels: [email, mastodon]", "channels: [email]")


def test_review_approve_and_send(make_project: ProjectFactory, tmp_path: Path) -> None:
    path = make_project(REVIEWED)
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    migrate(engine)
    for email, role in (("ana@example.org", Role.APPROVER), ("org@example.org", Role.ORGANIZER)):
        accounts.set_password(engine, accounts.add(engine, email, role).id, PASSWORD)
    engine.dispose()
    cwd = path.parent

    refused = run("send", "may-day", "--occurrence", OCC, cwd=cwd, env=env)
    assert refused.returncode == 1
    assert "needs review before it is sent: waiting for 1 approval(s)" in refused.stderr
    assert not (cwd / "outbox").exists() or not list((cwd / "outbox").iterdir())
    shown = run("review", OCC, cwd=cwd, env=env)
    assert "review required (1 approver(s)); needs 1 more approval(s)" in shown.stdout

    wrong = subprocess_input(["approve", OCC, "--as", "ana@example.org"], "nope\n", cwd, env)
    assert wrong.returncode == 1 and "wrong address or password" in wrong.stderr
    organizer = subprocess_input(
        ["approve", OCC, "--as", "org@example.org"], PASSWORD + "\n", cwd, env
    )
    assert organizer.returncode == 1 and "needs the approver role" in organizer.stderr
    approved = subprocess_input(
        ["approve", OCC, "--as", "ana@example.org"], PASSWORD + "\n", cwd, env
    )
    assert approved.returncode == 0, approved.stderr
    assert json.loads(run("review", OCC, "--json", cwd=cwd, env=env).stdout)["approved"] is True

    statement = cwd / "statements" / "may-day.en.md"
    statement.write_text(statement.read_text().replace("May Day", "Labour Day", 1))
    data = json.loads(run("review", OCC, "--json", cwd=cwd, env=env).stdout)
    assert data["approved"] is False and data["voided"][0]["approver"] == "ana@example.org"
    assert "+" in data["diff"] and "Labour Day" in data["diff"]
    text = run("review", OCC, cwd=cwd, env=env).stdout
    assert "voided: approval by ana@example.org" in text and "changes since that approval" in text
    assert run("send", "may-day", "--occurrence", OCC, cwd=cwd, env=env).returncode == 1

    subprocess_input(["approve", OCC, "--as", "ana@example.org"], PASSWORD + "\n", cwd, env)
    sent = run("send", "may-day", "--occurrence", OCC, "--now", cwd=cwd, env=env)
    assert sent.returncode == 0, sent.stderr
    log = json.loads(run("audit", "--json", cwd=cwd, env=env).stdout)
    assert [e["action"] for e in log].count("occurrence.approve") == 2


def test_review_shows_a_changed_image(make_project: ProjectFactory, tmp_path: Path) -> None:
    from PIL import Image

    from scheduler import calendar
    from scheduler.actions import Actor
    from scheduler.config.project import load_project
    from scheduler.review import approvals

    path = make_project(REVIEWED)
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    migrate(engine)
    ana = accounts.add(engine, "ana@example.org", Role.APPROVER)
    project = load_project(path)
    occ = calendar.occurrence(project.config, OCC)
    approvals.approve(project, engine, occ, ana, Actor(ana.email))
    engine.dispose()
    Image.new("RGB", (1200, 630), "purple").save(path.parent / "statements/images/may-day.png")
    shown = run("review", OCC, cwd=path.parent, env=env)
    assert "voided: approval by ana@example.org" in shown.stdout
    changed = [line for line in shown.stdout.splitlines() if "image images/may-day.png" in line]
    assert any(line.lstrip().startswith("+") for line in changed), shown.stdout
    assert any(line.lstrip().startswith("-") for line in changed), shown.stdout
