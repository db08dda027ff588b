"""Occurrences as an iCalendar feed, for organizers to subscribe to in their calendar app."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from urllib.parse import urlsplit

from icalendar import Calendar, Event

from scheduler.calendar import Occurrence
from scheduler.config.model import Config

PRODID = "-//campaign-scheduler//calendar//EN"
# Posts and mailings are instants, but a zero-length event is easy to miss in a calendar view.
EVENT_LENGTH = dt.timedelta(minutes=30)


def _summary(config: Config, occ: Occurrence) -> str:
    campaign = config.campaigns.get(occ.campaign_id)
    name = campaign.name if campaign is not None else occ.campaign_id
    return f"{name} — {occ.step_id} ({', '.join(occ.channels)})"


def _description(occ: Occurrence) -> str:
    lines = [
        f"Channels: {', '.join(occ.channels)}",
        f"Template: {occ.template}",
        f"Local time: {occ.local:%Y-%m-%d %H:%M} {occ.local.tzname()} ({occ.timezone})",
        f"Occurrence: {occ.id}",
    ]
    if occ.note:
        lines.append(f"Note: {occ.note}")
    return "\n".join(lines)


def to_ics(
    config: Config, occurrences: Sequence[Occurrence], *, now: dt.datetime | None = None
) -> bytes:
    """One VEVENT per occurrence. UIDs come from occurrence ids, so re-exporting the same
    schedule updates events in a subscribed calendar instead of duplicating them."""
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    host = urlsplit(config.organization.website).hostname or "localhost"

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", config.organization.display_name())
    for occ in occurrences:
        start = occ.instant.astimezone(dt.UTC)
        event = Event()
        event.add("uid", f"{occ.id}@{host}")
        event.add("dtstamp", stamp)
        event.add("dtstart", start)
        event.add("dtend", start + EVENT_LENGTH)
        event.add("summary", _summary(config, occ))
        event.add("description", _description(occ))
        event.add("categories", [occ.campaign_id])
        cal.add_component(event)
    data: bytes = cal.to_ical()
    return data
