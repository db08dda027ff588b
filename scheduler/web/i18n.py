"""Page strings in each language (translations/*.json) and which language a page speaks.

A page's language is, first match wins: `?lang=` on the URL, the subscriber's stored language
(pages reached through a signed link), the browser's Accept-Language, the default of whoever
speaks on the page (a chapter's under /<chapter>/, else the alliance's). Only languages that
speaker offers *and* that have a translation are chosen; a translation may be partial (a
chapter's language for the subscriber pages only): a missing key is shown in English.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources

FALLBACK = "en"


@functools.cache
def catalog() -> dict[str, dict[str, str]]:
    """language -> key -> text, read once from the package's translations folder."""
    folder = resources.files("scheduler.web") / "translations"
    found: dict[str, dict[str, str]] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = json.loads(entry.read_text("utf-8"))
    return found


def page_languages(offered: Iterable[str]) -> list[str]:
    """The organization's languages that pages can be shown in (never empty)."""
    known = catalog()
    usable = [lang for lang in offered if lang in known]
    return usable or [FALLBACK]


def choose(
    usable: list[str],
    default: str,
    *,
    asked: str | None = None,
    stored: str | None = None,
    accepted: str | None = None,
) -> str:
    for candidate in (asked, stored, accepted, default):
        if candidate in usable:
            return str(candidate)
    return usable[0]


def translate(lang: str, key: str, **values: object) -> str:
    """The text of `key` in `lang` (English when a translation lacks it), filled in."""
    strings = catalog()
    text = strings.get(lang, {}).get(key) or strings[FALLBACK][key]
    return text.format(**values) if values else text
