"""Bad input to campaigns.yaml is a clear error at line:col, never a hang or a traceback
(issue 9, part 6). Through the real CLI, as an organizer (or a hostile edit) meets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MINIMAL, ProjectFactory
from test_cli import run

from scheduler.config.yamlfile import parse_yaml
from scheduler.errors import ConfigError


def alias_chain(levels: int) -> str:
    """An `&a`/`*a` chain under settings: each level repeats the one before nine times."""
    lines = ["settings:", "  statements_dir: statements", "  x0: &a0 [lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"  x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return MINIMAL + "\n".join(lines) + "\n"


def validate_json(path: Path) -> dict[str, object]:
    result = run("validate", "--json", cwd=path.parent)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def only_problem(path: Path) -> dict[str, object]:
    problems = validate_json(path)["problems"]
    assert isinstance(problems, list) and len(problems) == 1, problems
    first: dict[str, object] = problems[0]
    return first


@pytest.mark.parametrize("levels", [8, 9])
def test_an_alias_chain_is_refused_at_the_alias_that_explodes(
    make_project: ProjectFactory, levels: int
) -> None:
    # Before the bound, 8 levels ran past 30 s and 9 levels took 546 MB.
    path = make_project(alias_chain(levels))
    problem = only_problem(path)
    start = MINIMAL.count("\n") + 1
    assert problem["line"] in range(start + 3, start + 3 + levels)
    assert problem["column"] and "values once aliases are written out" in str(problem["message"])


def test_a_few_aliases_are_still_fine(make_project: ProjectFactory) -> None:
    line = "  org: {name: Test Org, address: news@example.org}\n"
    assert line in MINIMAL
    text = MINIMAL.replace(line, line.replace("org: {", "org: &org {") + "  other: *org\n")
    assert run("validate", cwd=make_project(text).parent).returncode == 0


def test_nesting_is_bounded_with_a_position(make_project: ProjectFactory) -> None:
    path = make_project(MINIMAL + "settings: " + "[" * 5000 + "]" * 5000 + "\n")
    problem = only_problem(path)
    assert problem["line"] == MINIMAL.count("\n") + 1
    assert "nested more than 50 levels deep" in str(problem["message"])


def test_a_huge_file_is_refused_before_it_is_parsed(make_project: ProjectFactory) -> None:
    path = make_project()
    path.write_text(MINIMAL + ("# padding " + "x" * 90 + "\n") * 30_000, encoding="utf-8")
    problem = only_problem(path)
    assert "larger than 2 MiB" in str(problem["message"])


def test_a_directory_as_config_is_an_error_not_a_traceback(make_project: ProjectFactory) -> None:
    folder = make_project().parent
    result = run("-c", str(folder), "validate", cwd=folder)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "IsADirectoryError" not in result.stderr
    assert "is a folder, not a file" in result.stderr
    assert f"-c {folder / 'campaigns.yaml'}" in result.stderr


def test_non_utf8_input_gives_the_line_and_column_of_the_first_bad_byte(
    make_project: ProjectFactory,
) -> None:
    path = make_project()
    data = MINIMAL.replace("name: Test Org\n", "name: Caf\xe9 Org\n", 1).encode("latin-1")
    path.write_bytes(data)
    result = run("validate", cwd=path.parent)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "campaigns.yaml:2:12: error: not UTF-8 text: byte 0xe9" in result.stderr


def test_a_control_character_is_an_error_at_its_place(make_project: ProjectFactory) -> None:
    path = make_project(MINIMAL.replace("name: Test Org\n", "name: Test\x07 Org\n", 1))
    problem = only_problem(path)
    assert (problem["line"], problem["column"]) == (2, 13)
    assert "U+0007 is not allowed" in str(problem["message"])


STEPS = """\
    steps:
      reminder:
        offset: -7d
        channels: [email]
        template: statement
{statement}
"""


def with_steps(statement: str) -> str:
    head = MINIMAL.split("    steps:\n")[0]
    return head + STEPS.format(statement=statement)


def test_a_step_unindented_to_the_campaign_is_not_called_just_a_duplicate(
    make_project: ProjectFactory,
) -> None:
    # `statement:` (the step) slipped to the campaign's level, where `statement: may-day`
    # already is: the parser's words would be only "duplicate key".
    path = make_project(
        with_steps("    statement:\n      channels: [email]\n      template: statement")
    )
    problem = only_problem(path)
    assert problem["line"] == 26 and problem["column"] == 5
    message = str(problem["message"])
    assert "this line is indented less than the block above it" in message
    assert "belongs under 'steps' (line 21), indent it by 6 spaces" in message


def test_a_line_indented_between_two_levels_gets_plain_words(
    make_project: ProjectFactory,
) -> None:
    path = make_project(
        with_steps("     statement:\n        channels: [email]\n        template: statement")
    )
    problem = only_problem(path)
    assert (problem["line"], problem["column"]) == (26, 6)
    assert "this line is indented less than the block above it" in str(problem["message"])
    assert "block end" not in str(problem["message"])
    assert "indent it by 6 spaces" in str(problem["hint"])


def test_a_key_indented_under_a_value_says_so(make_project: ProjectFactory) -> None:
    path = make_project(MINIMAL.replace('    time: "09:00"', '      time: "09:00"'))
    problem = only_problem(path)
    assert (problem["line"], problem["column"]) == (18, 7)
    assert "indented more than the line above it" in str(problem["message"])
    assert "'date' there already has a value" in str(problem["message"])


def test_a_tab_is_named() -> None:
    with pytest.raises(ConfigError) as e:
        parse_yaml("organization:\n\tname: x\n", "c.yaml")
    (d,) = e.value.diagnostics
    assert (d.line, d.column) == (2, 1) and "tab" in d.message


def test_an_alias_to_its_own_parent_is_an_error() -> None:
    with pytest.raises(ConfigError) as e:
        parse_yaml("a: &x [1, *x]\n", "c.yaml")
    (d,) = e.value.diagnostics
    assert d.line == 1 and "refers to the node that contains it" in d.message


@pytest.mark.parametrize("value", ["+_", "-__", "0x_", "0o_", "._", "+._"])
def test_a_number_without_digits_is_an_error_at_its_place(value: str) -> None:
    """ruamel.yaml reads `+_` as an integer and fails inside (found by tests/test_yaml_fuzz.py)."""
    with pytest.raises(ConfigError) as e:
        parse_yaml(f"settings:\n  batch_size: {value}\n", "campaigns.yaml")
    [d] = e.value.diagnostics
    assert (d.line, d.column) == (2, 15)
    assert "is not a number" in d.message
