"""The organizers' dashboard, read-only: what comes next, what went out, what failed, what
is paused. Behind a login (password hash or token from the environment); with neither set
it is switched off rather than open."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask import Blueprint, abort, redirect, request, session, url_for
from werkzeug.wrappers import Response

from scheduler import calendar
from scheduler.clock import state as clock_state
from scheduler.delivery import channel_state, ledger
from scheduler.delivery.channel_state import ChannelProgress
from scheduler.store import subscribers
from scheduler.timefmt import local_time
from scheduler.web.csrf import require_csrf
from scheduler.web.pages import client_ip, message_page, render_page, t, web_state

blueprint = Blueprint("dashboard", __name__, url_prefix="/dashboard")

SESSION_KEY = "dashboard"
UPCOMING = 20
PAST = 50
FAILURE_REASONS = 5


@dataclass
class PastRow:
    row: ledger.OccurrenceRow
    # Each channel of the step: its state (still planned, firing, done, missed) and counts.
    channels: list[ChannelProgress] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)


def _signed_in() -> bool:
    auth = web_state().dashboard
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and auth.token:
        return auth.accepts(header.removeprefix("Bearer ").strip())
    return session.get(SESSION_KEY) is True


@blueprint.before_request
def _guard() -> tuple[str, int] | Response | None:
    if not web_state().dashboard.enabled:
        return message_page("dashboard_title", "dashboard_disabled", 503)
    if request.endpoint in ("dashboard.login_page", "dashboard.login") or _signed_in():
        return None
    return redirect(url_for("dashboard.login_page"))


@blueprint.get("/login")
def login_page() -> tuple[str, int]:
    return render_page("login.html", error=None)


@blueprint.post("/login")
def login() -> Response | tuple[str, int]:
    require_csrf()
    state = web_state()
    if not state.hits.hit(f"login-ip:{client_ip()}", state.limits.login_per_ip):
        abort(429)
    if not state.dashboard.accepts(request.form.get("secret", "")):
        return render_page("login.html", 403, error=t("login_failed"))
    # A fresh session on sign-in: a session fixed by someone else before is not promoted.
    session.clear()
    session[SESSION_KEY] = True
    session.permanent = True
    return redirect(url_for("dashboard.overview"), code=303)


@blueprint.post("/logout")
def logout() -> Response:
    require_csrf()
    session.clear()
    return redirect(url_for("dashboard.login_page"), code=303)


def _past(rows: list[ledger.OccurrenceRow]) -> list[PastRow]:
    engine = web_state().engine
    progress = channel_state.progress(engine, [r.id for r in rows])
    out = []
    for row in rows:
        item = PastRow(row, progress.get(row.id, []))
        if any(c.failed for c in item.channels):
            item.failures = ledger.failures(engine, row.id, limit=FAILURE_REASONS)
        out.append(item)
    return out


@blueprint.get("")
def overview() -> tuple[str, int]:
    state = web_state()
    config = state.config
    now = state.now()
    paused = clock_state.paused(state.engine)
    upcoming = calendar.next_occurrences(config, now, limit=UPCOMING)
    # One sent early by hand (or cancelled ahead) is not "upcoming" any more: say so.
    settled = {
        occ_id: row.state
        for occ_id, row in clock_state.known(state.engine, [o.id for o in upcoming]).items()
    }
    past = _past(ledger.list_occurrences(state.engine, limit=PAST))
    # An upcoming occurrence some of whose channels went out by hand shows which.
    started = channel_state.progress(
        state.engine, list(settled), step_channels={o.id: o.channels for o in upcoming}
    )
    return render_page(
        "dashboard.html",
        now=now.astimezone(dt.UTC),
        upcoming=upcoming,
        settled=settled,
        started=started,
        past=past,
        local_time=local_time,
        paused=sorted(paused),
        campaign_name=lambda cid: (
            config.campaigns[cid].display_name() if cid in config.campaigns else cid
        ),
        list_counts=subscribers.list_counts(state.engine),
    )
