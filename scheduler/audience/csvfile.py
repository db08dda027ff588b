"""Read a subscriber list from CSV: one row per subscriber, every problem named by line and column.

The file must be UTF-8 (a byte-order mark is fine) with a header row. Columns: `email`
(required), `name`, `language`, `timezone`; any other column becomes a text attribute that
templates can use. Rows with a problem are left out of the result and reported as
warnings (`FILE:LINE:COL: warning: ...`): one bad row never stops the good ones, and nothing
about a bad row is guessed.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import IO

from scheduler.audience.address import address_key, address_problem, normalize_address
from scheduler.config.model import known_timezones
from scheduler.errors import Diagnostic
from scheduler.gc_pause import paused_gc

Source = str | os.PathLike[str] | IO[bytes]

KNOWN_COLUMNS = ("email", "name", "language", "timezone")
_SAVE_AS_UTF8 = (
    "save the file as UTF-8: in Excel 'Save As' > 'CSV UTF-8'; in LibreOffice tick "
    "'Edit filter settings' and pick 'Unicode (UTF-8)'"
)
_BOM = b"\xef\xbb\xbf"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RECENT = 64  # lines kept to locate a problem: more than any record spans


# Not frozen (treat it as read-only all the same): a frozen dataclass's __init__ costs
# 2.5 times as much, a tenth of reading a list.
@dataclass(slots=True, kw_only=True)
class SubscriberRow:
    """One valid subscriber read from a list file."""

    email: str  # stripped, domain lower-cased, local part as written
    name: str | None = None
    language: str
    timezone: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    row: int = 0  # line in the file where the record starts; the header is line 1
    # True when the file gave no language and `language` is the default: an import then
    # keeps a language the subscriber already chose.
    language_defaulted: bool = False

    @property
    def key(self) -> str:
        return address_key(self.email)


@dataclass(frozen=True, slots=True, kw_only=True)
class RowProblem:
    """Why a row (or, on line 1, the whole file) was rejected."""

    row: int  # line in the file; the header is line 1
    column: str | None  # None when the problem is about the row or file as a whole
    reason: str
    hint: str | None = None
    duplicate_of: int | None = None  # for duplicates: the row kept
    col: int = 0  # 1-based character column where the value starts on its line; 0 unknown

    def to_diagnostic(self, file: str) -> Diagnostic:
        message = f"column {self.column!r}: {self.reason}" if self.column else self.reason
        return Diagnostic(
            file=file,
            line=self.row,
            column=self.col,
            message=message,
            hint=self.hint,
            severity="warning",
            scope="list",
        )

    def to_json(self, file: str) -> dict[str, object]:
        return {
            "file": file,
            "line": self.row,
            "column": self.col,
            "field": self.column,
            "severity": "warning",
            "message": self.reason,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class CsvResult:
    rows: list[SubscriberRow]
    problems: list[RowProblem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def diagnostics(self, file: str) -> list[Diagnostic]:
        return [p.to_diagnostic(file) for p in self.problems]


def read_csv(source: Source, *, languages: Sequence[str], default_language: str) -> CsvResult:
    """Read a whole list into memory; see `iter_csv` for files too big for that."""
    rows: list[SubscriberRow] = []
    problems: list[RowProblem] = []
    keep_row, keep_problem = rows.append, problems.append
    with paused_gc():
        for item in iter_csv(source, languages=languages, default_language=default_language):
            if isinstance(item, SubscriberRow):
                keep_row(item)
            else:
                keep_problem(item)
    return CsvResult(rows, problems)


def iter_csv(
    source: Source, *, languages: Sequence[str], default_language: str
) -> Iterator[SubscriberRow | RowProblem]:
    """Yield each valid row and each problem in file order, holding one record at a time.

    Only the addresses seen so far are remembered (to report duplicates).
    """
    if default_language not in languages:
        raise ValueError(f"default_language {default_language!r} is not in {list(languages)}")
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            yield from _read(stream, languages, default_language)
    else:
        yield from _read(source, languages, default_language)


class _Lines:
    """Decode a byte stream line by line, noting (not raising on) lines that are not UTF-8."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream
        self.count = 0
        self.bad: dict[int, str] = {}
        # The text of the last few lines (line n at n % _RECENT), to say at which column of a
        # line a bad value starts.
        self._recent: list[str] = [""] * _RECENT

    def line(self, number: int) -> str:
        """The text of line `number`, if it is among the last few read ("" otherwise)."""
        if number > self.count or self.count - number >= _RECENT:
            return ""
        return self._recent[number % _RECENT]

    def __iter__(self) -> Iterator[str]:
        recent = self._recent
        for chunk in self._stream:
            # Binary iteration splits on \n only; old Mac files end lines with a bare \r.
            parts = chunk.splitlines(keepends=True) if b"\r" in chunk[:-2] else (chunk,)
            for raw in parts:
                self.count += 1
                if self.count == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                try:
                    if b"\x00" in raw:
                        raise ValueError("NUL")
                    text = raw.decode("utf-8")
                except ValueError:  # UnicodeDecodeError is one
                    text = self._decode(raw)
                recent[self.count % _RECENT] = text
                yield text

    def _decode(self, raw: bytes) -> str:
        if b"\x00" in raw:
            self.bad[self.count] = "line contains NUL bytes (is the file UTF-16?)"
            raw = raw.replace(b"\x00", b"")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.bad.setdefault(
                self.count,
                f"line is not valid UTF-8 (byte 0x{raw[e.start]:02x} at position {e.start + 1})",
            )
            return raw.decode("utf-8", "replace")


