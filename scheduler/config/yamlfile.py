"""Read YAML keeping line/column of every key and value, and refusing duplicate keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from scheduler.config.yamllimits import MAX_BYTES, check_limits
from scheduler.config.yamlwords import duplicate_after_block, overindented, unindented
from scheduler.errors import ConfigError, Diagnostic

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """Plain data plus a way back from a path in it to where it was written."""

    path: str
    data: Any
    tree: Any

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the deepest node of `loc` that exists.

        With key=True the last element names a mapping key and its own position is wanted
        (an unknown key), rather than the position of its value.
        """
        node = self.tree
        line, col = 1, 1
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, CommentedMap) and part in node:
                kl, kc = node.lc.key(part)
                vl, vc = node.lc.value(part)
                line, col = (kl, kc) if key and last else (vl, vc)
                # A value on the key's line is fine; a block value starting on the next line
                # reads better pointing at the key.
                if not (key and last) and isinstance(node[part], CommentedMap | CommentedSeq):
                    line, col = kl, kc
                line, col = line + 1, col + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                il, ic = node.lc.item(part)
                line, col = il + 1, ic + 1
                node = node[part]
            else:
                break
        return line, col

    def key_position(self, loc: Loc) -> tuple[int, int]:
        return self.position(loc, key=True)


