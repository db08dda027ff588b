"""Compose one campaign email for many recipients, fast, as SMTP wire bytes.

`email.message.EmailMessage` costs milliseconds per multipart message, which caps a sender at a
few hundred messages a second. A campaign's email is the same for every recipient of one
language except for a few values (name, unsubscribe link, ...), so `MessageFactory` does the
expensive work once and `build()` only fills in the per-recipient parts:

- The caller renders the email once per language with placeholder *tokens* (plain ASCII
  letters and digits, e.g. ``ZZRCPT0ZZ7f3a9c``, so they survive Jinja autoescaping and CSS
  inlining) standing in for per-recipient values, and passes the tokens in.
- Every constant header (From, Reply-To, Subject, Date, List-Id, List-Unsubscribe-Post,
  Content-Language, MIME-Version, Content-Type with a random boundary) is encoded and folded
  once. Per recipient only To, Message-ID and List-Unsubscribe are written, with validation
  that makes header injection impossible.
- The bodies are split on the tokens once. Both parts are base64 (57 input bytes per 76-column
  line); the base64 of the constant stretches between tokens is cached for each of the 57
  possible line alignments, so a build encodes only the values and the few bytes around them.
  The output is byte-for-byte what encoding the whole substituted body would give.

The output uses CRLF line endings throughout, is pure ASCII and keeps every line under 998
bytes: ready for SMTP ``DATA`` (dot-stuffing is the transport's job; base64 lines never start
with a dot, and no header line does either).

`MessageFactory.build_reference` builds the same message the slow way, with
`scheduler.content.message.build_email`: the oracle for tests and the benchmark.
"""

from __future__ import annotations

import datetime as dt
import functools
import html as html_lib
import re
import secrets
from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from email.utils import format_datetime

from scheduler.config.model import Sender
from scheduler.listhealth.mailto import mailto_uri

__all__ = ["MessageFactory", "encode_phrase", "sanitize_header_text"]

CRLF = b"\r\n"
MAX_LINE = 998  # RFC 5322 hard limit on a line, without the CRLF
FOLD_AT = 78  # RFC 5322 recommended limit; constant and per-recipient headers fold here
_B64_IN = 57  # input bytes per base64 line: 57 bytes -> 76 characters
_EW_BYTES = 42  # UTF-8 bytes per encoded-word: 68 chars; "Subject: " + 68 = 77 <= 78
MAX_ADDRESS = 254  # RFC 5321 path limit minus the angle brackets
_LONG_WORD = 900  # an ASCII word longer than this cannot be folded: encode instead

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators become spaces,
# then runs of whitespace collapse to one space: a header value is always one logical line.
_CONTROLS = str.maketrans({c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]})
# RFC 5322 specials: a display name containing any of them is sent as a quoted-string.
_SPECIALS = frozenset('()<>[]:;@\\,."')

# Plain ASCII addresses only: dot-atom local part, host name domain. No CR, LF, space, angle
# brackets, commas or quotes can get into a header through an address.
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# Printable ASCII except space, '<', '>' and (for the id halves) '@'.
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?A-~]+>")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[!#-;=?-~]+")  # no space, '"', '<', '>'
_LIST_ID = re.compile(r"[ -;=?-~]*<[!-;=?-~]+>")  # optional ASCII phrase, then <list-id>
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_TOKEN = re.compile(r"[A-Za-z0-9]{6,}")


# --- header helpers --------------------------------------------------------------------------