@lru_cache(maxsize=1)
def _zones_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in known_timezones()}


def _read(
    stream: IO[bytes], languages: Sequence[str], default_language: str
) -> Iterator[SubscriberRow | RowProblem]:
    head = stream.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        yield RowProblem(
            row=1, column=None, reason="the file is UTF-16, not UTF-8", hint=_SAVE_AS_UTF8
        )
        return
    lines = _Lines(chain([head + stream.readline()], stream) if head else stream)
    text_lines = iter(lines)
    first = next(text_lines, None)
    if first is None or not first.strip():
        yield RowProblem(
            row=1,
            column=None,
            reason="the file is empty or its first line is blank",
            hint="the first line must name the columns, e.g. email,name,language",
        )
        return
    if 1 in lines.bad:
        yield RowProblem(
            row=1, column=None, reason=f"the header {lines.bad[1]}", hint=_SAVE_AS_UTF8
        )
        return
    reader = csv.reader(chain([first], text_lines), delimiter=_delimiter(first))
    header = [h.strip().lower() for h in next(reader)]
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        if not name:
            continue  # spreadsheets often export trailing empty columns
        if name in positions:
            yield RowProblem(
                row=1,
                column=name,
                reason=f"column {name!r} appears more than once",
                hint="rename or delete the repeated column; only the first is read",
            )
            continue
        positions[name] = i
    if "email" not in positions:
        yield RowProblem(
            row=1,
            column="email",
            reason="there is no 'email' column",
            hint=_missing_email_hint(header),
        )
        return

    delimiter = _delimiter(first)
    checker = _RowChecker(positions, len(header), languages, default_language)
    bad_lines = lines.bad
    end = reader.line_num
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if bad_lines and any(n in bad_lines for n in range(start, end + 1)):
                if any(f.strip() for f in fields):
                    bad = [bad_lines[n] for n in range(start, end + 1) if n in bad_lines]
                    yield RowProblem(row=start, column=None, reason=bad[0], hint=_SAVE_AS_UTF8)
                continue
            checked = checker.check(start, fields)
            if checked is None:
                continue  # blank line
            if isinstance(checked, SubscriberRow):
                yield checked
                continue
            columns = _field_columns(lines.line(start), delimiter)
            for item in checked:
                if item.column in positions:
                    index = positions[item.column]
                    if index < len(columns):
                        item = dataclasses.replace(item, col=columns[index])
                yield item
    except csv.Error as e:
        yield RowProblem(
            row=end + 1,
            column=None,
            reason=f"cannot read the CSV: {e}",
            hint="check for an unbalanced double quote on or just before this line",
        )


def _field_columns(line: str, delimiter: str) -> list[int]:
    """1-based character columns where each field of a CSV line starts (quotes respected)."""
    starts = [1]
    quoted = False
    for i, char in enumerate(line.rstrip("\r\n")):
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            starts.append(i + 2)
    return starts


def _delimiter(header_line: str) -> str:
    # Excel in many European locales writes ';'; some tools write tabs.
    if "," in header_line:
        return ","
    for candidate in (";", "\t"):
        if candidate in header_line:
            return candidate
    return ","


