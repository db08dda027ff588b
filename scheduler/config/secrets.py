"""`${ENV_VAR}` and `${ENV_VAR:-default}` references: secrets resolved at run time, never stored."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from scheduler.errors import SecretError

REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def references(value: str) -> list[tuple[str, str | None]]:
    """The (name, default) pairs a value refers to, in order."""
    return [(m["name"], m["default"]) for m in REFERENCE.finditer(value)]


def is_reference(value: str) -> bool:
    """True when the whole value is one `${...}` reference (how a secret must be written)."""
    return REFERENCE.fullmatch(value.strip()) is not None


def missing(value: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Names referenced without a default that the environment does not set."""
    env = os.environ if env is None else env
    return [n for n, d in references(value) if d is None and n not in env]


def resolve(value: str, env: Mapping[str, str] | None = None) -> str:
    """Replace every reference; raise SecretError naming the unset variable."""
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m["name"], m["default"]
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise SecretError(
            f"environment variable {name} is not set; export it or use ${{{name}:-default}}"
        )

    return REFERENCE.sub(sub, value)


def redact(value: str) -> str:
    """A printable form that shows which variables are used but never their values."""
    return REFERENCE.sub(lambda m: "${" + m["name"] + "}", value)
