"""Parser errors in plain words: what is wrong with the indentation, at the line most likely
wrong, instead of `expected <block end>, but found '<block mapping start>'`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    line: int  # 1-based
    column: int  # 1-based
    message: str
    hint: str | None


def _spaces(n: int) -> str:
    return f"{n} space" if n == 1 else f"{n} spaces"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(lines: list[str], index: int) -> bool:
    stripped = lines[index].strip()
    return bool(stripped) and not stripped.startswith("#")


def _previous(lines: list[str], index: int) -> int | None:
    """The nearest line above `index` (0-based) that holds something other than a comment."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if _content(lines, i):
            return i
    return None


def _key(line: str) -> str:
    text = line.strip().removeprefix("- ")
    return text.split(":", 1)[0].strip() if ":" in text else text


def _levels(lines: list[str], index: int) -> list[int]:
    """0-based indexes of the lines above that open a block still open at `index`,
    nearest first: each is indented less than every content line after it."""
    out: list[int] = []
    floor: int | None = None
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if not _content(lines, i):
            continue
        width = _indent(lines[i])
        if floor is None or width < floor:
            out.append(i)
            floor = width
    return out


def _block_owner(lines: list[str], index: int, width: int) -> tuple[int, int] | None:
    """For a line at `width` just after deeper lines: the nearest line above at the same
    width whose block it closes, and the width of that block's entries."""
    prev = _previous(lines, index)
    if prev is None or _indent(lines[prev]) <= width:
        return None
    levels = _levels(lines, index)
    deeper = [i for i in levels if _indent(lines[i]) > width]
    owner = next((i for i in levels if _indent(lines[i]) <= width), None)
    if owner is None or not deeper:
        return None
    # The entries of the owner's block are indented like its first deeper line.
    return owner, _indent(lines[deeper[-1]])


def unindented(lines: list[str], index: int) -> Advice | None:
    """A line (0-based `index`) indented less than the block above it, but not lined up with
    any key it could belong to (`expected <block end>`)."""
    if index >= len(lines) or not _content(lines, index):
        return None
    width = _indent(lines[index])
    prev = _previous(lines, index)
    if prev is None or _indent(lines[prev]) <= width:
        return None
    widths = sorted({_indent(lines[i]) for i in _levels(lines, index)})
    inside = min((w for w in widths if w > width), default=None)
    outside = max((w for w in widths if w < width), default=None)
    options = []
    if inside is not None:
        options.append(f"{inside} spaces to keep it in the block above")
    if outside is not None:
        options.append(f"{outside} to line it up with the keys around that block")
    return Advice(
        index + 1,
        width + 1,
        f"this line is indented less than the block above it ({_spaces(width)} here, "
        f"{_indent(lines[prev])} on line {prev + 1}) and lines up with no key",
        ("indent it by " + ", or ".join(options)) if options else None,
    )


def overindented(lines: list[str], index: int) -> Advice | None:
    """A key indented more than the line above, which already has a value (`mapping values
    are not allowed here` reported on the indented line)."""
    if index >= len(lines) or not _content(lines, index):
        return None
    prev = _previous(lines, index)
    if prev is None:
        return None
    width, above = _indent(lines[index]), _indent(lines[prev])
    text = lines[prev].strip()
    has_value = ":" in text and text.split(":", 1)[1].strip() not in ("", "|", ">")
    if width <= above or not has_value:
        return None
    return Advice(
        index + 1,
        width + 1,
        f"this line is indented more than the line above it ({_spaces(width)} here, {above} on "
        f"line {prev + 1}), and {_key(lines[prev])!r} there already has a value",
        f"indent it by {above} spaces, like line {prev + 1}",
    )


def duplicate_after_block(lines: list[str], index: int, key: str) -> str | None:
    """Why a duplicate key may really be a line that slipped out of the block above it."""
    if index >= len(lines):
        return None
    width = _indent(lines[index])
    found = _block_owner(lines, index, width)
    if found is None:
        return None
    owner, inner = found
    return (
        f"this line is indented less than the block above it: if {key!r} belongs under "
        f"{_key(lines[owner])!r} (line {owner + 1}), indent it by {inner} spaces"
    )
