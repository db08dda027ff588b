"""The `Channel` interface: limits, length rules, thread splitting and request previews.

A channel turns one rendered text into the HTTP requests a platform would receive. Previews
(`requests`) show those requests exactly, with every secret as its `${ENV_VAR}` reference; the
secret itself is only ever resolved by `send`, at the moment of sending.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

import regex  # type: ignore[import-untyped]  # no stubs; wrapped by `graphemes` below
from pydantic import AfterValidator, BaseModel, ConfigDict

from scheduler.channels.http import DEFAULT_TIMEOUT, HttpClient
from scheduler.channels.post import Media, Post
from scheduler.config import model
from scheduler.config.secrets import is_reference, resolve
from scheduler.content.images import Encoded, ImageLimits, encode_for
from scheduler.errors import SecretError

Kind = Literal["email", "post"]
JSON = dict[str, Any]

# --- text rules shared by the platforms ----------------------------------------------------

_GRAPHEME = regex.compile(r"\X")
_URL_CANDIDATE = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?'\"»”’…"


def graphemes(text: str) -> list[str]:
    """User-perceived characters (extended grapheme clusters, UAX #29)."""
    found: list[str] = _GRAPHEME.findall(text)
    return found


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) string indices of every http(s) URL, without trailing punctuation.

    A closing bracket ends the URL unless the URL opened it, so `(see https://x.org/a)` and
    `https://en.wikipedia.org/wiki/Foo_(bar)` both come out right.
    """
    spans: list[tuple[int, int]] = []
    for m in _URL_CANDIDATE.finditer(text):
        start, end = m.span()
        while end > start:
            last = text[end - 1]
            if last in _TRAILING_PUNCTUATION:
                end -= 1
            elif last in ")]}":
                opener = {")": "(", "]": "[", "}": "{"}[last]
                url = text[start:end]
                if url.count(opener) >= url.count(last):
                    break
                end -= 1
            else:
                break
        if end - start > len("https://"):
            spans.append((start, end))
    return spans


# --- settings --------------------------------------------------------------------------------


def _check_window(value: str) -> str:
    model.parse_duration(value)
    return value


class ChannelSettings(BaseModel):
    """Base of every platform's settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # How long a message keeps being retried while its server cannot be reached or answers
    # "try again later", before it is recorded failed (`scheduler retry` can send it then).
    retry_window: Annotated[str, AfterValidator(_check_window)] = "6h"


class _SecretMarker:
    """Marks a settings field that must be a `${ENV_VAR}` reference."""


SECRET = _SecretMarker()


def _require_reference(value: str) -> str:
    if not is_reference(value):
        raise ValueError(
            "a secret must not be written in campaigns.yaml; put it in an environment variable "
            "and write its name here as a reference, e.g. '${MASTODON_TOKEN}'"
        )
    return value


SecretRef = Annotated[str, SECRET, AfterValidator(_require_reference)]
"""A settings value that must be exactly one `${ENV_VAR}` reference."""


# Plain http only to this machine: a local test server or a tunnel, never over a network.
_LOOPBACK_HTTP = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?/?", re.I)


def _check_https(value: str) -> str:
    if not (
        re.fullmatch(r"https://[^\s/?#@]+\.[^\s/?#@]+/?", value, re.IGNORECASE)
        or _LOOPBACK_HTTP.fullmatch(value)
    ):
        raise ValueError(
            f"{value!r} is not an https origin; write it like 'https://social.example'"
        )
    return value.rstrip("/")


HttpsOrigin = Annotated[str, AfterValidator(_check_https)]
"""`https://host[:port]` (or `http://` to localhost), stored without a trailing slash."""


def secret_fields_of(settings: type[BaseModel]) -> tuple[str, ...]:
    """Names of the fields declared as `SecretRef`, in declaration order."""
    return tuple(n for n, f in settings.model_fields.items() if SECRET in f.metadata)


# --- previews --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedPost:
    """One HTTP request a channel would make, secrets shown as `${ENV_VAR}`; treat as read-only.

    Values a platform only returns while sending (the id of the previous part, a signature)
    appear as `{...}` placeholders that `note` explains.
    """

    method: str
    url: str
    headers: dict[str, str]
    json: JSON
    note: str = ""

    def as_dict(self) -> JSON:
        return asdict(self)


# --- splitting -------------------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_SENTENCE_END = re.compile(r"[.!?…。！？]['\"”’»)\]]*$")
_WORD = re.compile(r"\S+")

_PARAGRAPH, _SENTENCE, _WORD_LEVEL = 3, 2, 1


