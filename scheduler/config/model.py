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
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from scheduler.channel_registry import CHANNEL_TYPES

_ID = r"^[a-z0-9][a-z0-9_-]*$"
Identifier = Annotated[str, Field(pattern=_ID, max_length=64)]
LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
# A name people read: one string, or one per language ({en: May Day, es: Primero de Mayo}).
Text = str | dict[LanguageCode, str]
Colour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]


def localized(text: Text, language: str | None = None, fallback: str | None = None) -> str:
    """`text` in `language`, else in `fallback`, else its first language."""
    if isinstance(text, str):
        return text
    for lang in (language, fallback):
        if lang is not None and lang in text:
            return text[lang]
    return next(iter(text.values()))


def _check_hashtag(tag: str) -> str:
    # As platforms detect a tag: letters, digits and '_', not digits alone, no '#'.
    if not re.fullmatch(r"\w{1,64}", tag) or tag.isdigit():
        raise ValueError(
            f"{tag!r} is not a hashtag; write letters, digits or '_' without '#', e.g. MayDay"
        )
    return tag


Hashtag = Annotated[str, AfterValidator(_check_hashtag)]


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
    name: Text = Field(description="one name, or one per language")
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
    logo: str | None = Field(default=None, description="URL of the logo shown in emails")
    accent: Colour = "#7a1f2b"
    archive_chapters: list[Identifier] = Field(
        default_factory=list,
        description="chapters whose statements the alliance's archive and feed also show",
    )

    _tz = field_validator("timezone")(check_timezone)

    def display_name(self, language: str | None = None) -> str:
        return localized(self.name, language, self.default_language)

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
    name: Text | None = None
    description: Text | None = None
    source: str | None = Field(default=None, description="CSV file, relative to campaigns.yaml")
    double_opt_in: bool = True
    public: bool = False
    chapter: Identifier | None = Field(default=None, description="the chapter owning the list")
    shared: bool = Field(default=False, description="an alliance list chapters may use too")

    def title(self, list_id: str, language: str | None = None) -> str:
        return localized(self.name, language) if self.name else list_id

    def blurb(self, language: str | None = None) -> str | None:
        return localized(self.description, language) if self.description else None


class Channel(Strict):
    """A place messages go. Settings other than these are validated per type."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="a type from the registry in scheduler.channels")
    language: LanguageCode | None = None
    chapter: Identifier | None = Field(default=None, description="the chapter owning the channel")
    shared: bool = Field(default=False, description="an alliance channel chapters may use too")

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in CHANNEL_TYPES:
            close = difflib.get_close_matches(v, list(CHANNEL_TYPES), n=1)
            known = ", ".join(CHANNEL_TYPES)
            raise ValueError(
                f"unknown channel type {v!r}; "
                + (f"did you mean {close[0]!r}? " if close else "")
                + f"types: {known}"
            )
        return v


class StepImage(Strict):
    """An image for one step instead of the statement's (a countdown card)."""

    file: str = Field(min_length=1, description="relative to the statements folder")
    alt: dict[LanguageCode, str] = Field(description="alt text in every campaign language")


