"""Who may see the dashboard: a password hash or a token from the environment, or nobody."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from werkzeug.security import check_password_hash

PASSWORD_HASH_ENV = "SCHEDULER_DASHBOARD_PASSWORD_HASH"
TOKEN_ENV = "SCHEDULER_DASHBOARD_TOKEN"


@dataclass(frozen=True, slots=True)
class DashboardAuth:
    """`password_hash` is werkzeug's `generate_password_hash(...)` output."""

    password_hash: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardAuth:
        env = os.environ if env is None else env
        # Empty counts as unset: an empty token would let an empty password in.
        return cls(
            password_hash=env.get(PASSWORD_HASH_ENV) or None, token=env.get(TOKEN_ENV) or None
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