def sanitize_header_text(text: str) -> str:
    """One line of text for a header: control characters to spaces, whitespace collapsed."""
    if not text.isprintable():
        text = text.translate(_CONTROLS)
    return " ".join(text.split())


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 "B" encoded-words of at most 75 characters, cut between UTF-8 characters."""
    data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    words: list[str] = []
    start, end = 0, len(data)
    while start < end:
        stop = min(start + _EW_BYTES, end)
        while stop < end and data[stop] & 0xC0 == 0x80:  # never split a character
            stop -= 1
        chunk = b2a_base64(data[start:stop], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{chunk}?=")
        start = stop
    return words


def _needs_encoding(text: str) -> bool:
    # Non-ASCII needs RFC 2047; "=?" would be taken for an encoded-word by a decoder; a word
    # too long to fit on a line can only be split as encoded-words.
    if not text.isascii() or "=?" in text:
        return True
    return len(text) > _LONG_WORD and any(len(w) > _LONG_WORD for w in text.split(" "))


def _plain_word(word: str) -> bool:
    return word.isascii() and "=?" not in word and _SPECIALS.isdisjoint(word)


def _encoded_run(words: list[str]) -> list[str]:
    """Encoded-words for consecutive words, cut only between words where possible.

    The space between two words goes *inside* the encoded-word before the cut: RFC 2047
    decoders drop the folding white space between adjacent encoded-words, so they get the
    text back exactly. (Python's headerregistry keeps that white space in display names, so
    it shows two spaces there; that is its bug, and a cut between words is the gentlest place
    for it.) Only a single word longer than one encoded-word is cut inside.
    """
    chunks: list[str] = []
    current, size = "", 0
    last = len(words) - 1
    for i, word in enumerate(words):
        segment = word if i == last else word + " "
        length = len(segment.encode("utf-8", "replace"))
        if current and size + length > _EW_BYTES:
            chunks.append(current)
            current, size = "", 0
        current += segment
        size += length
    if current:
        chunks.append(current)
    return [word for chunk in chunks for word in _encoded_words(chunk)]


def encode_phrase(name: str) -> list[str]:
    """A display name as foldable pieces: atoms, a quoted-string, or encoded-words.

    `name` must already be sanitized (see `sanitize_header_text`). Pieces are joined with a
    space or a fold (CRLF + space); either way a decoder gets `name` back. Plain ASCII words
    stay readable; runs of other words become RFC 2047 "B" encoded-words.
    """
    if not _needs_encoding(name):
        if _SPECIALS.isdisjoint(name):
            return name.split(" ")
        # A quoted-string may be folded at its spaces (RFC 5322 qcontent with FWS).
        return ('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"').split(" ")
    if len(name) > _LONG_WORD and any(len(w) > _LONG_WORD for w in name.split(" ")):
        return _encoded_words(name)
    pieces: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if _plain_word(word):
            if run:
                pieces += _encoded_run(run)
                run = []
            pieces.append(word)
        else:
            run.append(word)
    if run:
        pieces += _encoded_run(run)
    return pieces


def _fold(name: str, pieces: Sequence[str]) -> str:
    """``Name: piece piece`` folded between pieces at 78 columns, with the final CRLF."""
    lines: list[str] = []
    line = f"{name}:"
    for piece in pieces:
        if len(line) + 1 + len(piece) > FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + piece
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _unstructured(name: str, text: str) -> str:
    """An unstructured header (Subject): plain words folded at spaces, or encoded-words."""
    text = sanitize_header_text(text)
    if not text:
        return f"{name}: \r\n"
    pieces = _encoded_words(text) if _needs_encoding(text) else text.split(" ")
    return _fold(name, pieces)


def _check_address(address: str, what: str) -> str:
    if len(address) > MAX_ADDRESS or not _ADDRESS.fullmatch(address):
        raise ValueError(
            f"{what} {address!r} is not a plain ASCII address (local@domain without spaces, "
            "CR/LF, angle brackets, quotes or commas); internationalized addresses need SMTPUTF8"
        )
    return address


def _mailbox(name: str | None, address: str) -> list[str]:
    """The pieces of a mailbox: the encoded display name, if any, then ``<address>``."""
    display = sanitize_header_text(name) if name else ""
    if not display:
        return [address]
    return [*encode_phrase(display), f"<{address}>"]


# --- base64 bodies ---------------------------------------------------------------------------


def _b64_lines(data: bytes) -> bytes:
    """Base64 in 76-column lines, each ending in CRLF (what base64.encodebytes does, in CRLF)."""
    if not data:
        return b""
    encoded = b2a_base64(data, newline=False)
    if len(encoded) <= 76:
        return encoded + CRLF
    return CRLF.join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + CRLF


def _canonical(text: str) -> str:
    """Text in MIME canonical form: CRLF line breaks (RFC 2045 section 6.8)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n", "\r\n")


