"""Who acts: what every action, approval and audit line names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from where: an account's address and the client's IP, or `cli:user`."""

    name: str
    origin: str = "cli"
