"""Bluesky: posts of up to 300 graphemes (and 3000 UTF-8 bytes), threaded as replies."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import regex  # type: ignore[import-untyped]
from pydantic import Field

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    HttpsOrigin,
    PostRef,
    PreparedPost,
    SecretRef,
    find_urls,
    graphemes,
    placeholder_time,
)
from scheduler.channels.http import HttpClient, PermanentPostError, TransientPostError
from scheduler.config.secrets import redact

MAX_BYTES = 3000  # app.bsky.feed.post#text maxLength, alongside maxGraphemes 300
COLLECTION = "app.bsky.feed.post"

# TIDs are 13 characters of base32-sortable; the first stays below "k" (top bit clear).
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")

Handle = Annotated[
    str,
    Field(
        pattern=r"^(did:[a-z]+:[A-Za-z0-9._:%-]+|([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
        r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$",
        description="a handle such as 'alliance.bsky.social', or the account's DID",
    ),
]


class BlueskySettings(ChannelSettings):
    handle: Handle
    app_password: SecretRef
    service: HttpsOrigin = "https://bsky.social"


def record_key(key: str, part: int) -> str:
    """A deterministic TID-shaped record key for part `part` (1-based) of delivery `key`.

    The same delivery always writes the same record, so a retry can first look the record up
    (com.atproto.repo.getRecord) and the PDS refuses a second record with that key. The 63
    bits come from SHA-256, not a clock, so keys do not sort by time.
    """
    digest = hashlib.sha256(f"{key}/{part}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") >> 1
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _byte_span(text: str, start: int, end: int) -> dict[str, int]:
    byte_start = len(text[:start].encode())
    return {"byteStart": byte_start, "byteEnd": byte_start + len(text[start:end].encode())}


def link_facets(text: str) -> list[dict[str, Any]]:
    """app.bsky.richtext.facet#link for every URL, indexed by UTF-8 byte offsets."""
    return [
        {
            "index": _byte_span(text, start, end),
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": text[start:end]}],
        }
        for start, end in find_urls(text)
    ]


# As the Bluesky app detects tags: '#' or '＃' after a space or the start, not a number
# alone, trailing punctuation left out, at most 64 graphemes.
_TAG = regex.compile(r"(?:^|(?<=\s))[#＃]([^\s\u00AD\u2060\u200A-\u200D\u20e2]+)")
_TRAILING_TAG_PUNCTUATION = regex.compile(r"\p{P}+$")
MAX_TAG_GRAPHEMES = 64


def tag_facets(text: str) -> list[dict[str, Any]]:
    """app.bsky.richtext.facet#tag for every hashtag outside a URL, by UTF-8 byte offsets."""
    urls = find_urls(text)
    facets = []
    for m in _TAG.finditer(text):
        tag = _TRAILING_TAG_PUNCTUATION.sub("", m[1])
        start = m.start()
        end = start + 1 + len(tag)
        if not tag or tag.isdigit() or len(graphemes(tag)) > MAX_TAG_GRAPHEMES:
            continue
        if any(a <= start < b for a, b in urls):
            continue
        facets.append(
            {
                "index": _byte_span(text, start, end),
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
            }
        )
    return facets


def facets(text: str) -> list[dict[str, Any]]:
    """Link and tag facets, in text order."""
    found = link_facets(text) + tag_facets(text)
    return sorted(found, key=lambda f: int(f["index"]["byteStart"]))


#CHANNEL
