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
from scheduler.channels.post import Post
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


XRPC = "/xrpc/"


@dataclass(frozen=True, slots=True)
class _Session:
    did: str
    access_jwt: str
    refresh_jwt: str


def _error_name(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


class BlueskyChannel(Channel[BlueskySettings]):
    type = "bluesky"
    max_length: ClassVar[int | None] = 300
    Settings = BlueskySettings
    secret_fields = ("app_password",)
    idempotent = True  # a record key per part, looked up before a retry creates it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: _Session | None = None
        self._session_lock = threading.Lock()

    def count(self, text: str) -> int:
        """Graphemes (extended grapheme clusters), as Bluesky counts them."""
        return len(graphemes(text))

    def fits(self, text: str) -> bool:
        return super().fits(text) and len(text.encode()) <= MAX_BYTES

    def _record(
        self,
        index: int,
        text: str,
        *,
        language: str,
        created_at: str,
        root: dict[str, str] | None,
        parent: dict[str, str] | None,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "$type": COLLECTION,
            "text": text,
            "langs": [language],
            "createdAt": created_at,
        }
        found = facets(text)
        if found:
            record["facets"] = found
        if root is not None and parent is not None:
            record["reply"] = {"root": root, "parent": parent}
        return record

    def _body(self, rkey: str, record: dict[str, Any]) -> dict[str, Any]:
        repo = self.settings.handle
        return {"repo": repo, "collection": COLLECTION, "rkey": rkey, "record": record}

    @staticmethod
    def _created_at(at: dt.datetime | None, index: int) -> str:
        # A millisecond apart, so the parts of a thread keep their order.
        return placeholder_time(None if at is None else at + dt.timedelta(milliseconds=index - 1))

    def requests(self, post: Post) -> list[PreparedPost]:
        parts, key, language, at = post.parts, post.key, post.language, post.at
        s = self.settings
        rkeys = [record_key(key, i) for i in range(1, len(parts) + 1)]

        def ref(index: int) -> dict[str, str]:
            return {
                "uri": f"at://{{did of {s.handle}}}/{COLLECTION}/{rkeys[index - 1]}",
                "cid": f"{{cid of part {index}}}",
            }

        posts = []
        for index, text in enumerate(parts, 1):
            record = self._record(
                index,
                text,
                language=language,
                created_at=self._created_at(at, index),
                root=ref(1) if index > 1 else None,
                parent=ref(index - 1) if index > 1 else None,
            )
            note = (
                "authorized with the accessJwt of com.atproto.server.createSession "
                f"(identifier {s.handle}, password {redact(s.app_password)}); "
                "before a retry, getRecord with this rkey shows whether it was already posted"
            )
            if index > 1:
                note += f"; replies to part {index - 1} (cid from its response)"
            posts.append(
                PreparedPost(
                    method="POST",
                    url=f"{redact(s.service)}{XRPC}com.atproto.repo.createRecord",
                    headers={
                        "Authorization": "Bearer {accessJwt}",
                        "Content-Type": "application/json",
                    },
                    json=self._body(rkeys[index - 1], record),
                    note=note,
                )
            )
        return posts

    # --- sending ------------------------------------------------------------------------

    def _login(self, http: HttpClient, env: Mapping[str, str] | None) -> _Session:
        """com.atproto.server.createSession: rate-limited, so done once and then refreshed."""
        action = "signing in"
        response = http.check(
            http.request(
                "POST",
                f"{self.settings.service}{XRPC}com.atproto.server.createSession",
                action=action,
                json_body={
                    "identifier": self.settings.handle,
                    "password": self.secret("app_password", env),
                },
            ),
            action=action,
            hints={
                401: "the handle or app password was refused: create an app password in "
                "Bluesky's settings and update the environment variable"
            },
        )
        return self._session_from(response, action)

    def _session_from(self, response: Any, action: str) -> _Session:
        try:
            body = response.json()
            return _Session(str(body["did"]), str(body["accessJwt"]), str(body["refreshJwt"]))
        except (ValueError, KeyError, TypeError):
            raise PermanentPostError(
                f"{self.what()}: {action}: the server answered without a session"
            ) from None

    def _refresh(self, http: HttpClient, env: Mapping[str, str] | None, old: _Session) -> _Session:
        """com.atproto.server.refreshSession; a full sign-in when the refresh token is
        spent too."""
        action = "refreshing the session"
        response = http.request(
            "POST",
            f"{self.settings.service}{XRPC}com.atproto.server.refreshSession",
            action=action,
            headers={"Authorization": f"Bearer {old.refresh_jwt}"},
        )
        if response.status_code in (400, 401):
            return self._login(http, env)
        return self._session_from(http.check(response, action=action), action)

    def _call(
        self,
        method: str,
        nsid: str,
        *,
        action: str,
        env: Mapping[str, str] | None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """An authorized XRPC call; an expired access token is refreshed once and the call
        repeated. The response is returned unchecked."""
        http = self.client(env)
        with self._session_lock:
            if self._session is None:
                self._session = self._login(http, env)
            session = self._session
        for attempt in (1, 2):
            response = http.request(
                method,
                f"{self.settings.service}{XRPC}{nsid}",
                action=action,
                json_body=json_body,
                params=params,
                headers={"Authorization": f"Bearer {session.access_jwt}"},
            )
            expired = response.status_code in (400, 401) and _error_name(response) in (
                "ExpiredToken",
                "InvalidToken",
            )
            if not expired or attempt == 2:
                return response
            with self._session_lock:
                if self._session is session:  # nobody refreshed it meanwhile
                    self._session = self._refresh(http, env, session)
                session = self._session
        raise AssertionError("unreachable")  # pragma: no cover

    def _existing(self, rkey: str, env: Mapping[str, str] | None, action: str) -> PostRef | None:
        """The part, if an earlier attempt created it (com.atproto.repo.getRecord)."""
        response = self._call(
            "GET",
            "com.atproto.repo.getRecord",
            action=f"{action}: checking whether it was posted",
            env=env,
            params={"repo": self.settings.handle, "collection": COLLECTION, "rkey": rkey},
        )
        if response.status_code in (400, 404) and _error_name(response) in (
            "RecordNotFound",
            "",
        ):
            return None
        self.client(env).check(response, action=f"{action}: checking whether it was posted")
        return self._ref(response, action)

    def _ref(self, response: Any, action: str) -> PostRef:
        try:
            body = response.json()
            return PostRef(id=str(body["uri"]), cid=str(body["cid"]))
        except (ValueError, KeyError, TypeError):
            raise PermanentPostError(
                f"{self.what()}: {action}: the server answered without a uri and cid"
            ) from None

    def send_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        *,
        maybe_posted: bool,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        parts, key, language, at = post.parts, post.key, post.language, post.at
        action = f"posting part {index} of {len(parts)}"
        rkey = record_key(key, index)
        if maybe_posted:
            found = self._existing(rkey, env, action)
            if found is not None:
                return found

        def strong(ref: PostRef) -> dict[str, str]:
            return {"uri": str(ref.id), "cid": str(ref.cid)}

        record = self._record(
            index,
            parts[index - 1],
            language=language,
            created_at=self._created_at(at, index),
            root=strong(refs[0]) if index > 1 else None,
            parent=strong(refs[-1]) if index > 1 else None,
        )
        response = self._call(
            "POST",
            "com.atproto.repo.createRecord",
            action=action,
            env=env,
            json_body=self._body(rkey, record),
        )
        try:
            self.client(env).check(
                response,
                action=action,
                hints={400: "the server rejected the record", 401: "the session was refused"},
            )
        except TransientPostError as e:
            # A record key already taken answers 500: the part may be there already.
            e.maybe_accepted = True
            raise
        return self._ref(response, action)