def counter(index: int, total: int) -> str:
    """The suffix that numbers part `index` (1-based) of a `total`-part thread."""
    return f" ({index}/{total})"


def split_thread(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Split `text` into parts that each satisfy `fits`, counter included.

    Parts break at paragraph boundaries first, then sentence ends (or single line breaks),
    then spaces; a URL is never cut unless it alone cannot fit. A word that cannot fit on its
    own is cut between graphemes. " (i/n)" counters are added only when there is more than one
    part. Empty or blank text gives no parts.
    """
    text = text.strip()
    if not text:
        return []
    if fits(text):
        return [text]
    words = [m.span() for m in _WORD.finditer(text)]
    urls = find_urls(text)
    digits = 1
    while True:
        widest = counter(10**digits - 1, 10**digits - 1)
        if not fits(widest.strip()):
            raise ValueError("the length limit is too small to number the parts of a thread")
        spans = _Splitter(text, words, urls, _with_suffix(fits, widest)).split()
        if len(spans) < 10**digits:
            total = len(spans)
            return [text[a:b] + counter(i, total) for i, (a, b) in enumerate(spans, 1)]
        digits += 1


def _with_suffix(fits: Callable[[str], bool], suffix: str) -> Callable[[str], bool]:
    return lambda part: fits(part + suffix)


class _Splitter:
    """Packs word spans into as few parts as fit, preferring the strongest boundaries."""

    def __init__(
        self,
        text: str,
        words: list[tuple[int, int]],
        urls: list[tuple[int, int]],
        fits: Callable[[str], bool],
    ) -> None:
        self.text = text
        self.words = words
        self.urls = urls
        self.fits = fits
        # strength[i]: how strong the boundary after word i is
        self.strength = [self._boundary(i) for i in range(len(words) - 1)]

    def _boundary(self, i: int) -> int:
        gap = self.text[self.words[i][1] : self.words[i + 1][0]]
        if _PARAGRAPH_BREAK.search(gap):
            return _PARAGRAPH
        if "\n" in gap or _SENTENCE_END.search(self.text[slice(*self.words[i])]):
            return _SENTENCE
        return _WORD_LEVEL

    def _span_fits(self, lo: int, hi: int) -> bool:
        return self.fits(self.text[self.words[lo][0] : self.words[hi - 1][1]])

    def split(self) -> list[tuple[int, int]]:
        ranges = self._split(0, len(self.words), _PARAGRAPH)
        spans: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if hi - lo == 1 and not self._span_fits(lo, hi):
                spans.extend(self._hard_split(*self.words[lo]))
            else:
                spans.append((self.words[lo][0], self.words[hi - 1][1]))
        return spans

    def _split(self, lo: int, hi: int, level: int) -> list[tuple[int, int]]:
        """Word-index ranges covering [lo, hi); an unfittable single word comes back alone."""
        if hi - lo == 1 or self._span_fits(lo, hi):
            return [(lo, hi)]
        cuts = [i + 1 for i in range(lo, hi - 1) if self.strength[i] >= level]
        if not cuts:
            return self._split(lo, hi, level - 1)
        segments = list(zip([lo, *cuts], [*cuts, hi], strict=True))
        parts: list[tuple[int, int]] = []
        current: tuple[int, int] | None = None
        for seg_lo, seg_hi in segments:
            if current is not None and self._span_fits(current[0], seg_hi):
                current = (current[0], seg_hi)
                continue
            if current is not None:
                parts.append(current)
            if self._span_fits(seg_lo, seg_hi):
                current = (seg_lo, seg_hi)
            else:
                pieces = self._split(seg_lo, seg_hi, level - 1)
                parts.extend(pieces[:-1])
                current = pieces[-1]
                if current[1] - current[0] == 1 and not self._span_fits(*current):
                    parts.append(current)
                    current = None
        if current is not None:
            parts.append(current)
        return parts

    def _hard_split(self, start: int, end: int) -> list[tuple[int, int]]:
        """Cut one word between graphemes; at URL boundaries first when the word holds one."""
        cut_points = {start, end}
        for a, b in self.urls:
            if start <= a < end:
                cut_points.update((a, min(b, end)))
        spans: list[tuple[int, int]] = []
        pos = start
        clusters = graphemes(self.text[start:end])
        offsets = [start]
        for g in clusters:
            offsets.append(offsets[-1] + len(g))
        while pos < end:
            best: int | None = None
            preferred: int | None = None
            for off in offsets:
                if off <= pos:
                    continue
                if not self.fits(self.text[pos:off]):
                    break
                best = off
                if off in cut_points:
                    preferred = off
            if best is None:
                raise ValueError("a single character does not fit within the length limit")
            stop = preferred if preferred is not None else best
            spans.append((pos, stop))
            pos = stop
        return spans


# --- the interface ---------------------------------------------------------------------------

SettingsT = TypeVar("SettingsT", bound=ChannelSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Where a channel runs: what it needs besides its own settings to open connections.

    `base_dir` is campaigns.yaml's folder (relative paths in settings start there);
    `redis_url` shares rate limits between processes (None: counted in this process).
    """

    base_dir: Path = Path(".")
    redis_url: str | None = None
    timeout: tuple[float, float] = DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """Something wrong with a channel's settings that only the whole project shows."""

    key: str  # the setting, under channels.NAME
    message: str
    hint: str | None = None
    severity: str = "error"  # or "warning", or "note" (said, never an error, even --strict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectFacts:
    """What a channel may check its settings against (see `Channel.project_problems`)."""

    base_dir: Path
    senders: frozenset[str]


@dataclass(frozen=True, slots=True)
class PostRef:
    """Where one posted part lives: the platform's id for it (a status id, a message id, an
    at:// URI; None where the platform answers with no id) and Bluesky's content hash."""

    id: str | None
    cid: str | None = None


PartPosted = Callable[[int, PostRef], None]
"""Called with (part number, where it went) as soon as the platform confirms a part."""

Uploaded = Callable[[str, str], None]
"""Called with (image name, the platform's id for it) as soon as an upload is confirmed."""


class Channel(ABC, Generic[SettingsT]):
    """A platform messages go to. Subclasses set the class attributes, `requests` and
    `send_part`."""

    type: ClassVar[str]
    kind: ClassVar[Kind] = "post"
    max_length: ClassVar[int | None]
    Settings: ClassVar[builtins.type[ChannelSettings]]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Whether resending a part whose answer was lost is harmless (the platform or receiver
    # recognises it). Where it is not, such a retry may show the part twice.
    idempotent: ClassVar[bool] = False
    # What the platform accepts as images (None: its posts carry none here); `validate`
    # checks every statement image against it.
    image_limits: ClassVar[ImageLimits | None] = None
    # The platform refuses a post without an image (Instagram): `validate` says so.
    needs_image: ClassVar[bool] = False
    # The platform fetches images from their public URL (Instagram, Threads, Facebook):
    # `scheduler web` serves them re-encoded to `image_limits` at `/media/for/<type>/…`.
    fetches_images: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        settings: SettingsT,
        *,
        language: str | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.language = language
        self.runtime = runtime or Runtime()
        self.timeout: tuple[float, float] = self.runtime.timeout
        self._client: HttpClient | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Settings" in cls.__dict__ and secret_fields_of(cls.Settings) != cls.secret_fields:
            raise TypeError(
                f"{cls.__name__}.secret_fields {cls.secret_fields} must name exactly the "
                f"SecretRef fields of its Settings: {secret_fields_of(cls.Settings)}"
            )

    @classmethod
    def from_config(
        cls, name: str, channel: model.Channel, *, runtime: Runtime | None = None
    ) -> Self:
        """Build from a campaigns.yaml channel; raises pydantic's ValidationError on bad settings.

        Error locations are relative to the channel's own mapping (e.g. `('token',)`).
        """
        if channel.type != cls.type:
            raise ValueError(f"channel {name!r} has type {channel.type!r}, not {cls.type!r}")
        settings = cls.Settings.model_validate(dict(channel.model_extra or {}))
        # Settings is the concrete class bound to SettingsT by each subclass.
        return cls(
            name,
            settings,  # type: ignore[arg-type]
            language=channel.language,
            runtime=runtime,
        )

    @classmethod
    def project_problems(
        cls, settings: ChannelSettings, facts: ProjectFacts
    ) -> list[SettingProblem]:
        """Problems of valid settings that the rest of the project shows (a sender that is
        not defined, a key file that is missing); `validate` reports them."""
        return []

    def strict_problems(self, env: Mapping[str, str] | None = None) -> list[SettingProblem]:
        """What only asking the platform shows (a token about to expire); `validate
        --strict` calls it. None by default."""
        return []

    @property
    def limit(self) -> int | None:
        """The length limit in force: `max_length`, unless the platform told us another."""
        return self.max_length

    def count(self, text: str) -> int:
        """Length of `text` by the platform's own rule."""
        return len(text)

    def fits(self, text: str) -> bool:
        """Whether the platform accepts `text` as one message."""
        return self.limit is None or self.count(text) <= self.limit

    def split(self, text: str) -> list[str]:
        """Thread parts, each accepted by `fits`, counters included when there are several."""
        if self.limit is None:
            stripped = text.strip()
            return [stripped] if stripped else []
        return split_thread(text, self.fits)

    @abstractmethod
    def requests(self, post: Post) -> list[PreparedPost]:
        """The requests `post` makes, in order, secrets redacted.

        `post.at` is the publication time when known (otherwise a placeholder is shown).
        """

    def preview(self, text: str, *, key: str, language: str, **fields: Any) -> list[PreparedPost]:
        """`requests` for the parts of `text` (other `Post` fields as keywords)."""
        return self.requests(
            Post(key=key, language=language, parts=tuple(self.split(text)), **fields)
        )

    # --- sending ------------------------------------------------------------------------

    def what(self) -> str:
        """How messages name this channel: never with a secret in it."""
        return f"{self.type} channel {self.name!r}"

    def secret(self, field: str, env: Mapping[str, str] | None = None) -> str:
        """The resolved value of a secret setting; SecretError names the unset variable."""
        return resolve(str(getattr(self.settings, field)), env)

    def client(self, env: Mapping[str, str] | None = None) -> HttpClient:
        """This channel's HTTP session, made on first use and kept for the process."""
        if self._client is None:
            values = []
            for field in self.secret_fields:
                # An unset variable is reported by the request that needs it.
                with contextlib.suppress(SecretError):
                    values.append(self.secret(field, env))
            self._client = HttpClient(self.what(), timeout=self.timeout, secrets=values)
        return self._client

    def prepare(self, env: Mapping[str, str] | None = None) -> None:
        """Learn what sending needs to know before splitting (e.g. the instance's limits)."""

    def send(
        self,
        post: Post,
        *,
        posted: Sequence[PostRef] = (),
        on_posted: PartPosted | None = None,
        on_uploaded: Uploaded | None = None,
        maybe_posted: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> list[PostRef]:
        """Post the parts of `post` not yet posted, in order, and return where every part went.

        Images go with the first part. Those in `post.uploaded` are on the platform already;
        the others are uploaded first and reported to `on_uploaded` (name, platform id) so
        the caller records them: a retry attaches the same upload.

        `posted` holds the refs of parts 1..len(posted), sent by an earlier attempt: the
        thread continues after them. `maybe_posted` says an earlier attempt may have been
        cut off after the platform took the next part; channels that can look it up do so
        before posting it again. `on_posted` is called after each part, so the caller can
        record it before the next one. Secrets are resolved here, from `env` (default
        os.environ). Raises TransientSendError or PermanentSendError (never with a secret
        in the message); the parts posted before the error have been reported.
        """
        if post.at is None:
            post = post.replace(at=dt.datetime.now(dt.UTC))
        refs = list(posted)
        first = len(refs) + 1
        if first == 1 and post.total:
            post = self._upload_all(post, on_uploaded, env)
        for index in range(first, post.total + 1):
            ref = self.send_part(
                index, post, refs, maybe_posted=maybe_posted and index == first, env=env
            )
            refs.append(ref)
            if on_posted is not None:
                on_posted(index, ref)
        return refs

    def _upload_all(
        self, post: Post, on_uploaded: Uploaded | None, env: Mapping[str, str] | None
    ) -> Post:
        uploaded = dict(post.uploaded)
        for media in self.to_upload(post):
            if media.name in uploaded:
                continue
            remote = self.upload(media, post, env)
            uploaded[media.name] = remote
            if on_uploaded is not None:
                on_uploaded(media.name, remote)
        return post.replace(uploaded=uploaded)

    def to_upload(self, post: Post) -> tuple[Media, ...]:
        """The images this platform needs uploaded before the post (none by default: the
        platform fetches them by URL, or gets them with the post itself)."""
        return ()

    def upload(self, media: Media, post: Post, env: Mapping[str, str] | None) -> str:
        """Upload one image and return the platform's id for it."""
        raise NotImplementedError(f"{self.type} channels do not upload images")

    def encoded(self, media: Media) -> Encoded:
        """The image's bytes as this platform receives them (re-encoded to fit if needed)."""
        return encode_for(media.path, self.image_limits or ImageLimits())

    def send_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        *,
        maybe_posted: bool,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        """Post part `index` (1-based) of `post`; `refs` holds the earlier parts.

        `post.at` is set (the time of sending).
        """
        raise NotImplementedError(f"{self.type} channels do not post; they send email")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def placeholder_time(at: dt.datetime | None) -> str:
    """RFC 3339 UTC with milliseconds, or a placeholder when the time is not known yet."""
    if at is None:
        return "{time of sending}"
    if at.tzinfo is None:
        raise ValueError("publication times must be timezone-aware")
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
