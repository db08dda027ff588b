"""Organizer accounts: argon2 hashes, one-time password links, the lockout, roles and chapters,
the audit log, and the `users` / `audit` commands through the real entry point."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ProjectFactory
from sqlalchemy.engine import Engine
from test_cli import run

from scheduler.accounts import audit, lockout, passwords, scope
from scheduler.accounts import store as accounts
from scheduler.config.project import load_project
from scheduler.errors import AccountError, NotAllowedError
from scheduler.store.db import make_engine, migrate
from scheduler.store.schema import Role

PASSWORD = "a long enough passphrase"


def test_passwords_are_argon2id_and_checked(store_engine: Engine) -> None:
    account = accounts.add(store_engine, "Ana@Example.org", Role.ORGANIZER)
    assert not account.has_password
    accounts.set_password(store_engine, account.id, PASSWORD)
    found, hashed = accounts.password_hash_of(store_engine, "ana@example.org")
    assert found is not None and found.has_password and found.email == "Ana@Example.org"
    assert hashed is not None and hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, PASSWORD)
    assert not passwords.verify(hashed, PASSWORD + "x")
    assert not passwords.verify(None, PASSWORD)  # an unknown address never signs in
    with pytest.raises(AccountError, match="at least 12"):
        accounts.set_password(store_engine, account.id, "short")
    with pytest.raises(AccountError, match="already has an account"):
        accounts.add(store_engine, "ana@EXAMPLE.org", Role.VIEWER)


def test_a_password_change_ends_older_sessions(store_engine: Engine) -> None:
    account = accounts.add(store_engine, "bo@example.org", Role.VIEWER)
    accounts.set_password(store_engine, account.id, PASSWORD)
    before = accounts.by_id(store_engine, account.id)
    accounts.set_password(store_engine, account.id, PASSWORD + " two")
    after = accounts.by_id(store_engine, account.id)
    assert before is not None and after is not None
    assert after.session_version == before.session_version + 1


def test_a_password_link_works_once_and_expires(store_engine: Engine) -> None:
    account = accounts.add(store_engine, "cy@example.org", Role.APPROVER)
    token = accounts.issue_link(store_engine, account.id)
    assert accounts.link_account(store_engine, token) == account
    with pytest.raises(AccountError, match="at least 12"):
        accounts.use_link(store_engine, token, "short")  # a weak password does not spend it
    accounts.use_link(store_engine, token, PASSWORD)
    with pytest.raises(AccountError, match="used already or has expired"):
        accounts.use_link(store_engine, token, PASSWORD)
    assert accounts.link_account(store_engine, token) is None
    old = accounts.issue_link(store_engine, account.id, now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert accounts.link_account(store_engine, old) is None
    with pytest.raises(AccountError):
        accounts.use_link(store_engine, old, PASSWORD)
    assert accounts.link_account(store_engine, "made-up") is None


def test_the_lockout_is_per_client(store_engine: Engine) -> None:
    for _ in range(lockout.MAX_FAILURES):
        assert not lockout.locked(store_engine, "dee@example.org", "203.0.113.9")
        lockout.failed(store_engine, "dee@example.org", "203.0.113.9")
    assert lockout.locked(store_engine, "DEE@example.org", "203.0.113.9")
    # The organizer herself, from her own address, is not locked out by a stranger.
    assert not lockout.locked(store_engine, "dee@example.org", "198.51.100.7")
    later = dt.datetime.now(dt.UTC) + lockout.WINDOW + dt.timedelta(seconds=1)
    assert not lockout.locked(store_engine, "dee@example.org", "203.0.113.9", now=later)
    lockout.succeeded(store_engine, "dee@example.org", "203.0.113.9")
    assert not lockout.locked(store_engine, "dee@example.org", "203.0.113.9")


def test_roles_and_chapters(make_project: ProjectFactory, store_engine: Engine) -> None:
    config = load_project(make_project()).config
    viewer = accounts.add(store_engine, "v@example.org", Role.VIEWER)
    organizer = accounts.add(store_engine, "o@example.org", Role.ORGANIZER)
    approver = accounts.add(store_engine, "a@example.org", Role.APPROVER)
    chapter = accounts.add(store_engine, "c@example.org", Role.APPROVER, chapter="madrid")
    with pytest.raises(NotAllowedError, match="sign in"):
        scope.require(None, config, "may-day")
    with pytest.raises(NotAllowedError, match="is a viewer"):
        scope.require(viewer, config, "may-day")
    assert scope.require(organizer, config, "may-day") == organizer
    with pytest.raises(NotAllowedError, match="needs the approver role"):
        scope.require(organizer, config, "may-day", approve=True)
    assert scope.require(approver, config, "may-day", approve=True) == approver
    # may-day is the alliance's: a chapter's approver may not act on it.
    with pytest.raises(NotAllowedError, match="chapter 'madrid'"):
        scope.require(chapter, config, "may-day", approve=True)
    # Once a campaign names its chapter (the chapters work adds it), that chapter's accounts
    # act on it and the alliance's still do.
    chaptered = SimpleNamespace(campaigns={"may-day": SimpleNamespace(chapter="madrid")})
    assert scope.may_act_on(chapter, chaptered, "may-day")  # type: ignore[arg-type]
    assert scope.may_act_on(approver, chaptered, "may-day")  # type: ignore[arg-type]
    other = SimpleNamespace(campaigns={"may-day": SimpleNamespace(chapter="lyon")})
    assert not scope.may_act_on(chapter, other, "may-day")  # type: ignore[arg-type]


def test_audit_log(store_engine: Engine) -> None:
    audit.record(
        store_engine,
        actor="ana@example.org",
        action="campaign.pause",
        target="may-day",
        origin="192.0.2.1",
    )
    audit.record(store_engine, actor="cli:ops", action="occurrence.cancel", target="x/2030/s")
    newest, older = audit.entries(store_engine)[:2]
    assert (newest.actor, newest.action, newest.origin) == ("cli:ops", "occurrence.cancel", "cli")
    assert (older.actor, older.target, older.origin) == ("ana@example.org", "may-day", "192.0.2.1")
    assert newest.at >= older.at


def test_users_commands(make_project: ProjectFactory, tmp_path: Path) -> None:
    path = make_project()
    env = {"SCHEDULER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    added = run("users", "add", "ana@example.org", "--role", "approver", cwd=path.parent, env=env)
    assert added.returncode == 0, added.stderr
    assert "approver account added" in added.stdout
    link = added.stdout.strip().splitlines()[-1]
    assert link.startswith("http://localhost:8000/dashboard/password/")
    token = link.rsplit("/", 1)[1]
    engine = make_engine(env["SCHEDULER_DATABASE_URL"])
    migrate(engine)
    assert accounts.link_account(engine, token) is not None
    prompted = subprocess_input(
        [
            "users",
            "add",
            "bo@example.org",
            "--role",
            "organizer",
            "--chapter",
            "madrid",
            "--prompt",
        ],
        f"{PASSWORD}\n{PASSWORD}\n",
        path.parent,
        env,
    )
    assert prompted.returncode == 0, prompted.stderr
    assert PASSWORD not in prompted.stdout
    bad = run("users", "add", "cy@example.org", "--role", "boss", cwd=path.parent, env=env)
    assert bad.returncode == 2 and "unknown role 'boss'" in bad.stderr
    listed = json.loads(run("users", "list", "--json", cwd=path.parent, env=env).stdout)
    assert [(a["email"], a["role"], a["chapter"], a["password_set"]) for a in listed] == [
        ("ana@example.org", "approver", None, False),
        ("bo@example.org", "organizer", "madrid", True),
    ]
    removed = run("users", "remove", "ana@example.org", cwd=path.parent, env=env)
    assert removed.returncode == 0 and accounts.get(engine, "ana@example.org") is None
    assert run("users", "remove", "ana@example.org", cwd=path.parent, env=env).returncode == 2
    log = json.loads(run("audit", "--json", cwd=path.parent, env=env).stdout)
    assert [e["action"] for e in log] == ["account.remove", "account.add", "account.add"]
    assert log[0]["target"] == "ana@example.org" and log[0]["actor"].startswith("cli")
    engine.dispose()


def subprocess_input(
    args: list[str], stdin: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
