"""The calendar: campaign days, steps, DST gaps and folds, ids, windows, in real IANA zones."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.calendar import (
    Occurrence,
    anchor_dates,
    expand,
    next_occurrences,
    occurrence,
    resolve_local,
)
from scheduler.config.model import Config
from scheduler.errors import UnknownCampaignError

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")
MADRID = ZoneInfo("Europe/Madrid")

ORG = {
    "name": "Migrant Workers Alliance",
    "website": "https://alliance.example.org/",
    "postal_address": "1 Union Square, Springfield",
}


def step(template: str = "statement", **extra: Any) -> dict[str, Any]:
    return {"channels": ["email", "mastodon"], "template": template, **extra}


def campaign(**fields: Any) -> dict[str, Any]:
    fields.setdefault("name", "A campaign")
    fields.setdefault("statement", "statement")
    fields.setdefault("steps", {"statement": step()})
    return fields


def make_config(**campaigns: dict[str, Any]) -> Config:
    return Config.model_validate({"organization": ORG, "campaigns": campaigns})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def only(config: Config, start: dt.datetime, end: dt.datetime) -> Occurrence:
    found = expand(config, start, end)
    assert len(found) == 1, [o.id for o in found]
    return found[0]


# --- resolve_local -----------------------------------------------------------------------


def test_resolve_local_plain_time_has_no_note() -> None:
    local, note = resolve_local(dt.datetime(2026, 5, 1, 9, 0), NEW_YORK)
    assert note is None
    assert local.astimezone(UTC) == utc(2026, 5, 1, 13, 0)


def test_resolve_local_gap_moves_forward_by_the_gap() -> None:
    local, note = resolve_local(dt.datetime(2026, 3, 8, 2, 30), NEW_YORK)
    assert (local.hour, local.minute) == (3, 30)
    assert local.utcoffset() == dt.timedelta(hours=-4)
    assert local.astimezone(UTC) == utc(2026, 3, 8, 7, 30)
    assert note is not None and "DST gap" in note and "03:30" in note


def test_resolve_local_fold_takes_first_instant() -> None:
    local, note = resolve_local(dt.datetime(2026, 11, 1, 1, 30), NEW_YORK)
    assert local.astimezone(UTC) == utc(2026, 11, 1, 5, 30)  # EDT, not EST (06:30)
    assert note is not None and "DST fold" in note and "first" in note


# --- DST through expand ------------------------------------------------------------------


def test_womens_day_2026_new_york_in_spring_forward_gap() -> None:
    config = make_config(
        iwd=campaign(
            name="International Women's Day",
            date="03-08",
            time="02:30",
            timezone="America/New_York",
        )
    )
    occ = only(config, utc(2026, 3, 1), utc(2026, 3, 15))
    assert occ.id == "iwd/2026/statement"
    assert occ.anchor == dt.date(2026, 3, 8)
    assert occ.local.replace(tzinfo=None) == dt.datetime(2026, 3, 8, 3, 30)
    assert occ.local.tzname() == "EDT"
    assert occ.instant == utc(2026, 3, 8, 7, 30)
    assert occ.instant.utcoffset() == dt.timedelta(0)
    assert occ.timezone == "America/New_York"
    assert occ.note == (
        "02:30 does not exist on 2026-03-08 in America/New_York (DST gap); moved forward to 03:30"
    )
    # The next year 8 March is after the change: 02:30 exists and there is no note.
    occ_2027 = only(config, utc(2027, 3, 1), utc(2027, 3, 15))
    assert occ_2027.instant == utc(2027, 3, 8, 7, 30)
    assert occ_2027.local.hour == 2
    assert occ_2027.note is None


def test_fall_back_fold_new_york_takes_first_instant() -> None:
    config = make_config(
        fold=campaign(date="2026-11-01", time="01:30", timezone="America/New_York")
    )
    occ = only(config, utc(2026, 10, 1), utc(2026, 12, 1))
    assert occ.instant == utc(2026, 11, 1, 5, 30)
    assert occ.local.tzname() == "EDT"
    assert occ.note is not None and "DST fold" in occ.note


def test_madrid_gap_last_sunday_of_march() -> None:
    config = make_config(
        spring=campaign(
            rrule="FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", time="02:30", timezone="Europe/Madrid"
        )
    )
    occ = only(config, utc(2026, 3, 1), utc(2026, 4, 1))
    assert occ.anchor == dt.date(2026, 3, 29)
    assert occ.id == "spring/2026-03-29/statement"
    assert occ.local.replace(tzinfo=None) == dt.datetime(2026, 3, 29, 3, 30)
    assert occ.instant == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert occ.note is not None and "Europe/Madrid" in occ.note and "gap" in occ.note


def test_madrid_fold_last_sunday_of_october() -> None:
    config = make_config(
        autumn=campaign(
            rrule="FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", time="02:30", timezone="Europe/Madrid"
        )
    )
    occ = only(config, utc(2026, 10, 1), utc(2026, 11, 1))
    assert occ.anchor == dt.date(2026, 10, 25)
    assert occ.instant == utc(2026, 10, 25, 0, 30)  # first 02:30 is CEST (+02:00)
    assert occ.local.utcoffset() == dt.timedelta(hours=2)
    assert occ.note is not None and "fold" in occ.note


def test_manila_has_no_dst() -> None:
    config = make_config(may=campaign(date="05-01", timezone="Asia/Manila"))
    occ = only(config, utc(2026, 1, 1), utc(2027, 1, 1))
    assert occ.local.utcoffset() == dt.timedelta(hours=8)
    assert occ.instant == utc(2026, 5, 1, 1, 0)
    assert occ.note is None


def test_kiritimati_morning_is_the_previous_utc_day() -> None:
    config = make_config(may=campaign(date="05-01", time="09:00", timezone="Pacific/Kiritimati"))
    occ = only(config, utc(2026, 4, 1), utc(2026, 6, 1))
    assert occ.local.utcoffset() == dt.timedelta(hours=14)
    assert occ.local.date() == dt.date(2026, 5, 1)
    assert occ.instant == utc(2026, 4, 30, 19, 0)
    assert occ.instant.date() != occ.anchor
    # A window that ends at 1 May 00:00 UTC still holds it; one starting then does not.
    assert [o.id for o in expand(config, utc(2026, 4, 30), utc(2026, 5, 1))] == [
        "may/2026/statement"
    ]
    assert expand(config, utc(2026, 5, 1), utc(2026, 5, 2)) == []


def test_organization_timezone_is_the_default() -> None:
    config = Config.model_validate(
        {
            "organization": {**ORG, "timezone": "Asia/Manila"},
            "campaigns": {"may": campaign(date="05-01")},
        }
    )
    occ = only(config, utc(2026, 1, 1), utc(2027, 1, 1))
    assert occ.timezone == "Asia/Manila"
    assert occ.instant == utc(2026, 5, 1, 1, 0)


# --- date rules --------------------------------------------------------------------------


def test_leap_day_rule_on_leap_and_other_years() -> None:
    config = make_config(leap=campaign(date="02-29", timezone="UTC"))
    found = expand(config, utc(2027, 1, 1), utc(2029, 1, 1))
    assert [o.id for o in found] == ["leap/2027/statement", "leap/2028/statement"]
    y2027, y2028 = found
    assert y2027.anchor == dt.date(2027, 2, 28)
    assert y2027.note == "29 February falls on 28 February in 2027"
    assert y2028.anchor == dt.date(2028, 2, 29)
    assert y2028.note is None
    # 2100 is not a leap year, 2000 is.
    zone = ZoneInfo("UTC")
    parsed = config.campaigns["leap"]
    assert anchor_dates(parsed, zone, dt.date(2100, 1, 1), dt.date(2100, 12, 31)) == [
        dt.date(2100, 2, 28)
    ]
    assert anchor_dates(parsed, zone, dt.date(2000, 1, 1), dt.date(2000, 12, 31)) == [
        dt.date(2000, 2, 29)
    ]


def test_one_off_date_happens_once() -> None:
    config = make_config(rapid=campaign(date="2027-10-27", timezone="Europe/Madrid"))
    found = expand(config, utc(2020, 1, 1), utc(2035, 1, 1))
    assert [o.id for o in found] == ["rapid/2027/statement"]
    assert found[0].instant == utc(2027, 10, 27, 7, 0)  # 09:00 CEST (the change is on 31 October)


def test_every_year_rule_respects_first_and_last_year() -> None:
    config = make_config(
        may=campaign(date="05-01", timezone="UTC", first_year=2026, last_year=2028)
    )
    found = expand(config, utc(2020, 1, 1), utc(2035, 1, 1))
    assert [o.anchor.year for o in found] == [2026, 2027, 2028]


def test_anchor_dates_is_inclusive_at_both_ends() -> None:
    config = make_config(may=campaign(date="05-01"))
    parsed = config.campaigns["may"]
    zone = ZoneInfo("UTC")
    day = dt.date(2026, 5, 1)
    assert anchor_dates(parsed, zone, day, day) == [day]
    assert anchor_dates(parsed, zone, day + dt.timedelta(days=1), dt.date(2026, 12, 31)) == []


# --- rrule -------------------------------------------------------------------------------


def test_rrule_monthly_first_saturday() -> None:
    config = make_config(
        sat=campaign(rrule="FREQ=MONTHLY;BYDAY=1SA", time="10:00", timezone="Asia/Manila")
    )
    found = expand(config, utc(2026, 1, 1), utc(2026, 5, 1))
    assert [o.id for o in found] == [
        "sat/2026-01-03/statement",
        "sat/2026-02-07/statement",
        "sat/2026-03-07/statement",
        "sat/2026-04-04/statement",
    ]
    assert all(o.anchor.weekday() == 5 for o in found)
    assert all(o.local.hour == 10 for o in found)
    assert found[0].instant == utc(2026, 1, 3, 2, 0)


def test_rrule_respects_first_and_last_year() -> None:
    config = make_config(
        sat=campaign(
            rrule="FREQ=MONTHLY;BYDAY=1SA", timezone="UTC", first_year=2027, last_year=2027
        )
    )
    found = expand(config, utc(2026, 1, 1), utc(2029, 1, 1))
    assert len(found) == 12
    assert {o.anchor.year for o in found} == {2027}


def test_rrule_with_utc_until_uses_the_campaign_zone() -> None:
    config = make_config(sat=campaign(rrule="FREQ=MONTHLY;BYDAY=1SA", timezone="Asia/Manila"))
    # The model currently refuses a UTC UNTIL; the calendar copes with one anyway.
    parsed = config.campaigns["sat"].model_copy(
        update={"rrule": "FREQ=MONTHLY;BYDAY=1SA;UNTIL=20260301T000000Z"}
    )
    days = anchor_dates(parsed, ZoneInfo("Asia/Manila"), dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert days == [dt.date(2026, 1, 3), dt.date(2026, 2, 7)]


# --- offsets -----------------------------------------------------------------------------


def countdown_campaign() -> dict[str, Any]:
    return campaign(
        date="01-03",
        timezone="America/New_York",
        steps={
            "countdown": step("countdown", offset="-7d"),
            "statement": step(),
            "followup": step("followup", offset="+2d"),
        },
    )


def test_negative_offset_crosses_into_previous_year_and_keeps_anchor_year() -> None:
    config = make_config(newyear=countdown_campaign())
    # The window ends before the 2027 campaign day: only the countdown lies in it.
    occ = only(config, utc(2026, 12, 20), utc(2027, 1, 1))
    assert occ.id == "newyear/2027/countdown"
    assert occ.anchor == dt.date(2027, 1, 3)
    assert occ.local.replace(tzinfo=None) == dt.datetime(2026, 12, 27, 9, 0)
    assert occ.instant == utc(2026, 12, 27, 14, 0)


def test_positive_offset_after_a_window_start() -> None:
    config = make_config(
        dec=campaign(
            date="12-25",
            timezone="UTC",
            steps={"statement": step(), "followup": step("followup", offset="+10d")},
        )
    )
    # The anchor (25 Dec 2026) is well before the window; its follow-up (4 Jan 2027) is inside.
    occ = only(config, utc(2027, 1, 1), utc(2027, 2, 1))
    assert occ.id == "dec/2026/followup"
    assert occ.instant == utc(2027, 1, 4, 9, 0)


def test_offset_is_wall_clock_across_dst_change() -> None:
    # 7 days before IWD 2026 New York is still 09:00 local, though the offset changed between.
    config = make_config(
        iwd=campaign(
            date="03-10",
            timezone="America/New_York",
            steps={"countdown": step("countdown", offset="-7d"), "statement": step()},
        )
    )
    countdown, statement = expand(config, utc(2026, 3, 1), utc(2026, 3, 15))
    assert countdown.local.hour == statement.local.hour == 9
    assert countdown.instant == utc(2026, 3, 3, 14, 0)  # EST
    assert statement.instant == utc(2026, 3, 10, 13, 0)  # EDT


def test_step_time_overrides_campaign_time() -> None:
    config = make_config(
        may=campaign(
            date="05-01",
            time="09:00",
            timezone="UTC",
            steps={"statement": step(), "evening": step("evening", time="18:30")},
        )
    )
    found = expand(config, utc(2026, 5, 1), utc(2026, 5, 2))
    assert [(o.step_id, o.instant.time()) for o in found] == [
        ("statement", dt.time(9, 0)),
        ("evening", dt.time(18, 30)),
    ]


# --- windows and sorting -----------------------------------------------------------------


def test_window_start_inclusive_end_exclusive() -> None:
    config = make_config(may=campaign(date="05-01", timezone="UTC"))
    instant = utc(2026, 5, 1, 9, 0)
    assert [o.instant for o in expand(config, instant, instant + dt.timedelta(seconds=1))] == [
        instant
    ]
    assert expand(config, instant - dt.timedelta(hours=1), instant) == []
    # Window bounds in another zone mean the same instants.
    tokyo = ZoneInfo("Asia/Tokyo")
    assert (
        len(expand(config, instant.astimezone(tokyo), instant.astimezone(tokyo) + dt.timedelta(1)))
        == 1
    )


def test_expand_sorts_by_instant_then_id() -> None:
    config = make_config(
        zeta=campaign(date="05-01", timezone="UTC"),
        alpha=campaign(date="05-01", timezone="UTC"),
        early=campaign(date="05-01", timezone="Asia/Manila"),  # 01:00 UTC, before the others
    )
    found = expand(config, utc(2026, 1, 1), utc(2027, 1, 1))
    assert [o.id for o in found] == [
        "early/2026/statement",
        "alpha/2026/statement",
        "zeta/2026/statement",
    ]


def test_expand_filters_campaigns_and_rejects_unknown() -> None:
    config = make_config(
        may=campaign(date="05-01", timezone="UTC"), dec=campaign(date="12-18", timezone="UTC")
    )
    found = expand(config, utc(2026, 1, 1), utc(2027, 1, 1), campaigns=["dec"])
    assert [o.campaign_id for o in found] == ["dec"]
    with pytest.raises(UnknownCampaignError, match="did you mean 'may'"):
        expand(config, utc(2026, 1, 1), utc(2027, 1, 1), campaigns=["mya"])


def test_expand_rejects_naive_datetimes() -> None:
    config = make_config(may=campaign(date="05-01"))
    with pytest.raises(ValueError, match="no time zone"):
        expand(config, dt.datetime(2026, 1, 1), utc(2027, 1, 1))


def test_occurrence_carries_step_details() -> None:
    config = make_config(may=campaign(date="05-01", steps={"post": step("short-post")}))
    occ = only(config, utc(2026, 1, 1), utc(2027, 1, 1))
    assert occ.channels == ("email", "mastodon")
    assert occ.template == "short-post"
    assert occ.step_id == "post"


# --- occurrence() round trip -------------------------------------------------------------


def test_occurrence_round_trips_every_expanded_id() -> None:
    config = make_config(
        newyear=countdown_campaign(),
        sat=campaign(rrule="FREQ=MONTHLY;BYDAY=1SA", timezone="Europe/Madrid"),
        leap=campaign(date="02-29", time="02:30", timezone="America/New_York"),
    )
    found = expand(config, utc(2026, 1, 1), utc(2029, 1, 1))
    assert len(found) > 40
    for occ in found:
        assert occurrence(config, occ.id) == occ


def test_occurrence_errors_are_helpful() -> None:
    config = make_config(
        may=campaign(date="05-01", first_year=2026),
        sat=campaign(rrule="FREQ=MONTHLY;BYDAY=1SA"),
        rapid=campaign(date="2027-10-27"),
    )
    with pytest.raises(UnknownCampaignError, match=r"unknown campaign 'mayday'.*'may'"):
        occurrence(config, "mayday/2026/statement")
    with pytest.raises(UnknownCampaignError, match=r"no step 'statment'.*statement"):
        occurrence(config, "may/2026/statment")
    with pytest.raises(UnknownCampaignError, match="first_year 2026"):
        occurrence(config, "may/2025/statement")
    with pytest.raises(UnknownCampaignError, match="expects a year"):
        occurrence(config, "may/2026-05-01/statement")
    with pytest.raises(UnknownCampaignError, match="no campaign day at '2026-01-10'"):
        occurrence(config, "sat/2026-01-10/statement")  # a Saturday, but not the first
    with pytest.raises(UnknownCampaignError, match="expects YYYY-MM-DD"):
        occurrence(config, "sat/2026/statement")
    with pytest.raises(UnknownCampaignError, match="no campaign day at '2026'"):
        occurrence(config, "rapid/2026/statement")
    with pytest.raises(UnknownCampaignError, match="CAMPAIGN/YEAR/STEP"):
        occurrence(config, "may-2026-statement")
    assert occurrence(config, "rapid/2027/statement").anchor == dt.date(2027, 10, 27)


# --- next_occurrences --------------------------------------------------------------------


def test_next_occurrences_limit_and_days() -> None:
    config = make_config(
        may=campaign(date="05-01", timezone="UTC"), dec=campaign(date="12-18", timezone="UTC")
    )
    now = utc(2026, 5, 1, 9, 0)  # exactly May Day 2026: included
    assert [o.id for o in next_occurrences(config, now, limit=3)] == [
        "may/2026/statement",
        "dec/2026/statement",
        "may/2027/statement",
    ]
    # Beyond one year when the limit asks for it.
    assert len(next_occurrences(config, now, limit=6)) == 6
    assert [o.id for o in next_occurrences(config, now, days=30)] == ["may/2026/statement"]
    assert next_occurrences(config, now + dt.timedelta(seconds=1), days=30) == []
    # Without days or limit: the coming year.
    assert [o.id for o in next_occurrences(config, utc(2026, 6, 1))] == [
        "dec/2026/statement",
        "may/2027/statement",
    ]
