"""Every `SCHEDULER_*` environment variable, its default, and the one place it is read.

Values are read when asked for, not at import, so a test (or `scheduler worker`, which sets
`SCHEDULER_CONFIG` for its children) can change the environment first. An empty value counts
as unset everywhere: an empty secret key or dashboard token must never mean "no secret".
This module imports nothing of the project, so any layer may use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str | None
    help: str

    def raw(self, env: Mapping[str, str] | None = None) -> str | None:
        value = (os.environ if env is None else env).get(self.name)
        return value if value else self.default

    def get(self, env: Mapping[str, str] | None = None) -> str:
        """The value, or the default; a setting without a default returns ""."""
        return self.raw(env) or ""

    def is_set(self, env: Mapping[str, str] | None = None) -> bool:
        return bool((os.environ if env is None else env).get(self.name))


CONFIG = Setting("SCHEDULER_CONFIG", "campaigns.yaml", "campaigns.yaml to use")
DATABASE_URL = Setting(
    "SCHEDULER_DATABASE_URL", "sqlite:///state/scheduler.db", "the store (SQLAlchemy URL)"
)
BROKER_URL = Setting(
    "SCHEDULER_BROKER_URL",
    "redis://localhost:6379/0",
    "Redis: Celery broker, clock leader lock, shared rate limits",
)
SECRET_KEY = Setting("SCHEDULER_SECRET_KEY", None, "signs the links in emails")
LEASE_SECONDS = Setting(
    "SCHEDULER_LEASE_SECONDS", "60", "how long a sender owns the deliveries it claimed"
)
STORE_RETRY_SECONDS = Setting(
    "SCHEDULER_STORE_RETRY_SECONDS",
    "30",
    "how long a sender keeps trying the database after its connection was lost",
)
RETRY_BASE_SECONDS = Setting(
    "SCHEDULER_RETRY_BASE_SECONDS",
    "2",
    "first wait after a message's own temporary failure (doubles each try, up to 30 min)",
)
QUEUE = Setting("SCHEDULER_QUEUE", "scheduler", "the Celery queue of the tasks")
VISIBILITY_TIMEOUT = Setting(
    "SCHEDULER_VISIBILITY_TIMEOUT", "120", "seconds before Redis hands a killed worker's task on"
)
LEADER_KEY = Setting(
    "SCHEDULER_LEADER_KEY", "scheduler:clock:leader", "the Redis key of the clock's leader lock"
)
WEB_PROXIES = Setting(
    "SCHEDULER_WEB_PROXIES", "0", "reverse proxies in front of `scheduler web` (X-Forwarded-For)"
)
DASHBOARD_PASSWORD_HASH = Setting(
    "SCHEDULER_DASHBOARD_PASSWORD_HASH", None, "werkzeug password hash for the dashboard"
)
DASHBOARD_TOKEN = Setting("SCHEDULER_DASHBOARD_TOKEN", None, "a bearer token for the dashboard")
# List health (scheduler/listhealth/, scheduler/web/provider_hooks.py).
MAILBOX_URL = Setting(
    "SCHEDULER_MAILBOX_URL", None, "the bounce mailbox: imaps://USER@HOST/INBOX or pop3s://..."
)
MAILBOX_PASSWORD = Setting("SCHEDULER_MAILBOX_PASSWORD", None, "the bounce mailbox's password")
SNS_CERT_HOSTS = Setting(
    "SCHEDULER_SNS_CERT_HOSTS",
    r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?",
    "hosts (a regular expression) SNS signing certificates may be fetched from, over https",
)
SNS_TOPICS = Setting(
    "SCHEDULER_SNS_TOPICS", None, "SNS topic ARNs accepted, comma-separated (unset: refuse all)"
)
POSTMARK_WEBHOOK_AUTH = Setting(
    "SCHEDULER_POSTMARK_WEBHOOK_AUTH", None, "USER:PASSWORD Postmark's webhook URL carries"
)
MAILGUN_SIGNING_KEY = Setting(
    "SCHEDULER_MAILGUN_SIGNING_KEY", None, "Mailgun's HTTP webhook signing key"
)
SENDGRID_VERIFICATION_KEY = Setting(
    "SCHEDULER_SENDGRID_VERIFICATION_KEY",
    None,
    "SendGrid's signed event webhook verification key (base64 public key)",
)
SENDER_PROCESSES = Setting(
    "SCHEDULER_SENDER_PROCESSES",
    None,
    "processes that send one occurrence in embedded mode: a number or `cores` (the default)",
)

ALL = (
    CONFIG,
    DATABASE_URL,
    BROKER_URL,
    SECRET_KEY,
    LEASE_SECONDS,
    STORE_RETRY_SECONDS,
    RETRY_BASE_SECONDS,
    QUEUE,
    VISIBILITY_TIMEOUT,
    LEADER_KEY,
    WEB_PROXIES,
    DASHBOARD_PASSWORD_HASH,
    DASHBOARD_TOKEN,
    MAILBOX_URL,
    MAILBOX_PASSWORD,
    SNS_CERT_HOSTS,
    SNS_TOPICS,
    POSTMARK_WEBHOOK_AUTH,
    MAILGUN_SIGNING_KEY,
    SENDGRID_VERIFICATION_KEY,
    SENDER_PROCESSES,
)


def config_path() -> str:
    return CONFIG.get()


def database_url() -> str:
    return DATABASE_URL.get()


def broker_url() -> str:
    return BROKER_URL.get()


def secret_key() -> str | None:
    return SECRET_KEY.raw()


def lease_seconds() -> float:
    return float(LEASE_SECONDS.get())


def store_retry_seconds() -> float:
    return float(STORE_RETRY_SECONDS.get())


def retry_base_seconds() -> float:
    return float(RETRY_BASE_SECONDS.get())


def queue() -> str:
    return QUEUE.get()


def visibility_timeout() -> int:
    return int(VISIBILITY_TIMEOUT.get())


def leader_key() -> str:
    return LEADER_KEY.get()


def web_proxies() -> int:
    return int(WEB_PROXIES.get())


def sender_processes() -> int:
    """SCHEDULER_SENDER_PROCESSES: a number, or `cores` (also when unset)."""
    value = SENDER_PROCESSES.raw()
    if value in (None, "", "cores"):
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    return max(1, int(value))
