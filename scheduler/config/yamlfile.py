"""Read YAML keeping line/column of every key and value, and refusing duplicate keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

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
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(text)
    except DuplicateKeyError as e:
        mark = e.problem_mark
        first = e.context_mark
        hint = "each key may appear once in a mapping; merge or rename the two entries"
        key = str(e.problem).split('"')[1] if '"' in str(e.problem) else ""
        first_line = _first_key_line(text, key, first.line if first else 0, mark)
        if first_line:
            hint += f" (the first is on line {first_line})"
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    mark.line + 1 if mark else 0,
                    mark.column + 1 if mark else 0,
                    f"duplicate key {key!r}" if key else "duplicate key",
                    hint,
                )
            ]
        ) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    mark.line + 1 if mark else 0,
                    mark.column + 1 if mark else 0,
                    f"YAML syntax: {e.problem or e.context}",
                    "check indentation (spaces, not tabs) and quote values containing ': ' or '#'",
                )
            ]
        ) from None
    return YamlDocument(path=path, data=_plain(tree), tree=tree)


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Diagnostic(name, 0, 0, "file not found", "pass -c FILE or set SCHEDULER_CONFIG")]
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError([Diagnostic(name, 0, 0, f"not UTF-8 text: {e.reason}")]) from None
    return parse_yaml(text, name)
