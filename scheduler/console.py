"""What every command shares: the consoles, the global options, loading the project."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from scheduler.config.diagnostics import did_you_mean
from scheduler.config.project import Project
from scheduler.errors import ConfigError, Diagnostic
from scheduler.store.db import database_url, make_engine, migrate
from scheduler.validate import require_valid

# Piped output has no terminal width; 80 columns would cut occurrence ids in tables.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    config: str | None = None


state = State()


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


def print_diagnostics(error: ConfigError) -> NoReturn:
    for d in error.diagnostics:
        err.print(d.format(), markup=False)
    n = len(error.diagnostics)
    err.print(f"{n} problem{'s' if n != 1 else ''} found; nothing was sent.", markup=False)
    raise typer.Exit(1)


def valid_project(campaign: str | None = None) -> Project:
    """The project, or exit on a problem that stops every campaign.

    Warnings (bad list rows) are left to `validate`. A campaign blocked by its own problem
    stops only commands about it (`campaign`); the others say in one line that it is blocked.
    """
    try:
        project = require_valid(state.config)
    except ConfigError as e:
        print_diagnostics(e)
    if campaign is not None and campaign in project.blocked:
        blocked_exit(project, campaign)
    for cid, problems in project.blocked.items():
        if cid != campaign:
            err.print(f"note: {blocked_line(cid, problems)}", markup=False)
    return project


def blocked_line(campaign: str, problems: tuple[Diagnostic, ...]) -> str:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (
        f"campaign {campaign!r} is blocked and will not be sent until fixed: "
        f"{first.message}{more}; `scheduler validate` shows where"
    )


def blocked_exit(project: Project, campaign: str) -> NoReturn:
    problems = project.blocked[campaign]
    for d in dict.fromkeys(d.format() for d in problems):
        err.print(d, markup=False)
    fail(
        f"campaign {campaign!r} is blocked by {len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''} of its own; fix them, then try again. "
        "Nothing was sent."
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def store() -> Engine:
    """The store, migrated to the current schema."""
    engine = make_engine()
    migrate(engine)
    return engine


def safe_url() -> str:
    """The database URL without its credentials, for messages."""
    url = database_url()
    return url.split("@")[-1] if "@" in url else url


def known_campaign(project: Project, campaign: str) -> None:
    if campaign in project.blocked and campaign not in project.config.campaigns:
        blocked_exit(project, campaign)
    if campaign not in project.config.campaigns:
        fail(
            f"unknown campaign {campaign!r}; "
            + (
                did_you_mean(campaign, list(project.config.campaigns))
                or f"campaigns: {', '.join(project.config.campaigns)}"
            ),
            2,
        )
