"""How times, durations and counts are written for people: a local time always carries its
UTC offset (`09:00 +08:00`), never an abbreviation (`PST` in Manila reads as Pacific)."""

from __future__ import annotations

import datetime as dt

from dateutil.relativedelta import relativedelta


def offset(t: dt.datetime) -> str:
    """`+02:00`, `-04:00`, `+00:00`."""
    raw = t.strftime("%z") or "+0000"
    return f"{raw[:3]}:{raw[3:5]}"


def local_time(t: dt.datetime, *, seconds: bool = False, weekday: bool = False) -> str:
    """`2027-05-01 07:00 +02:00` (in the time's own zone)."""
    fmt = ("%a " if weekday else "") + "%Y-%m-%d %H:%M" + (":%S" if seconds else "")
    return f"{t.strftime(fmt)} {offset(t)}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 occurrence`, `2 occurrences`, `1,000 deliveries` (pass `many` when not +s)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def duration(start: dt.datetime, end: dt.datetime, *, parts: int = 2) -> str:
    """The calendar distance between two instants in its two largest units:
    `4 months 30 days`, `2 hours 5 minutes`, `less than a minute`."""
    if end < start:
        start, end = end, start
    delta = relativedelta(end, start)
    units = [
        (delta.years, "year"),
        (delta.months, "month"),
        (delta.days, "day"),
        (delta.hours, "hour"),
        (delta.minutes, "minute"),
    ]
    shown: list[str] = []
    for value, unit in units:
        if value or shown:
            if value:
                shown.append(plural(value, unit))
            if len(shown) == parts or (shown and not value):
                break
    return " ".join(shown) or "less than a minute"


def relative(t: dt.datetime, now: dt.datetime) -> str:
    """`in 3 minutes`, `2 days ago`."""
    text = duration(now, t)
    return f"in {text}" if t >= now else f"{text} ago"
