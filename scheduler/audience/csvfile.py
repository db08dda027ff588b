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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import IO

from scheduler.audience.address import address_key, address_problem, normalize_address
from scheduler.config.model import known_timezones
from scheduler.errors import Diagnostic

Source = str | os.PathLike[str] | IO[bytes]

KNOWN_COLUMNS = ("email", "name", "language", "timezone")
_SAVE_AS_UTF8 = (
    "save the file as UTF-8: in Excel 'Save As' > 'CSV UTF-8'; in LibreOffice tick "
    "'Edit filter settings' and pick 'Unicode (UTF-8)'"
)
_BOM = b"\xef\xbb\xbf"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
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
    for item in iter_csv(source, languages=languages, default_language=default_language):
        if isinstance(item, SubscriberRow):
            rows.append(item)
        else:
            problems.append(item)
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
        # The text of the last few lines, to say at which column of a line a bad value starts.
        self.recent: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for chunk in self._stream:
            # Binary iteration splits on \n only; old Mac files end lines with a bare \r.
            parts = chunk.splitlines(keepends=True) if b"\r" in chunk[:-2] else [chunk]
            for raw in parts:
                self.count += 1
                if self.count == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                text = self._decode(raw)
                self.recent[self.count] = text
                self.recent.pop(self.count - 64, None)
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
    end = reader.line_num
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank line
            bad = [lines.bad[n] for n in range(start, end + 1) if n in lines.bad]
            if bad:
                yield RowProblem(row=start, column=None, reason=bad[0], hint=_SAVE_AS_UTF8)
                continue
            columns = _field_columns(lines.recent.get(start, ""), delimiter)
            for item in checker.check(start, fields):
                if isinstance(item, RowProblem) and item.column in positions:
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
    def __init__(
        self,
        positions: dict[str, int],
        width: int,
        languages: Sequence[str],
        default_language: str,
    ) -> None:
        self._positions = positions
        self._width = width
        self._languages = {lang.lower(): lang for lang in languages}
        self._offered = ", ".join(languages)
        self._default = default_language
        self._attributes = [(n, i) for n, i in positions.items() if n not in KNOWN_COLUMNS]
        self._seen: dict[str, int] = {}

    def _cell(self, fields: list[str], column: str) -> str:
        i = self._positions.get(column)
        return fields[i].strip() if i is not None and i < len(fields) else ""

    def check(self, row: int, fields: list[str]) -> Iterator[SubscriberRow | RowProblem]:
        problems: list[RowProblem] = []
        if len(fields) > self._width and any(f.strip() for f in fields[self._width :]):
            problems.append(
                RowProblem(
                    row=row,
                    column=None,
                    reason=f"the row has {len(fields)} values but the header names {self._width}",
                    hint="a value probably contains an unquoted comma: put it in double quotes",
                )
            )

        email = normalize_address(self._cell(fields, "email"))
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
            key = address_key(email)
            first = self._seen.setdefault(key, row)
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

        name = self._cell(fields, "name") or None
        if name is not None and _CONTROL.search(name):
            what = "a line break" if ("\r" in name or "\n" in name) else "a control character"
            problems.append(
                RowProblem(
                    row=row,
                    column="name",
                    reason=f"the name contains {what}",
                    hint="a name must be one line of text: it goes into the To: header of emails",
                )
            )

        language, defaulted = self._cell(fields, "language"), False
        if not language:
            language, defaulted = self._default, True
        elif language.lower() in self._languages:
            language = self._languages[language.lower()]
        else:
            problems.append(
                RowProblem(
                    row=row,
                    column="language",
                    reason=f"language {language!r} is not offered",
                    hint=f"use one of {self._offered}, or leave it empty for {self._default!r}",
                )
            )

        timezone = self._cell(fields, "timezone") or None
        if timezone is not None:
            canonical = _zones_by_lower_name().get(timezone.lower())
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

        if problems:
            yield from problems
            return
        attributes = {
            n: fields[i].strip()
            for n, i in self._attributes
            if i < len(fields) and fields[i].strip()
        }
        yield SubscriberRow(
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
