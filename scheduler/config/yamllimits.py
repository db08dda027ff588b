"""Bounds on what one campaigns.yaml may make the loader do.

An alias (`*a`) repeats the node it names; aliases inside anchored nodes multiply, so a
file of a few lines can stand for billions of values (a "billion laughs"). The clock re-reads
the file on every change, so a hostile or mistaken edit must cost milliseconds, not minutes.
`check_limits` walks the parser's events once (linear in the text, never expanding an
alias) and counts what the document would become once every alias is written out.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
    ScalarEvent,
)

from scheduler.errors import ConfigError, Diagnostic

# A year of campaigns for a large alliance is a few hundred kilobytes and a few thousand
# values; these leave a wide margin while keeping a reload well under a second.
MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 50
MAX_VALUES = 200_000


@dataclass
class _Open:
    anchor: str | None
    size: int = 1


def check_limits(text: str, path: str) -> None:
    """Raise ConfigError at the line:col that takes the document past a bound."""
    stack: list[_Open] = []
    sizes: dict[str, int] = {}
    total = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, AliasEvent):
            anchor = str(event.anchor)
            if anchor not in sizes:
                _fail(
                    path,
                    event,
                    f"the alias *{anchor} refers to the node that contains it",
                    "an alias may only repeat a node that is complete before it",
                )
            grown = sizes[anchor]
        elif isinstance(event, CollectionStartEvent):
            stack.append(_Open(_anchor(event)))
            if len(stack) > MAX_DEPTH:
                _fail(
                    path,
                    event,
                    f"nested more than {MAX_DEPTH} levels deep",
                    "campaigns.yaml needs a handful of levels; check for a runaway "
                    "indentation or unclosed brackets",
                )
            continue
        elif isinstance(event, CollectionEndEvent):
            done = stack.pop()
            if done.anchor is not None:
                sizes[done.anchor] = done.size
            grown = done.size
            if stack:
                stack[-1].size += grown
            continue
        elif isinstance(event, ScalarEvent):
            grown = 1
            scalar_anchor = _anchor(event)
            if scalar_anchor is not None:
                sizes[scalar_anchor] = 1
        else:
            continue
        if stack:
            stack[-1].size += grown
        total += grown
        if total > MAX_VALUES:
            what = f"the alias *{event.anchor}" if isinstance(event, AliasEvent) else "this value"
            _fail(
                path,
                event,
                f"{what} takes the file past {MAX_VALUES:,} values once aliases are "
                "written out (aliases inside aliased blocks multiply)",
                "write the repeated settings out, or repeat them with fewer nested aliases",
            )


def _anchor(event: NodeEvent) -> str | None:
    return None if event.anchor is None else str(event.anchor)


def _fail(path: str, event: NodeEvent, message: str, hint: str) -> None:
    mark = event.start_mark
    raise ConfigError([Diagnostic(path, mark.line + 1, mark.column + 1, message, hint)])