# One cached alignment of a constant segment: bytes to complete the pending line (None when
# the segment is too short to complete it), the full base64 lines after that, and the tail.
_Entry = tuple[bytes | None, bytes, bytes]


class _Base64Body:
    """A body split on tokens whose base64 encoding is assembled from cached pieces."""

    __slots__ = ("_cache", "_segments", "_slots")

    def __init__(self, segments: list[bytes], slots: list[int]) -> None:
        assert len(segments) == len(slots) + 1
        self._segments = segments
        self._slots = slots  # the token index of the value that follows segments[i]
        self._cache: list[list[_Entry | None]] = [[None] * _B64_IN for _ in segments]

    def _entry(self, index: int, pending: int) -> _Entry:
        segment = self._segments[index]
        need = (_B64_IN - pending) % _B64_IN
        if len(segment) < need:
            return None, b"", segment
        rest = segment[need:]
        full = len(rest) - len(rest) % _B64_IN
        return segment[:need], _b64_lines(rest[:full]), rest[full:]

    def render(self, values: Sequence[bytes], out: list[bytes]) -> None:
        """Append the base64 lines of the body with `values` in place of the tokens."""
        start = len(out)
        pending = b""  # bytes not yet encoded; always shorter than one line's 57
        cache = self._cache
        slots = self._slots
        last = len(slots)
        for index, segment in enumerate(self._segments):
            aligned = cache[index]
            entry = aligned[len(pending)]
            if entry is None:
                entry = aligned[len(pending)] = self._entry(index, len(pending))
            head, middle, tail = entry
            if head is None:
                pending += segment
            else:
                if pending or head:
                    out.append(_b64_lines(pending + head))
                if middle:
                    out.append(middle)
                pending = tail
            if index < last:
                pending += values[slots[index]]
                if len(pending) >= _B64_IN:
                    full = len(pending) - len(pending) % _B64_IN
                    out.append(_b64_lines(pending[:full]))
                    pending = pending[full:]
        if pending:
            out.append(_b64_lines(pending))
        if len(out) == start:  # an empty body: the CRLF before the next boundary
            out.append(CRLF)


def _split(body: str, pattern: re.Pattern[str] | None, index: Mapping[str, int]) -> _Base64Body:
    parts = pattern.split(body) if pattern is not None else [body]
    segments = [_canonical(p).encode("utf-8") for p in parts[0::2]]
    slots = [index[t] for t in parts[1::2]]
    return _Base64Body(segments, slots)


# The last Date line made: (whole second since the epoch, UTC offset, line). One tuple,
# replaced whole, so a thread reading it while another composes sees one consistent entry.
_last_date: tuple[float, dt.timedelta, bytes] | None = None


def _date_line(date: dt.datetime) -> bytes:
    global _last_date
    offset = date.utcoffset()
    if offset is None:
        raise ValueError("the Date of a message must be timezone-aware")
    # Messages composed in the same second share the last line: a comparison instead of
    # hashing a datetime for the cache below (1.6 us a message of 2.5, measured). The offset
    # is part of the key: equal instants in two zones print differently.
    second = date.timestamp() // 1
    last = _last_date
    if last is not None and last[0] == second and last[1] == offset:
        return last[2]
    line = _second_line(date.replace(microsecond=0), offset)
    _last_date = (second, offset, line)
    return line


@functools.lru_cache(maxsize=4)
def _second_line(date: dt.datetime, offset: dt.timedelta | None) -> bytes:
    # Every message of a send carries the second it is composed in: a few thousand a
    # second share one line, so format_datetime runs once a second, not once a message.
    return f"Date: {format_datetime(date)}\r\n".encode("ascii")


# --- the factory -----------------------------------------------------------------------------


