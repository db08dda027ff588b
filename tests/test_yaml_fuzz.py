"""Fuzz the YAML loader and the validator with random and mutated campaigns.yaml files.

Whatever the bytes, the answer is a report of problems (ConfigError / Report), never an
exception escaping, and never a run longer than the bound (hypothesis' `deadline`: a mutated
file must not make one load take seconds, as an alias chain once did). The whole file is
kept to about 20 seconds by the example counts.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from conftest import MINIMAL, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.config.project import load_project_partially
from scheduler.config.yamlfile import decode_utf8, parse_yaml
from scheduler.errors import ConfigError
from scheduler.validate import validate_project

EXAMPLE = (ROOT / "campaigns.yaml").read_text(encoding="utf-8")
SEEDS = [MINIMAL, EXAMPLE]

# Pieces that YAML and our schema give meaning to: what a typo or a paste most likely adds.
TOKENS = [
    ":", ": ", " ", "  ", "-", "- ", "\n", "\t", "#", '"', "'", "[", "]", "{", "}", ",", "&a ",
    "*a", "<<: *a", "!!python/object:os.system", "? ", "|", ">", "%YAML 1.1\n", "---\n",
    "...\n", "\x00", "\x07", "\ufeff", "é", "09:00", "-7d", "05-01", "2027-02-30", "null",
    "~", "yes", "1e999", "0x1F", "campaigns:", "steps:", "channels: [email]", "${X}",
    "\\", "\r", "\u2028",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(SEEDS))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "indent", "swap", "dup", "cut"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if kind == "insert":
            at = draw(st.integers(0, len(line)))
            piece = draw(st.sampled_from(TOKENS) | st.text(max_size=4))
            lines[i] = line[:at] + piece + line[at:]
        elif kind == "delete" and line:
            at = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:at] + line[at + draw(st.integers(1, 4)) :]
        elif kind == "indent":
            shift = draw(st.integers(-3, 3))
            lines[i] = " " * max(0, shift) + (line[-shift:] if shift < 0 else line)
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "dup":
            lines.insert(i, line)
        elif kind == "cut":
            lines = lines[:i]
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and data:
        # A byte that is not UTF-8, as a Latin-1 editor would leave it.
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.sampled_from([b"\xe9", b"\xff", b"\xc3", b"\x80"])) + data[at:]
    return data


@st.composite
def alias_chains(draw: st.DrawFn) -> bytes:
    """Anchors repeating anchors, `levels` deep and `fan` wide, somewhere in a project."""
    levels, fan = draw(st.integers(1, 10)), draw(st.integers(1, 9))
    lines = ["settings:", "  x0: &a0 [lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"  x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return (draw(st.sampled_from(SEEDS)) + "\n".join(lines) + "\n").encode()


def load(data: bytes) -> None:
    """The loader alone: decode, parse, schema. Only ConfigError may come out."""
    try:
        parse_yaml(decode_utf8(data, "campaigns.yaml"), "campaigns.yaml")
    except ConfigError as e:
        assert e.diagnostics and all(d.message for d in e.diagnostics)


FAST = settings(
    max_examples=300,
    deadline=dt.timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


@FAST
@given(mutated() | alias_chains())
def test_the_loader_answers_every_mutated_file_with_diagnostics(data: bytes) -> None:
    load(data)


@FAST
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "replace")))
def test_the_loader_answers_random_bytes_with_diagnostics(data: bytes) -> None:
    load(data)


@settings(
    max_examples=40,
    deadline=dt.timedelta(seconds=10),  # rendering every template; a blow-up takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(data=mutated() | alias_chains())
def test_the_validator_reports_every_mutated_project(tmp_path: Path, data: bytes) -> None:
    project = tmp_path / "p"
    if not project.exists():
        for name in ("statements", "templates", "lists"):
            shutil.copytree(ROOT / name, project / name)
        (project / "members.csv").write_text("email\na@example.org\n", encoding="utf-8")
    path = project / "campaigns.yaml"
    path.write_bytes(data)
    try:
        partial, problems = load_project_partially(path)
    except ConfigError as e:
        assert e.diagnostics
        partial, problems = None, list(e.diagnostics)
    report = validate_project(path)  # never raises: every problem is in the report
    for d in report.diagnostics:
        assert d.severity in ("error", "warning") and d.scope in (
            "file",
            "campaign",
            "list",
            "template",
        )
    if report.project is None:
        assert report.fatal
    if partial is None:
        assert problems or report.fatal
