"""The organizers' dashboard: what comes next, what is held for review, what went out, what
failed, what is paused, every list, the audit log. Behind a sign-in: organizer accounts
(`scheduler users`), or the environment's password or token for read-only access; with
neither it is switched off rather than open. The actions are in `scheduler.web.actions`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask import Blueprint, abort, redirect, request, session, url_for
from werkzeug.wrappers import Response

from scheduler import calendar
from scheduler.accounts import audit, lockout, passwords, scope
from scheduler.accounts import store as accounts
from scheduler.delivery import channel_state, clock_state, ledger
from scheduler.delivery.channel_state import ChannelProgress
from scheduler.errors import AccountError
from scheduler.listhealth import stats
from scheduler.review import approvals, holds
from scheduler.review import policy as review_policy
from scheduler.store import problems, subscribers
from scheduler.timefmt import local_time
from scheduler.web import session as session_auth
from scheduler.web.csrf import require_csrf
from scheduler.web.freshness import current_project
from scheduler.web.pages import client_ip, message_page, render_page, t, web_state

blueprint = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# Reached without signing in: the sign-in itself and the one-time password links.
OPEN_ENDPOINTS = (
    "dashboard.login_page",
    "dashboard.login",
    "dashboard.password_page",
    "dashboard.set_password",
)
UPCOMING = 20
PAST = 50
FAILURE_REASONS = 5
AUDIT = 30


@dataclass
class PastRow:
    row: ledger.OccurrenceRow
    # Each channel of the step: its state (still planned, firing, done, missed) and counts.
    channels: list[ChannelProgress] = field(default_factory=list)
    failures: list[tuple[str, str, int]] = field(default_factory=list)
    state: str = ""  # as shown: `blocked` for a row its campaign's problem keeps `planned`
    blocked_reason: str | None = None
    # A `deliver: local` step: its waves, zone by zone, with their counts.
    waves: list[ledger.WaveCount] = field(default_factory=list)


@blueprint.before_request
def _guard() -> tuple[str, int] | Response | None:
    if not session_auth.dashboard_enabled():
        return message_page("dashboard_title", "dashboard_disabled", 503)
    if request.endpoint in OPEN_ENDPOINTS or session_auth.current() is not None:
        return None
    return redirect(url_for("dashboard.login_page"))


@blueprint.get("/login")
def login_page() -> tuple[str, int]:
    return render_page("login.html", error=None)


@blueprint.post("/login")
def login() -> Response | tuple[str, int]:
    require_csrf()
    state = web_state()
    ip = client_ip()
    if not state.hits.hit(f"login-ip:{ip}", state.limits.login_per_ip):
        abort(429)
    email = request.form.get("email", "").strip()[:254]
    secret = request.form.get("secret", "")
    if not email:
        # The environment's password or token: read-only, for scripts and the first setup.
        if not state.dashboard.accepts(secret):
            return render_page("login.html", 403, error=t("login_failed"))
        session_auth.start(None)
        return redirect(url_for("dashboard.overview"), code=303)
    if lockout.locked(state.engine, email, ip):
        # Said the same way for an address with no account: nothing is learned from it.
        return render_page("login.html", 429, error=t("login_locked"))
    account, password_hash = accounts.password_hash_of(state.engine, email)
    if not passwords.verify(password_hash, secret) or account is None:
        lockout.failed(state.engine, email, ip)
        if account is not None:
            audit.record(state.engine, actor=account.email, action="login.failed", origin=ip)
        return render_page("login.html", 403, error=t("login_failed"))
    lockout.succeeded(state.engine, email, ip)
    session_auth.start(account)
    audit.record(state.engine, actor=account.email, action="login", origin=ip)
    return redirect(url_for("dashboard.overview"), code=303)


@blueprint.post("/logout")
def logout() -> Response:
    require_csrf()
    session.clear()
    return redirect(url_for("dashboard.login_page"), code=303)


@blueprint.get("/password/<token>")
def password_page(token: str) -> tuple[str, int]:
    account = accounts.link_account(web_state().engine, token)
    if account is None:
        return message_page("password_link_title", "password_link_invalid", 404)
    return render_page("password.html", email=account.email, error=None)


@blueprint.post("/password/<token>")
def set_password(token: str) -> Response | tuple[str, int]:
    require_csrf()
    state = web_state()
    if not state.hits.hit(f"password-ip:{client_ip()}", state.limits.login_per_ip):
        abort(429)
    account = accounts.link_account(state.engine, token)
    if account is None:
        return message_page("password_link_title", "password_link_invalid", 404)
    password = request.form.get("password", "")
    if password != request.form.get("again", ""):
        return render_page("password.html", 400, email=account.email, error=t("password_differ"))
    try:
        accounts.use_link(state.engine, token, password)
    except AccountError as e:
        return render_page("password.html", 400, email=account.email, error=str(e))
    audit.record(state.engine, actor=account.email, action="account.password", origin=client_ip())
    session.clear()
    return redirect(url_for("dashboard.login_page"), code=303)


def _past(rows: list[ledger.OccurrenceRow]) -> list[PastRow]:
    engine = web_state().engine
    progress = channel_state.progress(engine, [r.id for r in rows])
    blocked = problems.blocked_reasons(problems.current(engine, problems.CAMPAIGN))
    by_wave = ledger.wave_counts(engine, [r.id for r in rows])
    out = []
    for row in rows:
        item = PastRow(row, progress.get(row.id, []), waves=by_wave.get(row.id, []))
        item.state, item.blocked_reason = problems.shown_state(
            row.state, row.campaign, row.note, blocked
        )
        if any(c.failed for c in item.channels):
            item.failures = ledger.failures(engine, row.id, limit=FAILURE_REASONS)
        out.append(item)
    return out


@dataclass
class CampaignRow:
    id: str
    name: str
    paused: bool


@blueprint.get("")
def overview() -> tuple[str, int]:
    state = web_state()
    config = current_project().config
    now = state.now()
    who = session_auth.current()
    paused = clock_state.paused(state.engine)
    upcoming = calendar.next_occurrences(config, now, limit=UPCOMING)
    # One sent early by hand (or cancelled ahead) is not "upcoming" any more: say so.
    settled = {
        occ_id: row.state
        for occ_id, row in clock_state.known(state.engine, [o.id for o in upcoming]).items()
    }
    rows = ledger.list_occurrences(state.engine, limit=PAST)
    # Past means its instant has come; one settled before its instant is listed apart.
    past = _past([r for r in rows if r.instant <= now])
    ahead = _past([r for r in rows if r.instant > now])
    approvers_exist = review_policy.has_approvers(state.engine)
    reviews = {
        occ.id: approvals.status(state.project, state.engine, occ, approvers_exist=True)
        for occ in upcoming
        if occ.id not in settled and review_policy.review_for(config, occ, approvers_exist)
    }
    counts = subscribers.list_counts(state.engine)
    # Every list: those of campaigns.yaml even with nobody on them yet, and any in the store.
    all_lists = {name: counts.get(name, {}) for name in sorted(set(config.lists) | set(counts))}
    # An upcoming occurrence some of whose channels went out by hand shows which.
    started = channel_state.progress(
        state.engine, list(settled), step_channels={o.id: o.channels for o in upcoming}
    )
    health = stats.by_occurrence(state.engine, [item.row.id for item in past + ahead])
    found = problems.current(state.engine)
    return render_page(
        "dashboard.html",
        now=now.astimezone(dt.UTC),
        who=who,
        upcoming=upcoming,
        settled=settled,
        reviews=reviews,
        held=holds.open_holds(state.engine),
        past=past,
        ahead=ahead,
        started=started,
        local_time=local_time,
        paused=sorted(paused),
        campaigns=[
            CampaignRow(cid, c.display_name(), cid in paused) for cid, c in config.campaigns.items()
        ],
        may_act=lambda cid: (
            who is not None
            and who.account is not None
            and who.may_act
            and scope.may_act_on(who.account, config, cid)
        ),
        problems=found,
        blocked={p.subject for p in found if p.kind == problems.CAMPAIGN},
        campaign_name=lambda cid: (
            config.campaigns[cid].display_name() if cid in config.campaigns else cid
        ),
        list_counts=all_lists,
        audit_entries=audit.entries(state.engine, limit=AUDIT),
        health=[
            (item.row.id, health[item.row.id]) for item in past + ahead if health[item.row.id].any()
        ],
        list_health=stats.by_list(state.engine, now=now),
    )