class Review(Strict):
    """`review: required`, or its long form: how many approvers, who may approve, when to
    remind them. `review: none` turns the default off."""

    required: bool = True
    approvers: int = Field(default=1, ge=1, le=10)
    by: list[str] = Field(
        default_factory=list, description="addresses of approver accounts; empty: any approver"
    )
    remind: str = Field(default="24h", description="remind approvers this long before")

    @field_validator("remind")
    @classmethod
    def _remind(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def remind_before(self) -> dt.timedelta:
        return parse_duration(self.remind)


def parse_review(v: object) -> object:
    if v == "required":
        return Review()
    if v in ("none", False):
        return Review(required=False)
    if isinstance(v, str):
        raise ValueError(f"review is 'required', 'none' or a mapping; not {v!r}")
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
    image: StepImage | None = Field(
        default=None, description="an image for every channel of the step (a countdown card)"
    )
    images: dict[Identifier, StepImage] = Field(
        default_factory=dict,
        description="an image per channel of the step, e.g. a square card for instagram",
    )
    review: Review | None = Field(default=None, description="overrides the campaign's review")

    def image_for(self, channel: str | None) -> StepImage | None:
        """The image the step chooses for `channel` (None: the statement's images)."""
        if channel is not None and channel in self.images:
            return self.images[channel]
        return self.image

    @field_validator("review", mode="before")
    @classmethod
    def _review(cls, v: object) -> object:
        return parse_review(v)

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
    name: Text | None = Field(
        default=None,
        description="one name, or one per language: {en: May Day, es: Primero de Mayo}",
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
    hashtags: dict[LanguageCode, list[Hashtag]] = Field(
        default_factory=dict, description="per language, without '#': {en: [MayDay]}"
    )
    catch_up: str = Field(
        default="6h", description="how late a missed occurrence may still be sent"
    )
    first_year: int | None = Field(default=None, ge=1970, le=9999)
    last_year: int | None = Field(default=None, ge=1970, le=9999)
    steps: dict[Identifier, Step] = Field(min_length=1)
    joins: Identifier | None = Field(
        default=None,
        description="a chapter campaign on an alliance campaign's days (its date rule)",
    )
    # Set when the config is read, never written: the chapter a campaign belongs to.
    chapter: Identifier | None = Field(default=None, exclude=True)

    @field_validator("chapter")
    @classmethod
    def _not_written(cls, v: str | None) -> None:
        # Config sets it (model_copy skips validators); a campaign file never does.
        if v is not None:
            raise ValueError(
                f"write a chapter's campaigns under chapters.{v}.campaigns, not 'chapter: {v}'"
            )
        return None

    review: Review | None = Field(
        default=None, description="'required' or {approvers, by, remind}; see the README"
    )

    @field_validator("review", mode="before")
    @classmethod
    def _review(cls, v: object) -> object:
        return parse_review(v)

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
        if self.joins is not None:
            if self.date is not None or self.rrule is not None:
                raise ValueError(
                    f"a campaign that joins {self.joins!r} takes its days from it: "
                    "remove 'date' and 'rrule'"
                )
            return self
        if self.name is None:
            raise ValueError("give the campaign a name: 'name: May Day' or {en: ..., es: ...}")
        if (self.date is None) == (self.rrule is None):
            raise ValueError(
                "give exactly one of 'date' ('05-01' every year, '2027-10-27' once) or 'rrule'"
            )
        return self

    def display_name(self, language: str | None = None) -> str:
        # A joining campaign without a name of its own has the joined one's (see Config).
        return localized(self.name or "", language)

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


_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text.lower())
    if not m or not any(m.groups()):
        raise ValueError(f"cannot read duration {text!r}; write e.g. '6h', '1d', '30m' or '0m'")
    return dt.timedelta(
        days=int(m[1] or 0), hours=int(m[2] or 0), minutes=int(m[3] or 0), seconds=int(m[4] or 0)
    )


class Settings(Strict):
    """Optional run-time defaults, all overridable from the environment."""

    statements_dir: str = "statements"
    templates_dir: str = "templates"
    batch_size: int = Field(default=250, ge=1, le=5000)
    # List health (scheduler/listhealth/): this many soft bounces of one address within
    # `soft_bounce_days` suppress it like a hard bounce; delivery rows older than
    # `retention_days` lose the link to the person (see README "Subscribers' rights").
    soft_bounce_limit: int = Field(default=3, ge=1, le=100)
    soft_bounce_days: int = Field(default=30, ge=1, le=3650)
    retention_days: int = Field(default=180, ge=1, le=36500)
    alert_channel: Identifier | None = Field(
        default=None, description="a post channel that also gets the organizers' alerts"
    )
    alert_failure_rate: float = Field(
        default=0.05, gt=0, le=1, description="alert when more than this share of a send fails"
    )


# --- chapters ------------------------------------------------------------------------------

# Chapter ids are the first segment of a chapter's web pages (/usa/subscribe): never a page's.
RESERVED_CHAPTER_IDS = frozenset(
    {
        "subscribe",
        "confirm",
        "unsubscribe",
        "preferences",
        "archive",
        "dashboard",
        "static",
        "healthz",
        "login",
        "logout",
        "api",
        "webhooks",
        "email",
        "post",
    }
)


class Chapter(Strict):
    """A national chapter: its own voice, lists, channels and campaigns. Whatever it does not
    set is the alliance's (`Config.voice`)."""

    name: Text
    website: str | None = Field(default=None, pattern=r"^https?://")
    postal_address: str | None = Field(
        default=None, min_length=5, description="the chapter's own address for its mail footers"
    )
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    unsubscribe_mailto: str | None = None
    timezone: str | None = None
    languages: list[LanguageCode] | None = Field(default=None, min_length=1)
    default_language: LanguageCode | None = None
    sender: Identifier | None = Field(default=None, description="the chapter's default sender")
    logo: str | None = None
    accent: Colour | None = None
    campaigns: dict[Identifier, Campaign] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else check_timezone(v)

    @model_validator(mode="after")
    def _default_language_offered(self) -> Chapter:
        if self.default_language and self.languages and self.default_language not in self.languages:
            raise ValueError(
                f"default_language {self.default_language!r} is not in languages {self.languages}"
            )
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class Voice:
    """Who speaks: the alliance, or one chapter with the alliance's settings filled in."""

    chapter: str | None
    name: Text
    website: str
    postal_address: str
    public_url: str
    unsubscribe_mailto: str | None
    timezone: str
    languages: tuple[str, ...]
    default_language: str
    sender: str | None
    logo: str | None
    accent: str

    def display_name(self, language: str | None = None) -> str:
        return localized(self.name, language, self.default_language)


def chapter_campaign_id(chapter: str, campaign: str) -> str:
    """`usa/may-day`: a chapter's campaigns sit beside the alliance's under this key, so
    their occurrence ids read `usa/may-day/2027/statement`."""
    return f"{chapter}/{campaign}"


class Config(Strict):
    organization: Organization
    chapters: dict[Identifier, Chapter] = Field(default_factory=dict)
    senders: dict[Identifier, Sender] = Field(default_factory=dict)
    lists: dict[Identifier, MailingList] = Field(default_factory=dict)
    channels: dict[Identifier, Channel] = Field(default_factory=dict)
    campaigns: dict[Identifier, Campaign] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=Settings)

    @model_validator(mode="after")
    def _chapter_campaigns(self) -> Config:
        # A chapter's campaigns join `campaigns` under `chapter/campaign`, so every part of the
        # system that looks a campaign up by id finds them. A join naming no alliance campaign
        # is left out here and reported with its line by `validate`.
        for chapter_id, chapter in self.chapters.items():
            for campaign_id, campaign in chapter.campaigns.items():
                key = chapter_campaign_id(chapter_id, campaign_id)
                update: dict[str, object] = {"chapter": chapter_id}
                if campaign.joins is not None:
                    joined = self.campaigns.get(campaign.joins)
                    if joined is None or joined.chapter is not None:
                        continue
                    update |= {
                        "date": joined.date,
                        "rrule": joined.rrule,
                        "first_year": campaign.first_year or joined.first_year,
                        "last_year": campaign.last_year or joined.last_year,
                        "name": campaign.name or joined.name,
                    }
                    for inherited in ("time", "catch_up"):
                        if inherited not in campaign.model_fields_set:
                            update[inherited] = getattr(joined, inherited)
                self.campaigns[key] = campaign.model_copy(update=update)
        return self

    def chapter_of(self, campaign: Campaign) -> Chapter | None:
        return self.chapters.get(campaign.chapter) if campaign.chapter else None

    def voice(self, chapter_id: str | None = None) -> Voice:
        org = self.organization
        chapter = self.chapters.get(chapter_id) if chapter_id else None
        if chapter is None:
            return Voice(
                chapter=None,
                name=org.name,
                website=org.website,
                postal_address=org.postal_address,
                public_url=org.public_url,
                unsubscribe_mailto=org.unsubscribe_mailto,
                timezone=org.timezone,
                languages=tuple(org.languages),
                default_language=org.default_language,
                sender=None,
                logo=org.logo,
                accent=org.accent,
            )
        languages = tuple(chapter.languages or org.languages)
        default = chapter.default_language or (
            org.default_language if org.default_language in languages else languages[0]
        )
        return Voice(
            chapter=chapter_id,
            name=chapter.name,
            website=chapter.website or org.website,
            postal_address=chapter.postal_address or org.postal_address,
            public_url=chapter.public_url or org.public_url,
            unsubscribe_mailto=chapter.unsubscribe_mailto or org.unsubscribe_mailto,
            timezone=chapter.timezone or org.timezone,
            languages=languages,
            default_language=default,
            sender=chapter.sender,
            logo=chapter.logo or org.logo,
            accent=chapter.accent or org.accent,
        )

    def sender_of(self, campaign: Campaign | None, channel_sender: str | None) -> Sender:
        """Who a campaign's mail comes from: its `sender:`, else its chapter's, else the email
        channel's, else the first sender. A name not under senders: is passed over here
        (`validate` reports it and refuses to send)."""
        chapter = self.chapter_of(campaign) if campaign else None
        names = (
            campaign.sender if campaign else None,
            chapter.sender if chapter else None,
            channel_sender,
            *self.senders,
        )
        for name in names:
            if name is not None and name in self.senders:
                return self.senders[name]
        raise KeyError("campaigns.yaml has no senders: an email channel needs one")

    def campaign_voice(self, campaign: Campaign) -> Voice:
        return self.voice(campaign.chapter)

    def list_voice(self, list_id: str) -> Voice:
        mailing_list = self.lists.get(list_id)
        return self.voice(mailing_list.chapter if mailing_list else None)

    @property
    def all_languages(self) -> list[str]:
        """Every language someone can subscribe in: the alliance's and its chapters'."""
        found = list(self.organization.languages)
        for chapter in self.chapters.values():
            found += chapter.languages or []
        return list(dict.fromkeys(found))

    def campaign_zone(self, campaign: Campaign) -> ZoneInfo:
        chapter = self.chapter_of(campaign)
        chapter_zone = chapter.timezone if chapter else None
        return ZoneInfo(campaign.timezone or chapter_zone or self.organization.timezone)

    def campaign_languages(self, campaign: Campaign) -> list[str]:
        return list(campaign.languages or self.campaign_voice(campaign).languages)