def _missing_email_hint(header: list[str]) -> str:
    found = ", ".join(repr(h) for h in header if h) or "none"
    close = [h for h in header if "mail" in h]
    if close:
        return f"rename column {close[0]!r} to 'email' (columns found: {found})"
    return (
        f"the first line must name the columns, e.g. email,name,language (columns found: {found})"
    )


class _RowChecker:
    """Checks one record at a time. The hot path of an import: a valid row costs a few
    string operations and dictionary look-ups (languages, zones and each domain's address
    check are looked up, not recomputed); only a row with a problem takes the long way."""

    def __init__(
        self,
        positions: dict[str, int],
        width: int,
        languages: Sequence[str],
        default_language: str,
    ) -> None:
        absent = sys.maxsize  # an index no row reaches: the column is not in the file
        self._email = positions.get("email", absent)
        self._name = positions.get("name", absent)
        self._language = positions.get("language", absent)
        self._timezone = positions.get("timezone", absent)
        self._width = width
        self._languages = {lang.lower(): lang for lang in languages}
        self._offered = ", ".join(languages)
        self._default = default_language
        self._zones = _zones_by_lower_name()
        self._attributes = [(n, i) for n, i in positions.items() if n not in KNOWN_COLUMNS]
        self._seen: dict[str, int] = {}

    def check(self, row: int, fields: list[str]) -> SubscriberRow | list[RowProblem] | None:
        """The row, or what is wrong with it; None for a blank line."""
        count = len(fields)
        email = fields[self._email].strip() if self._email < count else ""
        if not email and not any(f.strip() for f in fields):
            return None
        problems: list[RowProblem] = []
        if count > self._width and any(f.strip() for f in fields[self._width :]):
            problems.append(
                RowProblem(
                    row=row,
                    column=None,
                    reason=f"the row has {count} values but the header names {self._width}",
                    hint="a value probably contains an unquoted comma: put it in double quotes",
                )
            )

        email = normalize_address(email)
        why = address_problem(email)
        if why is not None:
            reason = why if not email else f"invalid address {email!r}: {why}"
            problems.append(
                RowProblem(
                    row=row,
                    column="email",
                    reason=reason,
                    hint="correct the address or delete the row",
                )
            )
        else:
            # address_key(email), without normalizing again what is normalized already.
            first = self._seen.setdefault(email.lower(), row)
            if first != row:
                problems.append(
                    RowProblem(
                        row=row,
                        column="email",
                        reason=f"duplicate of row {first} ({email!r}), ignoring case",
                        hint="delete one of the two rows",
                        duplicate_of=first,
                    )
                )

        name = (fields[self._name].strip() if self._name < count else "") or None
        # isprintable() is False for every control character (and some other characters):
        # the regular expression then says whether it is one.
        if name is not None and not name.isprintable() and _CONTROL.search(name):
            what = "a line break" if ("\r" in name or "\n" in name) else "a control character"
            problems.append(
                RowProblem(
                    row=row,
                    column="name",
                    reason=f"the name contains {what}",
                    hint="a name must be one line of text: it goes into the To: header of emails",
                )
            )

        given = fields[self._language].strip() if self._language < count else ""
        defaulted = not given
        language = self._default if defaulted else self._languages.get(given.lower())
        if language is None:
            problems.append(
                RowProblem(
                    row=row,
                    column="language",
                    reason=f"language {given!r} is not offered",
                    hint=f"use one of {self._offered}, or leave it empty for {self._default!r}",
                )
            )

        timezone = (fields[self._timezone].strip() if self._timezone < count else "") or None
        if timezone is not None:
            canonical = self._zones.get(timezone.lower())
            if canonical is None:
                problems.append(
                    RowProblem(
                        row=row,
                        column="timezone",
                        reason=f"unknown time zone {timezone!r}",
                        hint=_timezone_hint(timezone),
                    )
                )
            timezone = canonical

        if problems or language is None:
            return problems
        attributes = {
            n: value for n, i in self._attributes if i < count and (value := fields[i].strip())
        }
        return SubscriberRow(
            email=email,
            name=name,
            language=language,
            timezone=timezone,
            attributes=attributes,
            row=row,
            language_defaulted=defaulted,
        )


def _timezone_hint(given: str) -> str:
    zones = _zones_by_lower_name()
    close = difflib.get_close_matches(given.lower(), list(zones), n=1, cutoff=0.75)
    if close:
        return f"did you mean {zones[close[0]]!r}? Or leave it empty"
    return "use an IANA name such as 'Europe/Madrid' or 'America/Mexico_City', or leave it empty"
