"""What `scheduler run` and `scheduler clock` say when they start, for the organizer who
just typed it: where email goes, which channels cannot send and what will happen to them,
and the occurrences the clock has set a timer for (the count its log line gives)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from scheduler.calendar import Occurrence
from scheduler.config import secrets
from scheduler.config.project import Project
from scheduler.delivery.readiness import not_ready_reason, unset_variables
from scheduler.errors import SchedulerError
from scheduler.mail.urls import file_directory, parse_smtp_url
from scheduler.timefmt import local_time, plural

SHOWN = 20


def email_destination(project: Project, channel: str) -> str:
    """`.eml files in /abs/outbox (no mail server)` or `SMTP server smtp://user@host:587`,
    never a password."""
    raw = str((project.config.channels[channel].model_extra or {}).get("url", ""))
    try:
        url = secrets.resolve(raw) if secrets.is_reference(raw) else raw
        if url.startswith("file:"):
            folder = Path(file_directory(url))
            if not folder.is_absolute():
                folder = project.base_dir / folder
            return f".eml files in {folder} (no mail server)"
        endpoint = parse_smtp_url(raw)
    except SchedulerError:
        return f"SMTP server {secrets.redact(raw)} (not readable now)"
    return f"SMTP server {endpoint.display()}"


def startup_lines(
    project: Project, scheduled: Sequence[Occurrence], now: dt.datetime, *, mode: str
) -> list[str]:
    config = project.config
    used = [
        c
        for c in config.channels
        if any(c in s.channels for x in config.campaigns.values() for s in x.steps.values())
    ]
    lines: list[str] = []
    for channel in used:
        if config.channels[channel].type == "smtp":
            lines.append(f"{channel} (smtp): email goes to {email_destination(project, channel)}")
    not_ready = {c: unset_variables(config, c) for c in used}
    not_ready = {c: v for c, v in not_ready.items() if v}
    if not_ready:
        coming = [o for o in scheduled if set(o.channels) & set(not_ready)]
        first = f" (first: {coming[0].id} at {local_time(coming[0].local)})" if coming else ""
        where = "this process" if mode == "embedded" else "the workers"
        names = sorted({v for vs in not_ready.values() for v in vs})
        lines.append(
            "not ready: "
            + "; ".join(f"{c} ({not_ready_reason(v)})" for c, v in not_ready.items())
            + f". At their instant their deliveries are recorded failed with that reason{first}."
            f" Export {', '.join(names)} for {where} and restart before then; "
            "`scheduler retry` sends failed deliveries again later."
        )
    shown = list(scheduled[:SHOWN])
    lines.append(
        f"next {plural(len(scheduled), 'occurrence')}, each with a timer"
        + (f" ({len(shown)} shown)" if len(shown) < len(scheduled) else "")
        + ":"
    )
    for o in shown:
        lines.append(f"  {local_time(o.local):<24} {o.id}  → {', '.join(o.channels)}")
    if not scheduled:
        lines.append("  none: `scheduler calendar` shows the year")
    return lines
