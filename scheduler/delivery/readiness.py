"""Whether a channel can send at all: every `${VAR}` its settings need is set."""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.config import secrets
from scheduler.config.model import Config


def unset_variables(
    config: Config, channel: str, env: Mapping[str, str] | None = None
) -> list[str]:
    """The environment variables a channel's settings refer to (without a default) that are
    not set, in the order they appear."""
    found: list[str] = []
    for value in (config.channels[channel].model_extra or {}).values():
        if isinstance(value, str):
            found += [v for v in secrets.missing(value, env) if v not in found]
    return found


def not_ready_reason(missing: list[str]) -> str:
    """`MASTODON_TOKEN is not set`: the failure reason of a channel's deliveries, the same
    words in the log, `status` and the dashboard."""
    if len(missing) == 1:
        return f"{missing[0]} is not set"
    return f"{', '.join(missing[:-1])} and {missing[-1]} are not set"
