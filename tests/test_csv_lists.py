"""Reading subscriber CSV files: valid rows come out normalized, every problem is located."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from scheduler.audience import CsvResult, RowProblem, SubscriberRow, iter_csv, read_csv
from scheduler.audience.address import address_problem

LANGS = ["en", "es", "pt-BR"]


def write(tmp_path: Path, content: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(tmp_path: Path, content: str | bytes) -> CsvResult:
    return read_csv(write(tmp_path, content), languages=LANGS, default_language="en")


def only(problems: list[RowProblem]) -> RowProblem:
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_rows_are_normalized(tmp_path: Path) -> None:
    result = read(
        tmp_path,
        "email,name,language,timezone,chapter\n"
        "  Ana.Perez@Example.ORG ,Ana Pérez,ES,europe/madrid,Quito\n"
        "bo@example.org,,,,\n"
        "ze@example.com.br,Zé,pt-br,America/Sao_Paulo,\n",
    )
    assert result.ok
    ana, bo, ze = result.rows
    assert ana == SubscriberRow(
        email="Ana.Perez@example.org",  # local part keeps its case
        name="Ana Pérez",
        language="es",
        timezone="Europe/Madrid",
        attributes={"chapter": "Quito"},
        row=2,
    )
    assert ana.key == "ana.perez@example.org"
    assert bo.name is None and bo.timezone is None and bo.attributes == {}
    assert bo.language == "en" and bo.language_defaulted
    assert ze.language == "pt-BR" and ze.row == 4


def test_bom_crlf_and_semicolons_are_tolerated(tmp_path: Path) -> None:
    result = read(tmp_path, b"\xef\xbb\xbfEmail;Name\r\na@example.org;A\r\n\r\nb@example.org;B\r\n")
    assert result.ok
    assert [(r.email, r.row) for r in result.rows] == [("a@example.org", 2), ("b@example.org", 4)]


def test_invalid_addresses(tmp_path: Path) -> None:
    result = read(
        tmp_path,
        "email\n"
        "good@example.org\n"
        "no-at-sign.example.org\n"
        "two@@example.org\n"
        "@example.org\n"
        "someone@localhost\n"
        '"with space@example.org"\n'
        f"{'x' * 250}@example.org\n"
        "\n"
        ",\n",
    )
    assert [r.email for r in result.rows] == ["good@example.org"]
    # Line 9 is blank and line 10 has only empty cells: both are skipped, not reported.
    got = [(p.row, p.column) for p in result.problems]
    assert got == [(3, "email"), (4, "email"), (5, "email"), (6, "email"), (7, "email"),
                   (8, "email")]  # fmt: skip
    reasons = [p.reason for p in result.problems]
    assert "exactly one '@'" in reasons[0]
    assert "exactly one '@'" in reasons[1]
    assert "nothing before the '@'" in reasons[2]
    assert "has no dot" in reasons[3]
    assert "space" in reasons[4]
    assert "limit is 254" in reasons[5]


def test_empty_email_cell_is_a_problem(tmp_path: Path) -> None:
    problem = only(read(tmp_path, "email,name\n,Nobody\n").problems)
    assert (problem.row, problem.column, problem.reason) == (2, "email", "email is empty")


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("a@b.c", None),
        ("user+tag@sub.example.org", None),
        ("josé@correo.example", None),
        ("a..b@example.org", "misplaced dot"),
        ("a@example..org", "empty label"),
        ("a@-example.org", "'-'"),
        ("a<b@example.org", "contains '<'"),
        ("a\tb@example.org", "space"),
        ("a\x01b@example.org", "control character"),
        ("x" * 65 + "@example.org", "longer than 64"),
    ],
)
def test_address_rules(address: str, fragment: str | None) -> None:
    problem = address_problem(address)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


def test_duplicates_name_the_row_they_repeat(tmp_path: Path) -> None:
    result = read(
        tmp_path,
        "email,name\nA@Example.org,First\nb@example.org,B\na@EXAMPLE.ORG,Second\n",
    )
    assert [r.name for r in result.rows] == ["First", "B"]
    problem = only(result.problems)
    assert (problem.row, problem.column, problem.duplicate_of) == (4, "email", 2)
    assert "duplicate of row 2" in problem.reason


def test_local_part_case_differs_is_still_a_duplicate(tmp_path: Path) -> None:
    problem = only(read(tmp_path, "email\nAna@x.org\nana@x.org\n").problems)
    assert (problem.row, problem.duplicate_of) == (3, 2)


def test_language_not_offered(tmp_path: Path) -> None:
    result = read(tmp_path, "email,language\na@example.org,fr\n")
    problem = only(result.problems)
    assert (problem.row, problem.column) == (2, "language")
    assert problem.reason == "language 'fr' is not offered"
    assert problem.hint is not None and "en, es, pt-BR" in problem.hint
    assert result.rows == []


def test_bad_time_zone_suggests_the_closest(tmp_path: Path) -> None:
    result = read(tmp_path, "email,timezone\na@example.org,Europe/Madird\nb@x.org,Mars/Base\n")
    first, second = result.problems
    assert (first.row, first.column, first.reason) == (
        2,
        "timezone",
        "unknown time zone 'Europe/Madird'",
    )
    assert first.hint is not None and "Europe/Madrid" in first.hint
    assert (second.row, second.column) == (3, "timezone")


def test_missing_email_column_is_a_file_problem(tmp_path: Path) -> None:
    result = read(tmp_path, "E-mail address,name\na@example.org,A\n")
    problem = only(result.problems)
    assert (problem.row, problem.column) == (1, "email")
    assert problem.reason == "there is no 'email' column"
    assert problem.hint is not None and "'e-mail address'" in problem.hint
    assert result.rows == []


def test_empty_file(tmp_path: Path) -> None:
    problem = only(read(tmp_path, "").problems)
    assert problem.row == 1 and "empty" in problem.reason


def test_undecodable_utf8_names_the_line(tmp_path: Path) -> None:
    # Latin-1 'é' (0xE9), as Excel writes "CSV" in many locales.
    result = read(tmp_path, b"email,name\na@example.org,A\nb@example.org,Jos\xe9\nc@x.org,C\n")
    assert [r.email for r in result.rows] == ["a@example.org", "c@x.org"]
    problem = only(result.problems)
    assert problem.row == 3
    assert "not valid UTF-8" in problem.reason and "0xe9" in problem.reason
    assert problem.hint is not None and "UTF-8" in problem.hint


def test_utf16_file_is_refused_clearly(tmp_path: Path) -> None:
    problem = only(read(tmp_path, "email\na@example.org\n".encode("utf-16")).problems)
    assert problem.row == 1 and "UTF-16" in problem.reason


@pytest.mark.parametrize("name", ['"Eve\r\nBcc: all@example.org"', '"Eve\nX"', '"Eve\rX"'])
def test_names_with_line_breaks_are_rejected(tmp_path: Path, name: str) -> None:
    result = read(tmp_path, f"email,name\na@example.org,{name}\nb@example.org,Bob\n")
    problem = only(result.problems)
    assert (problem.row, problem.column) == (2, "name")
    assert problem.reason == "the name contains a line break"
    # The quoted record spans two lines; the next row keeps its own line number.
    assert [(r.email, r.row) for r in result.rows] == [("b@example.org", 4)]


def test_a_row_reports_every_problem(tmp_path: Path) -> None:
    result = read(tmp_path, "email,language,timezone\nbad,xx,Nowhere/Town\n")
    assert [(p.row, p.column) for p in result.problems] == [
        (2, "email"),
        (2, "language"),
        (2, "timezone"),
    ]


def test_extra_values_point_at_unquoted_commas(tmp_path: Path) -> None:
    problem = only(read(tmp_path, "email,name\na@example.org,Pérez, Ana\n").problems)
    assert (problem.row, problem.column) == (2, None)
    assert "3 values" in problem.reason


def test_iterator_streams_rows_and_problems_in_order(tmp_path: Path) -> None:
    lines = ["email"] + [f"user{i}@example.org" for i in range(5)] + ["broken"]
    stream = io.BytesIO("\n".join(lines).encode())
    items = list(iter_csv(stream, languages=LANGS, default_language="en"))
    assert [type(i).__name__ for i in items] == ["SubscriberRow"] * 5 + ["RowProblem"]
    assert items[-1].row == 7


def test_problem_becomes_a_diagnostic(tmp_path: Path) -> None:
    problem = only(read(tmp_path, "email,language\na@example.org,fr\n").problems)
    text = problem.to_diagnostic("lists/members.csv").format()
    assert text.startswith("lists/members.csv:2:15: warning: column 'language': language 'fr'")
    assert "hint: use one of" in text


def test_default_language_must_be_offered(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default_language"):
        read_csv(write(tmp_path, "email\n"), languages=["es"], default_language="en")
