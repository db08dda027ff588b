"""Turn pydantic errors into `file:line:col: error: message` with hints a person can act on."""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from scheduler.config.yamlfile import Loc, YamlDocument
from scheduler.errors import Diagnostic


def did_you_mean(word: str, choices: list[str] | set[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _unwrap(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    if origin is not None and str(origin).endswith("Annotated"):
        return _unwrap(get_args(tp)[0])
    return tp


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that owns the last element of `loc`, walking dicts and lists."""
    current: Any = root
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        origin = get_origin(current)
        if origin is dict:
            current = get_args(current)[1]
        elif origin in (list, tuple):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _message(err: ErrorDetails) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        if pattern.startswith("^[a-z0-9]"):
            return (
                f"{err['input']!r} is not a valid name: use lower-case letters, digits, '-' and '_'"
            )
        if pattern.startswith("^https?"):
            return f"{err['input']!r} must be a URL starting with https:// or http://"
        if "@" in pattern:
            return f"{err['input']!r} is not an email address"
        if pattern.startswith("^[a-z]{2,3}"):
            return f"{err['input']!r} is not a language code such as 'en' or 'es'"
    return str(msg)


def schema_diagnostics(
    document: YamlDocument,
    error: ValidationError,
    root: type[BaseModel],
    *,
    prefix: Loc = (),
) -> list[Diagnostic]:
    """One diagnostic per pydantic error, pointing at the key or value in the YAML file.

    `prefix` is where the validated data sits in the document, for models validated on a
    part of it (channel settings).
    """
    out: list[Diagnostic] = []
    for err in error.errors():
        raw = tuple(err["loc"])
        # A dict whose *key* failed validation reports loc (..., key, '[key]').
        if raw and raw[-1] == "[key]":
            loc = prefix + raw[:-1]
            line, col = document.key_position(loc)
            out.append(Diagnostic(document.path, line, col, _message(err)))
            continue
        loc = prefix + raw
        hint = None
        if err["type"] == "extra_forbidden":
            line, col = document.key_position(loc)
            owner = model_at(root, raw)
            known = sorted(owner.model_fields) if owner else []
            message = f"unknown key {raw[-1]!r}"
            hint = did_you_mean(str(raw[-1]), known) or (
                f"allowed here: {', '.join(known)}" if known else None
            )
        elif err["type"] == "missing":
            line, col = document.position(loc[:-1])
            message = f"missing required key {raw[-1]!r}"
            where = ".".join(str(p) for p in loc[:-1])
            hint = f"add '{raw[-1]}:' under {where or 'the top level'}"
        else:
            line, col = document.position(loc)
            message = _message(err)
            field = ".".join(str(p) for p in loc)
            if field:
                message = f"{field}: {message}"
        out.append(Diagnostic(document.path, line, col, message, hint))
    return out
