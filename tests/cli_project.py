"""A project for tests that run the scheduler's own processes: its campaigns.yaml, a SQLite
store of its own with five members (m0..m4@example.org), and the environment to run in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from conftest import ProjectFactory

from scheduler.audience.csvfile import SubscriberRow
from scheduler.store import import_rows, make_engine, migrate

MEMBERS = [f"m{i}@example.org" for i in range(5)]


def project_env(
    make_project: ProjectFactory, tmp_path: Path, text: str, env: Mapping[str, str]
) -> dict[str, str]:
    """`env` plus SCHEDULER_CONFIG and SCHEDULER_DATABASE_URL for a project made of `text`."""
    path = make_project(text, members_csv="email\n")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = make_engine(url)
    migrate(engine)
    rows = [
        SubscriberRow(email=e, name=f"M {i}", language="en", row=i + 2)
        for i, e in enumerate(MEMBERS)
    ]
    import_rows(engine, "members", rows, source="test")
    engine.dispose()
    return {**env, "SCHEDULER_CONFIG": str(path), "SCHEDULER_DATABASE_URL": url}