def _plain(node: Any) -> Any:
    """ruamel's round-trip types as plain Python, so nothing downstream depends on ruamel."""
    if isinstance(node, Mapping):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, Sequence) and not isinstance(node, str | bytes):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def parse_yaml(text: str, path: str) -> YamlDocument:
    """Parse one YAML document; every problem is a ConfigError at line:col, never a traceback."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError([Diagnostic(path, 0, 0, _TOO_BIG, _TOO_BIG_HINT)])
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    lines = text.splitlines()
    try:
        check_limits(text, path)
        tree = yaml.load(text)
    except DuplicateKeyError as e:
        raise ConfigError([_duplicate(e, text, lines, path)]) from None
    except MarkedYAMLError as e:
        raise ConfigError([_syntax(e, lines, path)]) from None
    except ReaderError as e:
        line, col = _line_col(text, e.position)
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    line,
                    col,
                    f"character U+{_code(e.character):04X} is not allowed in YAML: {e.reason}",
                    "delete it or retype the line; it is often pasted from a word processor",
                )
            ]
        ) from None
    except (YAMLError, RecursionError, ValueError, IndexError) as e:
        # ruamel.yaml resolves `+_` as an integer and `._` as a float, then fails to read
        # them (IndexError, ValueError): said at the value's place when it can be found.
        number = _unreadable_number(text, path) if isinstance(e, ValueError | IndexError) else None
        if number is None:
            number = Diagnostic(path, 0, 0, f"cannot read the file as YAML: {e}")
        raise ConfigError([number]) from None
    return YamlDocument(path=path, data=_plain(tree), tree=tree)


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _has_digits(value: str) -> bool:
    """Whether a scalar YAML resolved as a number has any digits (after its sign,
    underscores and base prefix; `.inf` and `.nan` count as numbers)."""
    digits = value.lstrip("+-").replace("_", "")
    if digits.lower() in (".inf", ".nan"):
        return True
    if digits[:2].lower() in ("0x", "0o", "0b"):
        return digits[2:].isalnum()
    return any(c.isdigit() for c in digits)


def _unreadable_number(text: str, path: str) -> Diagnostic | None:
    """Where a value that looks like a number but has no digits is (see parse_yaml)."""
    hint = "write the number, or put the value in quotes if it is text"
    try:
        root = YAML(typ="rt").compose(text)
    except Exception:  # composing ran before the failure; kept general for safety
        root = None
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        value = node.value
        if isinstance(value, list):
            for item in value:
                todo.extend(item if isinstance(item, tuple) else (item,))
        elif node.tag in _NUMBER_TAGS and not _has_digits(str(value)):
            mark = node.start_mark
            return Diagnostic(
                path, mark.line + 1, mark.column + 1, f"{value!r} is not a number", hint
            )
    return None


_TOO_BIG = f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB"
_TOO_BIG_HINT = "campaigns.yaml holds the schedule only: subscriber lists go in CSV files"
_SYNTAX_HINT = "check indentation (spaces, not tabs) and quote values containing ': ' or '#'"


def _code(character: object) -> int:
    return character if isinstance(character, int) else ord(str(character)[:1] or "\0")


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _duplicate(e: DuplicateKeyError, text: str, lines: list[str], path: str) -> Diagnostic:
    mark = e.problem_mark
    first = e.context_mark
    key = str(e.problem).split('"')[1] if '"' in str(e.problem) else ""
    first_line = _first_key_line(text, key, first.line if first else 0, mark)
    message = f"duplicate key {key!r}" if key else "duplicate key"
    hint = "each key may appear once in a mapping; merge or rename the two entries"
    if first_line:
        hint += f" (the first is on line {first_line})"
    if mark is not None:
        slipped = duplicate_after_block(lines, mark.line, key)
        if slipped:
            message, hint = f"{message}: {slipped}", "otherwise " + hint
    return Diagnostic(
        path, mark.line + 1 if mark else 0, mark.column + 1 if mark else 0, message, hint
    )


def _syntax(e: MarkedYAMLError, lines: list[str], path: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    problem = str(e.problem or e.context)
    advice = None
    if mark is not None:
        if "expected <block end>" in problem or "expected <block mapping" in problem:
            advice = unindented(lines, mark.line) or overindented(lines, mark.line)
        elif "mapping values are not allowed" in problem:
            advice = overindented(lines, mark.line)
    if advice is not None:
        return Diagnostic(path, advice.line, advice.column, advice.message, advice.hint)
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    if "'\\t'" in problem or "\t" in problem:
        return Diagnostic(
            path,
            line,
            col,
            "a tab is used here; YAML indents with spaces only",
            "replace the tab with spaces (most editors have 'convert indentation to spaces')",
        )
    if "mapping values are not allowed" in problem:
        return Diagnostic(
            path,
            line,
            col,
            "a ': ' inside a value that is not quoted",
            'put the whole value in double quotes, e.g. name: "Rally: 1 May"',
        )
    return Diagnostic(path, line, col, f"YAML syntax: {problem}", _SYNTAX_HINT)


def _first_key_line(text: str, key: str, start: int, mark: Any) -> int | None:
    """The line of the earlier of two duplicate keys: same column, same key, before the second."""
    if not key or mark is None:
        return None
    lines = text.splitlines()
    for number in range(start, mark.line):
        line = lines[number]
        if line[mark.column :].startswith((f"{key}:", f'"{key}":', f"'{key}':")):
            return number + 1
    return None


def load_yaml(path: Path, display: str | None = None) -> YamlDocument:
    name = display or str(path)
    try:
        if path.is_dir():
            raise ConfigError(
                [
                    Diagnostic(
                        name,
                        0,
                        0,
                        "is a folder, not a file",
                        f"pass the file itself: -c {path / 'campaigns.yaml'}",
                    )
                ]
            )
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise ConfigError([Diagnostic(name, 0, 0, _TOO_BIG, _TOO_BIG_HINT)])
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [Diagnostic(name, 0, 0, "file not found", "pass -c FILE or set SCHEDULER_CONFIG")]
        ) from None
    except OSError as e:
        raise ConfigError([Diagnostic(name, 0, 0, f"cannot read: {e.strerror or e}")]) from None
    return parse_yaml(decode_utf8(data, name), name)


def decode_utf8(data: bytes, name: str) -> str:
    """The text of a file, or a ConfigError at the line:col of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line = data.count(b"\n", 0, start) + 1
        column = len(data[line_start:start].decode("utf-8-sig", "replace")) + 1
        raise ConfigError(
            [
                Diagnostic(
                    name,
                    line,
                    column,
                    f"not UTF-8 text: byte 0x{data[start]:02x} here cannot be read",
                    "save the file as UTF-8 (most editors: 'Save with encoding' > UTF-8)",
                )
            ]
        ) from None
