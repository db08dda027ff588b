"""The schema of campaigns.yaml, as pydantic models.

Field-level checks live here (formats, time zones, impossible dates); checks that need the
whole file or the disk (a step naming an unknown channel, a missing statement) live in
`scheduler.validate`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from dataclasses import dataclass
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.rrule import rrulestr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID = r"^[a-z0-9][a-z0-9_-]*$"
Identifier = Annotated[str, Field(pattern=_ID, max_length=64)]
LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors (with a did-you-mean hint upstream)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(known_timezones()), n=1, cutoff=0.7)
        suggestion = (
            f"did you mean {close[0]!r}?" if close else "use an IANA name such as 'Europe/Madrid'"
        )
        raise ValueError(f"unknown time zone {name!r}; {suggestion}") from None
    return name


@functools.cache
def known_timezones() -> frozenset[str]:
    return frozenset(available_timezones())


# --- offsets -------------------------------------------------------------------------------

_OFFSET_COMPACT = re.compile(
    r"^(?P<sign>[+-])?\s*(?:(?P<d>\d+)\s*d)?\s*(?:(?P<h>\d+)\s*h)?\s*(?:(?P<m>\d+)\s*m)?$"
)
_OFFSET_WORDS = re.compile(
    r"^(?P<parts>(?:\d+\s*(?:days?|hours?|minutes?)\s*,?\s*(?:and\s+)?)+)\s*(?P<dir>before|after)$"
)
_WORD_PART = re.compile(r"(\d+)\s*(day|hour|minute)s?")


@dataclass(frozen=True, slots=True)
class Offset:
    """A signed wall-clock shift from the campaign's date and time (negative is before)."""

    days: int = 0
    hours: int = 0
    minutes: int = 0

    @property
    def delta(self) -> dt.timedelta:
        return dt.timedelta(days=self.days, hours=self.hours, minutes=self.minutes)

    def __str__(self) -> str:
        total = self.days * 1440 + self.hours * 60 + self.minutes
        if total == 0:
            return "on the day"
        sign = "-" if total < 0 else "+"
        d, rest = divmod(abs(total), 1440)
        h, m = divmod(rest, 60)
        return sign + "".join(f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m")) if n)


def parse_offset(value: object) -> Offset:
    """Read `-7d`, `+2h30m`, `0`, `7 days before`, `1 day 2 hours after`."""
    if isinstance(value, Offset):
        return value
    if isinstance(value, dict) and set(value) <= {"days", "hours", "minutes"}:
        return Offset(**{k: int(v) for k, v in value.items()})
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return Offset()
    if not isinstance(value, str):
        raise ValueError("offset must be text such as '-7d', '+2h', '0' or '7 days before'")
    text = value.strip().lower()
    if text in ("", "0", "on the day"):
        return Offset()
    words = _OFFSET_WORDS.match(text)
    if words:
        amounts = {"day": 0, "hour": 0, "minute": 0}
        for n, unit in _WORD_PART.findall(words["parts"]):
            amounts[unit] += int(n)
        sign = -1 if words["dir"] == "before" else 1
        return Offset(sign * amounts["day"], sign * amounts["hour"], sign * amounts["minute"])
    compact = _OFFSET_COMPACT.match(text)
    if compact and any(compact[k] for k in ("d", "h", "m")):
        sign = -1 if compact["sign"] == "-" else 1
        return Offset(*(sign * int(compact[k] or 0) for k in ("d", "h", "m")))
    raise ValueError(
        f"cannot read offset {value!r}; write e.g. '-7d' (7 days before), '+2h30m', "
        "'0' or '7 days before'"
    )


# --- sections ------------------------------------------------------------------------------


class Organization(Strict):
    name: str = Field(min_length=1)
    website: str = Field(pattern=r"^https?://")
    postal_address: str = Field(min_length=5, description="required in every bulk-mail footer")
    timezone: str = "UTC"
    default_language: LanguageCode = "en"
    languages: list[LanguageCode] = Field(default_factory=lambda: ["en"], min_length=1)
    public_url: str = Field(
        default="http://localhost:8000",
        pattern=r"^https?://",
        description="base URL of `scheduler web`: unsubscribe, preferences and archive links",
    )
    unsubscribe_mailto: str | None = None

    _tz = field_validator("timezone")(check_timezone)

    @model_validator(mode="after")
    def _default_language_offered(self) -> Organization:
        if self.default_language not in self.languages:
            raise ValueError(
                f"default_language {self.default_language!r} is not in languages {self.languages}"
            )
        return self


class Sender(Strict):
    name: str = Field(min_length=1)
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    reply_to: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    @field_validator("name")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if any(c in v for c in "\r\n"):
            raise ValueError("a sender name must be one line")
        return v


class MailingList(Strict):
    name: str | None = None
    description: str | None = None
    source: str | None = Field(default=None, description="CSV file, relative to campaigns.yaml")
    double_opt_in: bool = True
    public: bool = False


class Channel(Strict):
    """A place messages go. Settings other than these are validated per type."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="a type from the registry in scheduler.channels")
    language: LanguageCode | None = None

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        # The registry is the one list of channel types; imported here, when a file is
        # read, because the channel modules themselves use this module's types.
        from scheduler.channels import CHANNEL_CLASSES

        if v not in CHANNEL_CLASSES:
            close = difflib.get_close_matches(v, list(CHANNEL_CLASSES), n=1)
            known = ", ".join(CHANNEL_CLASSES)
            raise ValueError(
                f"unknown channel type {v!r}; "
                + (f"did you mean {close[0]!r}? " if close else "")
                + f"types: {known}"
            )
        return v


class Step(Strict):
    offset: Offset = Field(default_factory=Offset)
    time: dt.time | None = Field(default=None, description="overrides the campaign's time")
    channels: list[Identifier] = Field(min_length=1)
    template: Identifier
    subject: str | None = Field(default=None, description="email subject, a Jinja expression")
    overflow: Literal["thread", "error"] = Field(
        default="thread",
        description="a post over the platform's limit becomes a numbered thread, or an error",
    )

    @field_validator("offset", mode="before")
    @classmethod
    def _offset(cls, v: object) -> Offset:
        return parse_offset(v)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: object) -> object:
        return parse_time(v)


def parse_time(v: object) -> object:
    # YAML 1.1 readers turn 09:00 into 540 (sexagesimal); we read 1.2 but be forgiving.
    if isinstance(v, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", v.strip())
        if not m:
            raise ValueError(f"cannot read time {v!r}; write it as HH:MM, e.g. '09:00'")
        h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
        if h > 23 or mi > 59 or s > 59:
            raise ValueError(f"{v!r} is not a time of day; hours run 00-23 and minutes 00-59")
        return dt.time(h, mi, s)
    return v


class Campaign(Strict):
    name: str | dict[LanguageCode, str] = Field(
        description="one name, or one per language: {en: May Day, es: Primero de Mayo}"
    )
    date: str | None = Field(default=None, description="'MM-DD' every year, or 'YYYY-MM-DD' once")
    rrule: str | None = Field(default=None, description="RFC 5545 RRULE for anything else")
    time: dt.time = dt.time(9, 0)
    timezone: str | None = None
    statement: Identifier
    languages: list[LanguageCode] | None = Field(
        default=None, description="defaults to the organization's languages"
    )
    audience: list[Identifier] = Field(default_factory=list)
    sender: Identifier | None = None
    catch_up: str = Field(
        default="6h", description="how late a missed occurrence may still be sent"
    )
    first_year: int | None = Field(default=None, ge=1970, le=9999)
    last_year: int | None = Field(default=None, ge=1970, le=9999)
    steps: dict[Identifier, Step] = Field(min_length=1)

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, v: object) -> object:
        if isinstance(v, dt.datetime):
            v = v.date()
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, str):
            parse_date_rule(v)
        return v

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: object) -> object:
        return parse_time(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else check_timezone(v)

    @field_validator("rrule")
    @classmethod
    def _rrule(cls, v: str | None) -> str | None:
        if v is None:
            return v
        text = v.removeprefix("RRULE:")
        if "DTSTART" in text.upper():
            raise ValueError("leave DTSTART out of rrule: the campaign's time and zone set it")
        # UNTIL may be written in UTC (…Z) or as a local time; dateutil wants the DTSTART to
        # match, so try both before calling the rule invalid.
        problem: Exception | None = None
        for start in (dt.datetime(2000, 1, 1), dt.datetime(2000, 1, 1, tzinfo=dt.UTC)):
            try:
                rrulestr(text, dtstart=start)
                return text
            except (ValueError, TypeError) as e:
                problem = problem or e
        raise ValueError(
            f"invalid RRULE {v!r}: {problem}; see RFC 5545, e.g. 'FREQ=MONTHLY;BYDAY=1SA'"
        )

    @field_validator("catch_up")
    @classmethod
    def _catch_up(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _one_rule(self) -> Campaign:
        if (self.date is None) == (self.rrule is None):
            raise ValueError(
                "give exactly one of 'date' ('05-01' every year, '2027-10-27' once) or 'rrule'"
            )
        return self

    def display_name(self, language: str | None = None) -> str:
        if isinstance(self.name, str):
            return self.name
        if language in self.name:
            return self.name[language]
        return next(iter(self.name.values()))

    @property
    def is_one_off(self) -> bool:
        return self.date is not None and len(self.date) == 10

    @property
    def catch_up_window(self) -> dt.timedelta:
        return parse_duration(self.catch_up)


def parse_date_rule(text: str) -> tuple[int | None, int, int]:
    """'05-01' -> (None, 5, 1); '2027-10-27' -> (2027, 10, 27). Raises on impossible dates."""
    m = re.fullmatch(r"(?:(\d{4})-)?(\d{2})-(\d{2})", text.strip())
    if not m:
        raise ValueError(
            f"cannot read date {text!r}; write 'MM-DD' every year or 'YYYY-MM-DD' once"
        )
    year = int(m[1]) if m[1] else None
    month, day = int(m[2]), int(m[3])
    try:
        # 2000 is a leap year, so '02-29' is a valid every-year rule.
        dt.date(year or 2000, month, day)
    except ValueError:
        raise ValueError(f"{text!r} is not a date in any year: check the month and day") from None
    return year, month, day


_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")


def parse_duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text.lower())
    if not m or not any(m.groups()):
        raise ValueError(f"cannot read duration {text!r}; write e.g. '6h', '1d', '30m' or '0m'")
    return dt.timedelta(days=int(m[1] or 0), hours=int(m[2] or 0), minutes=int(m[3] or 0))


class Settings(Strict):
    """Optional run-time defaults, all overridable from the environment."""

    statements_dir: str = "statements"
    templates_dir: str = "templates"
    batch_size: int = Field(default=250, ge=1, le=5000)


class Config(Strict):
    organization: Organization
    senders: dict[Identifier, Sender] = Field(default_factory=dict)
    lists: dict[Identifier, MailingList] = Field(default_factory=dict)
    channels: dict[Identifier, Channel] = Field(default_factory=dict)
    campaigns: dict[Identifier, Campaign] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=Settings)

    def campaign_zone(self, campaign: Campaign) -> ZoneInfo:
        return ZoneInfo(campaign.timezone or self.organization.timezone)

    def campaign_languages(self, campaign: Campaign) -> list[str]:
        return list(campaign.languages or self.organization.languages)
