"""Dates and times in the reader's language, with Babel: `8 de marzo de 2027`, `March 8, 2027`.

Templates call `{{ occurrence.date | date }}` (long form), `| date("short")`, `| datetime`,
`| time`; the language is the template context's `lang`. A language Babel does not know
falls back to English rather than failing a send.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time

FALLBACK_LOCALE = "en"


@functools.cache
def locale_for(language: str | None) -> Locale:
    try:
        return Locale.parse((language or FALLBACK_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(FALLBACK_LOCALE)


def localized_date(value: dt.date, language: str | None, form: str = "long") -> str:
    if isinstance(value, dt.datetime):
        value = value.date()
    return str(format_date(value, format=form, locale=locale_for(language)))


def localized_datetime(value: dt.datetime, language: str | None, form: str = "long") -> str:
    # "long" carries the zone's name; the value keeps the zone it was given in.
    return str(
        format_datetime(value, format=form, tzinfo=value.tzinfo, locale=locale_for(language))
    )


def localized_time(value: dt.datetime | dt.time, language: str | None, form: str = "short") -> str:
    return str(format_time(value, format=form, locale=locale_for(language)))


def _lang(context: Any) -> str | None:
    lang = context.get("lang")
    return str(lang) if isinstance(lang, str) else None


@jinja2.pass_context
def _date_filter(context: Any, value: dt.date, form: str = "long") -> str:
    return localized_date(value, _lang(context), form)


@jinja2.pass_context
def _datetime_filter(context: Any, value: dt.datetime, form: str = "long") -> str:
    return localized_datetime(value, _lang(context), form)


@jinja2.pass_context
def _time_filter(context: Any, value: dt.datetime | dt.time, form: str = "short") -> str:
    return localized_time(value, _lang(context), form)


def install_date_filters(env: jinja2.Environment) -> None:
    env.filters["date"] = _date_filter
    env.filters["datetime"] = _datetime_filter
    env.filters["time"] = _time_filter
