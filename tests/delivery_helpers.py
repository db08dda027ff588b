"""Building blocks for delivery tests: a project, subscribers in a store, a context."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from conftest import MINIMAL, ProjectFactory
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.audience.csvfile import SubscriberRow
from scheduler.config.project import Project, load_project
from scheduler.delivery.context import DeliveryContext, RetryPolicy
from scheduler.store.subscribers import import_rows

# Email only: posting is another issue's work, and would show up here as failures.
EMAIL_ONLY = MINIMAL.replace("channels: [email, mastodon]", "channels: [email]")


def email_project(
    make_project: ProjectFactory,
    url: str = "file:outbox",
    *,
    batch_size: int = 250,
    extra: str = "",
) -> Project:
    text = EMAIL_ONLY.replace('url: "file:outbox"', f'url: "{url}"{extra}')
    text += f"settings:\n  batch_size: {batch_size}\n"
    path = make_project(text, members_csv="email\n")
    return load_project(path)


def add_subscribers(
    engine: Engine,
    n: int,
    *,
    list_name: str = "members",
    start: int = 0,
    domain: str = "example.org",
) -> list[str]:
    rows = [
        SubscriberRow(
            email=f"person{i}@{domain}",
            name=f"Person {i}",
            language="es" if i % 3 == 0 else "en",
            row=i + 2,
        )
        for i in range(start, start + n)
    ]
    import_rows(engine, list_name, rows, source="test")
    return [r.email for r in rows]


def context(project: Project, engine: Engine, **kwargs: object) -> DeliveryContext:
    retry = RetryPolicy(base_seconds=0.01, cap_seconds=0.05)
    return DeliveryContext(project, engine, retry=retry, **kwargs)  # type: ignore[arg-type]


def may_day(project: Project, year: int = 2030) -> calendar.Occurrence:
    return calendar.occurrence(project.config, f"may-day/{year}/statement")


def outbox(project: Project) -> list[Path]:
    return sorted((project.base_dir / "outbox").glob("*.eml"))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]
