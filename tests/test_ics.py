"""The iCalendar export: parses back, one event per occurrence, stable UIDs, UTC times."""

from __future__ import annotations

import datetime as dt

from icalendar import Calendar, Component, Event

from scheduler.calendar import Occurrence, expand
from scheduler.config.model import Config
from scheduler.ics import to_ics

UTC = dt.UTC
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def make_config() -> Config:
    return Config.model_validate(
        {
            "organization": {
                "name": "Migrant Workers Alliance",
                "website": "https://alliance.example.org/about",
                "postal_address": "1 Union Square, Springfield",
            },
            "campaigns": {
                "may-day": {
                    "name": "May Day",
                    "date": "05-01",
                    "timezone": "Asia/Manila",
                    "statement": "may-day",
                    "steps": {
                        "countdown": {
                            "offset": "-7d",
                            "channels": ["email"],
                            "template": "countdown",
                        },
                        "statement": {
                            "channels": ["email", "mastodon"],
                            "template": "statement",
                        },
                    },
                },
                "iwd": {
                    "name": "International Women's Day",
                    "date": "03-08",
                    "time": "02:30",
                    "timezone": "America/New_York",
                    "statement": "iwd",
                    "steps": {"statement": {"channels": ["bluesky"], "template": "post"}},
                },
            },
        }
    )


def occurrences(config: Config) -> list[Occurrence]:
    found = expand(config, dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert len(found) == 3
    return found


def events(data: bytes) -> list[Component]:
    cal = Calendar.from_ical(data)
    return list(cal.walk("VEVENT"))


def test_calendar_header() -> None:
    config = make_config()
    cal = Calendar.from_ical(to_ics(config, occurrences(config), now=NOW))
    assert str(cal["VERSION"]) == "2.0"
    assert str(cal["METHOD"]) == "PUBLISH"
    assert str(cal["X-WR-CALNAME"]) == "Migrant Workers Alliance"
    assert "PRODID" in cal


def test_one_event_per_occurrence_with_stable_uids() -> None:
    config = make_config()
    occs = occurrences(config)
    first = to_ics(config, occs, now=NOW)
    again = to_ics(make_config(), occurrences(make_config()))  # another run, another DTSTAMP
    uids = [str(e["UID"]) for e in events(first)]
    assert uids == [f"{o.id}@alliance.example.org" for o in occs]
    assert len(set(uids)) == len(occs)
    assert [str(e["UID"]) for e in events(again)] == uids


def test_event_times_are_utc_and_equal_the_instant() -> None:
    config = make_config()
    occs = occurrences(config)
    for occ, event in zip(occs, events(to_ics(config, occs, now=NOW)), strict=True):
        start = event.decoded("DTSTART")
        assert start == occ.instant
        assert start.utcoffset() == dt.timedelta(0)
        assert event.decoded("DTEND") - start == dt.timedelta(minutes=30)
        assert event.decoded("DTSTAMP") == NOW
    # Serialised as UTC ("Z"), not with a TZID that a client would have to resolve.
    assert b"DTSTART:20260308T073000Z" in to_ics(config, occs, now=NOW)


def test_summary_description_and_categories() -> None:
    config = make_config()
    occs = occurrences(config)
    by_uid = {str(e["UID"]).split("@")[0]: e for e in events(to_ics(config, occs, now=NOW))}

    statement = by_uid["may-day/2026/statement"]
    assert str(statement["SUMMARY"]) == "May Day — statement (email, mastodon)"
    description = str(statement["DESCRIPTION"])
    assert "email, mastodon" in description
    assert "statement" in description
    assert "Note" not in description
    assert isinstance(statement, Event)
    assert [str(c) for c in statement.categories] == ["may-day"]

    iwd = by_uid["iwd/2026/statement"]
    assert str(iwd["SUMMARY"]) == "International Women's Day — statement (bluesky)"
    assert "DST gap" in str(iwd["DESCRIPTION"])


def test_empty_calendar_still_parses() -> None:
    cal = Calendar.from_ical(to_ics(make_config(), [], now=NOW))
    assert list(cal.walk("VEVENT")) == []
    assert str(cal["X-WR-CALNAME"]) == "Migrant Workers Alliance"


def test_dtstamp_defaults_to_now_in_utc() -> None:
    config = make_config()
    before = dt.datetime.now(UTC).replace(microsecond=0)
    (event, *_) = events(to_ics(config, occurrences(config)))
    stamp = event.decoded("DTSTAMP")
    assert stamp.utcoffset() == dt.timedelta(0)
    assert before <= stamp <= dt.datetime.now(UTC)
