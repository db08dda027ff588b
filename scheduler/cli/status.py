"""`status`: occurrences, delivery counts and failures from the store."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import Engine

from scheduler.console import out, print_json, safe_url, store
from scheduler.delivery import ledger
from scheduler.store import problems

# --- status --------------------------------------------------------------------------------


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="how many occurrences")] = 20,
) -> None:
    """Occurrences with their delivery counts per channel, and why deliveries failed."""
    engine = store()
    rows = ledger.list_occurrences(engine, limit=limit)
    all_counts = ledger.counts(engine)
    records: list[dict[str, Any]] = []
    for row in rows:
        records.append(
            {
                "id": row.id,
                "state": row.state,
                "instant": row.instant.isoformat(),
                "late": row.late,
                "note": row.note,
                "fired_at": row.fired_at,
                "finished_at": row.finished_at,
                "deliveries": all_counts.get(row.id, {}),
                "failures": [
                    {"channel": c, "reason": e, "count": n}
                    for c, e, n in ledger.failures(engine, row.id, limit=5)
                ],
            }
        )
    from scheduler.clock import state as clock_state

    paused = sorted(clock_state.paused(engine))
    seen = clock_state.last_seen(engine)
    found = problem_records(engine)
    if as_json:
        print_json(
            {
                "database": safe_url(),
                "paused": paused,
                "clock_last_seen": seen,
                **found,
                "occurrences": records,
            }
        )
        return
    if paused:
        out.print(f"paused campaigns: {', '.join(paused)}", markup=False)
    print_problems(found)
    if seen:
        out.print(f"clock last seen {seen:%Y-%m-%d %H:%M:%S} UTC", markup=False)
    if not records:
        out.print(
            "No occurrence has fired yet. `scheduler plan` shows what is coming.", markup=False
        )
        return
    table = Table(title="Occurrences", title_justify="left")
    for col in ("Occurrence", "State", "Instant (UTC)"):
        table.add_column(col, no_wrap=True)
    table.add_column("Deliveries")
    for rec in records:
        parts = []
        for ch, by_state in sorted(rec["deliveries"].items()):
            shown = " ".join(f"{s} {n:,}" for s, n in sorted(by_state.items()))
            parts.append(f"{ch}: {shown}")
        state_text = rec["state"] + (" (late)" if rec["late"] else "")
        if rec["note"] and rec["state"] in ("missed", "cancelled", "planned"):
            state_text += f"\n{rec['note']}"
        table.add_row(
            rec["id"], state_text, rec["instant"][:16].replace("T", " "), "\n".join(parts) or "—"
        )
    out.print(table)
    for rec in records:
        for f in rec["failures"]:
            out.print(f"{rec['id']} {f['channel']}: {f['count']:,} × {f['reason']}", markup=False)


def problem_records(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Blocked campaigns (as the clock last loaded the file) and list rows left out at the
    last sync, from the store."""
    rows = problems.current(engine)
    return {
        "blocked": [
            {"campaign": r.subject, "since": r.since, "count": r.count, "problems": r.detail}
            for r in rows
            if r.kind == problems.CAMPAIGN
        ],
        "list_problems": [
            {
                "list": r.subject,
                "file": r.file,
                "count": r.count,
                "lines": r.lines,
                "synced_at": r.updated_at,
                "problems": r.detail,
            }
            for r in rows
            if r.kind == problems.LIST
        ],
    }


def print_problems(found: dict[str, list[dict[str, Any]]]) -> None:
    for b in found["blocked"]:
        first = b["problems"][0] if b["problems"] else {}
        where = f"{first.get('file')}:{first.get('line')}: " if first.get("line") else ""
        out.print(
            f"blocked campaign {b['campaign']} (since {b['since']:%Y-%m-%d %H:%M} UTC): "
            f"{where}{first.get('message', '')}"
            + (f" (and {b['count'] - 1} more)" if b["count"] > 1 else "")
            + " — not sent until fixed; `scheduler validate` shows every problem",
            markup=False,
        )
    for p in found["list_problems"]:
        lines = ", ".join(str(n) for n in p["lines"][:5]) + (", ..." if p["count"] > 5 else "")
        out.print(
            f"list {p['list']}: {p['count']:,} row{'s' if p['count'] != 1 else ''} of "
            f"{p['file']} left out at the last sync ({p['synced_at']:%Y-%m-%d %H:%M} UTC), "
            f"line{'s' if p['count'] != 1 else ''} {lines}; `scheduler validate` says why",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
