"""Who may see the dashboard: a password hash or a token from the environment, or nobody."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from werkzeug.security import check_password_hash

from scheduler import settings

PASSWORD_HASH_ENV = settings.DASHBOARD_PASSWORD_HASH.name
TOKEN_ENV = settings.DASHBOARD_TOKEN.name


@dataclass(frozen=True, slots=True)
class DashboardAuth:
    """`password_hash` is werkzeug's `generate_password_hash(...)` output."""

    password_hash: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardAuth:
        # Empty counts as unset: an empty token would let an empty password in.
        return cls(
            password_hash=settings.DASHBOARD_PASSWORD_HASH.raw(env),
            token=settings.DASHBOARD_TOKEN.raw(env),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.password_hash or self.token)

    def accepts(self, secret: str) -> bool:
        if not secret:
            return False
        if self.token and hmac.compare_digest(secret.encode(), self.token.encode()):
            return True
        return bool(self.password_hash) and check_password_hash(str(self.password_hash), secret)
