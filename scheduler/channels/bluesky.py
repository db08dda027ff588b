"""Bluesky: posts of up to 300 graphemes (and 3000 UTF-8 bytes), threaded as replies."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Annotated, Any, ClassVar

from pydantic import Field

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    HttpsOrigin,
    PreparedPost,
    SecretRef,
    find_urls,
    graphemes,
    placeholder_time,
)
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


def link_facets(text: str) -> list[dict[str, Any]]:
    """app.bsky.richtext.facet#link for every URL, indexed by UTF-8 byte offsets."""
    facets = []
    for start, end in find_urls(text):
        byte_start = len(text[:start].encode())
        byte_end = byte_start + len(text[start:end].encode())
        facets.append(
            {
                "index": {"byteStart": byte_start, "byteEnd": byte_end},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": text[start:end]}],
            }
        )
    return facets


class BlueskyChannel(Channel[BlueskySettings]):
    type = "bluesky"
    max_length: ClassVar[int | None] = 300
    Settings = BlueskySettings
    secret_fields = ("app_password",)

    def count(self, text: str) -> int:
        """Graphemes (extended grapheme clusters), as Bluesky counts them."""
        return len(graphemes(text))

    def fits(self, text: str) -> bool:
        return super().fits(text) and len(text.encode()) <= MAX_BYTES

    def requests(
        self, parts: list[str], *, key: str, language: str, at: dt.datetime | None = None
    ) -> list[PreparedPost]:
        s = self.settings
        rkeys = [record_key(key, i) for i in range(1, len(parts) + 1)]

        def ref(index: int) -> dict[str, str]:
            return {
                "uri": f"at://{{did of {s.handle}}}/{COLLECTION}/{rkeys[index - 1]}",
                "cid": f"{{cid of part {index}}}",
            }

        posts = []
        for index, text in enumerate(parts, 1):
            record: dict[str, Any] = {
                "$type": COLLECTION,
                "text": text,
                "langs": [language],
                # A millisecond apart, so the parts of a thread keep their order.
                "createdAt": placeholder_time(
                    None if at is None else at + dt.timedelta(milliseconds=index - 1)
                ),
            }
            facets = link_facets(text)
            if facets:
                record["facets"] = facets
            note = (
                "authorized with the accessJwt of com.atproto.server.createSession "
                f"(identifier {s.handle}, password {redact(s.app_password)}); "
                "before a retry, getRecord with this rkey shows whether it was already posted"
            )
            if index > 1:
                record["reply"] = {"root": ref(1), "parent": ref(index - 1)}
                note += f"; replies to part {index - 1} (cid from its response)"
            posts.append(
                PreparedPost(
                    method="POST",
                    url=f"{redact(s.service)}/xrpc/com.atproto.repo.createRecord",
                    headers={
                        "Authorization": "Bearer {accessJwt}",
                        "Content-Type": "application/json",
                    },
                    json={
                        "repo": s.handle,
                        "collection": COLLECTION,
                        "rkey": rkeys[index - 1],
                        "record": record,
                    },
                    note=note,
                )
            )
        return posts
