"""`scheduler web`: subscribe (double opt-in), unsubscribe (RFC 8058 one-click),
preferences, the public archive with its Atom feed, and the organizers' dashboard."""

from scheduler.delivery.letters import Mailer
from scheduler.web.app import create_app
from scheduler.web.auth import DashboardAuth
from scheduler.web.pages import WebState
from scheduler.web.ratelimit import Limit, Limits, MemoryHits, RedisHits, make_hit_counter
from scheduler.web.sends import Sends

__all__ = [
    "DashboardAuth",
    "Limit",
    "Limits",
    "Mailer",
    "MemoryHits",
    "RedisHits",
    "Sends",
    "WebState",
    "create_app",
    "make_hit_counter",
]
