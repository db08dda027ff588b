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
from scheduler.errors import ConfigError
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


def valid_project() -> Project:
    try:
        return require_valid(state.config)
    except ConfigError as e:
        print_diagnostics(e)


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
    if campaign not in project.config.campaigns:
        fail(
            f"unknown campaign {campaign!r}; "
            + (
                did_you_mean(campaign, list(project.config.campaigns))
                or f"campaigns: {', '.join(project.config.campaigns)}"
            ),
            2,
        )