class MessageFactory:
    """Composes one campaign email (one language) for many recipients, fast.

    Create one per (campaign occurrence, language) and call `build()` per recipient. The
    factory is immutable apart from its base64 cache and safe to share between threads.
    """

    def __init__(
        self,
        *,
        sender: Sender,
        subject: str,
        text: str,
        html: str,
        language: str,
        list_id: str,
        unsubscribe_mailto: str | None,
        date: dt.datetime,
        tokens: Sequence[str],
    ) -> None:
        """Precompute everything that is the same for every recipient.

        `list_id` is the whole List-Id value, e.g. ``<may-day.example.org>`` from
        `scheduler.content.message.list_id_for`. `tokens` are the placeholders in `text` and
        `html` (ASCII letters and digits, at least 6, none inside another); they may not occur
        in `subject`, which is encoded once for all recipients.
        """
        self._check_tokens(tokens, subject)
        if date.tzinfo is None or date.utcoffset() is None:
            raise ValueError("the Date of a message must be timezone-aware")
        if not _LANGUAGE.fullmatch(language):
            raise ValueError(f"Content-Language {language!r} is not a language tag")
        if not _LIST_ID.fullmatch(list_id) or len(list_id) > MAX_LINE - 10:
            raise ValueError(f"List-Id {list_id!r} must be ASCII, one line, ending in <id>")
        _check_address(sender.address, "sender address")
        if unsubscribe_mailto is not None:
            _check_address(unsubscribe_mailto, "unsubscribe mailto address")

        self.sender = sender
        self.subject = subject
        self.text = text
        self.html = html
        self.language = language
        self.list_id = list_id
        self.unsubscribe_mailto = unsubscribe_mailto
        self.date = date
        self.tokens = tuple(tokens)

        self.boundary = self._boundary(text, html)
        head = _fold("From", _mailbox(sender.display_name(language), sender.address))
        if sender.reply_to:
            head += _fold("Reply-To", [_check_address(sender.reply_to, "reply-to address")])
        head += _unstructured("Subject", subject)
        self._head = head.encode("ascii")
        self._date_line = _date_line(date)
        part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n'
        self._middle = (
            f"List-Id: {list_id}\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            f"Content-Language: {language}\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative;\r\n boundary="{self.boundary}"\r\n'
            "\r\n"
            f"--{self.boundary}\r\n{part.format('plain')}\r\n"
        ).encode("ascii")
        self._between = f"--{self.boundary}\r\n{part.format('html')}\r\n".encode("ascii")
        self._end = f"--{self.boundary}--\r\n".encode("ascii")

        # Like EmailMessage.set_content, end each body with a line break.
        text = text if text.endswith("\n") else text + "\n"
        html = html if html.endswith("\n") else html + "\n"
        index = {token: i for i, token in enumerate(self.tokens)}
        alternatives = "|".join(re.escape(token) for token in self.tokens)
        pattern = re.compile(f"({alternatives})") if self.tokens else None
        self._text = _split(text, pattern, index)
        self._html = _split(html, pattern, index)

    @staticmethod
    def _check_tokens(tokens: Sequence[str], subject: str) -> None:
        if isinstance(tokens, str):
            raise TypeError("tokens must be a sequence of strings, not one string")
        for token in tokens:
            if not _TOKEN.fullmatch(token):
                raise ValueError(f"token {token!r} must be at least 6 ASCII letters or digits")
            if token in subject:
                raise ValueError(f"token {token!r} occurs in the subject; subjects are shared")
            for other in tokens:
                if other is not token and token in other:
                    raise ValueError(f"token {token!r} occurs inside token {other!r}")

    @staticmethod
    def _boundary(text: str, html: str) -> str:
        # "_" is not in the base64 alphabet, so the boundary cannot occur in an encoded body;
        # it is also checked against the bodies as written, in case anyone ever reads them raw.
        while True:
            boundary = f"=_{secrets.token_hex(16)}"
            if boundary not in text and boundary not in html:
                return boundary

    def build(
        self,
        *,
        to_email: str,
        to_name: str | None,
        message_id: str,
        unsubscribe_url: str,
        values: Mapping[str, str],
        date: dt.datetime | None = None,
    ) -> bytes:
        """The whole message for one recipient, as CRLF wire bytes.

        `date` is the message's Date (default: the factory's): the time it is really sent.

        `values` maps every token to the recipient's raw value: inserted as is into the text
        part and HTML-escaped (``html.escape(value, quote=True)``) into the HTML part.
        `message_id` is the complete ``<id@domain>``. Raises ValueError for an address,
        Message-ID or URL that could break the header, or a missing token value.
        """
        _check_address(to_email, "recipient address")
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"Message-ID {message_id!r} must look like <id@domain> (ASCII)")
        if not _URL.fullmatch(unsubscribe_url):
            raise ValueError(
                f'unsubscribe URL {unsubscribe_url!r} must be ASCII without spaces or <>"'
            )

        to = _fold("To", _mailbox(to_name, to_email)) if to_name else f"To: {to_email}\r\n"
        # The mailto carries the link's token too, so a request to it names the subscriber.
        mailto_suffix = (
            f", <{mailto_uri(self.unsubscribe_mailto, unsubscribe_url)}>"
            if self.unsubscribe_mailto is not None
            else ""
        )
        unsubscribe = f"List-Unsubscribe: <{unsubscribe_url}>{mailto_suffix}\r\n"
        if len(unsubscribe) > MAX_LINE + 2:
            # One line if at all possible (some receivers mishandle folded URLs); else fold
            # only at the ", " between the two URIs. Never RFC 2047: URLs stay plain ASCII.
            first = f"List-Unsubscribe: <{unsubscribe_url}>"
            if not mailto_suffix or len(first) + 1 > MAX_LINE:
                raise ValueError(f"unsubscribe URL is too long ({len(unsubscribe_url)} chars)")
            unsubscribe = f"{first},\r\n{mailto_suffix[1:]}\r\n"

        text_values: list[bytes] = []
        html_values: list[bytes] = []
        for token in self.tokens:
            try:
                value = values[token]
            except KeyError:
                raise ValueError(f"no value for token {token!r}") from None
            if "\n" in value or "\r" in value:
                value = _canonical(value)
            html_values.append(html_lib.escape(value, quote=True).encode("utf-8", "replace"))
            text_values.append(value.encode("utf-8", "replace"))

        date_line = self._date_line if date is None else _date_line(date)
        out = [
            self._head,
            date_line,
            f"{to}Message-ID: {message_id}\r\n{unsubscribe}".encode("ascii"),
        ]
        out.append(self._middle)
        self._text.render(text_values, out)
        out.append(self._between)
        self._html.render(html_values, out)
        out.append(self._end)
        return b"".join(out)

    def substitute(self, values: Mapping[str, str]) -> tuple[str, str]:
        """The text and HTML bodies with `values` in place of the tokens (for previews, tests)."""
        text, html = self.text, self.html
        for token in self.tokens:
            text = text.replace(token, values[token])
            html = html.replace(token, html_lib.escape(values[token], quote=True))
        return text, html

    def build_reference(
        self,
        *,
        to_email: str,
        to_name: str | None,
        message_id: str,
        unsubscribe_url: str,
        values: Mapping[str, str],
    ) -> bytes:
        """The same message built slowly with `scheduler.content.message.build_email`.

        The oracle for tests and the benchmark: `build()` must decode to the same headers and
        bodies. Message-ID and List-Id are set to this call's values after `build_email`.
        """
        from scheduler.content.message import build_email
        from scheduler.content.render import Recipient, RenderedEmail

        text, html = self.substitute(values)
        rendered = RenderedEmail(
            subject=self.subject,
            html=html,
            text=text,
            language=self.language,
            html_template="",
            text_template="",
            unsubscribe_url=unsubscribe_url,
        )
        msg = build_email(
            rendered=rendered,
            sender=self.sender,
            recipient=Recipient(email=to_email, name=to_name, language=self.language),
            delivery_key=message_id,
            list_name="reference",
            unsubscribe_mailto=self.unsubscribe_mailto,
            date=self.date,
        )
        msg.replace_header("Message-ID", message_id)
        msg.replace_header("List-Id", self.list_id)
        return msg.as_bytes()
