"""The audit log: every action, who did it, when and from where."""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.store.db import writer
from scheduler.store.schema import audit_log, utcnow

L = audit_log.c


@dataclass(frozen=True, slots=True)
class Entry:
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    origin: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "origin": self.origin,
        }


def cli_actor() -> str:
    """Who runs a CLI command: the operating-system user (the CLI has no sign-in)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


def record(
    engine: Engine,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    origin: str = "cli",
) -> None:
    with writer(engine).begin() as conn:
        conn.execute(
            sa.insert(audit_log).values(
                at=utcnow(),
                actor=actor,
                action=action,
                target=target,
                detail=detail,
                origin=origin[:64],
            )
        )


def entries(engine: Engine, limit: int = 100) -> list[Entry]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(L.id.desc()).limit(limit))
        return [Entry(r.at, r.actor, r.action, r.target, r.detail, r.origin) for r in rows]
