"""What organizers do from the dashboard: pause and resume a campaign, cancel an occurrence,
approve it, send a test of it to their own address, send it now, retry its failed deliveries
(all, or one channel's), send the channels still planned; and its page: review state, the
diff since an approval, and a preview of every channel.

A send far from its instant asks first, as `scheduler send` does (`delivery.guard`): the
dashboard answers with a second form that says when the occurrence is due and how far away
that is; only that form, carrying the instant it confirmed, sends.

Every action is a POST with the session's CSRF token, by a signed-in account whose role and
chapter allow it (`accounts.scope.require`); each calls the same function as the CLI
(`scheduler.actions`, `review.approvals`) and lands in the audit log. The read-only token and
viewers see the pages and get 403 for every action.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask import abort, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from scheduler import actions, calendar
from scheduler.accounts import audit, scope
from scheduler.calendar import Occurrence
from scheduler.channels import get_channel_class
from scheduler.content.render import Recipient, Renderer
from scheduler.delivery import channel_state, clock_state, ledger
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.letters import Letter
from scheduler.delivery.readiness import unset_variables
from scheduler.errors import NotAllowedError, ReviewError, SchedulerError, UnknownCampaignError
from scheduler.review import approvals, holds
from scheduler.store import problems
from scheduler.web import session as session_auth
from scheduler.web.csrf import require_csrf
from scheduler.web.dashboard import blueprint as blueprint  # the app registers it from here
from scheduler.web.freshness import current_project
from scheduler.web.pages import message_page, render_page, web_state

# The occurrence page shows the email in a frame of this site; nothing else may frame it.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The email itself: its own inline styles and remote images, no script, no forms, framed only
# by the occurrence page (and the frame is sandboxed there too).
EMAIL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
TEST_MARK = "[TEST]"


@dataclass
class PostPreview:
    channel: str
    platform: str
    language: str
    limit: int | None
    parts: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class EmailPreview:
    channel: str
    language: str
    subject: str


def _occurrence(occurrence_id: str) -> Occurrence:
    try:
        return calendar.occurrence(current_project().config, occurrence_id)
    except UnknownCampaignError:
        abort(404)


def _acting(campaign_id: str, *, approve: bool = False) -> session_auth.SignedIn:
    """The signed-in account, if it may do this; 403 (audited) otherwise."""
    require_csrf()
    who = session_auth.current()
    try:
        scope.require(
            who.account if who else None, web_state().config, campaign_id, approve=approve
        )
    except NotAllowedError as e:
        if who is not None:
            audit.record(
                web_state().engine,
                actor=who.name,
                action="denied",
                target=request.path[:300],
                detail=str(e),
                origin=who.actor.origin,
            )
        abort(403, description=str(e))
    assert who is not None
    return who


def _back(fallback: str) -> Response:
    return redirect(fallback, code=303)


@blueprint.post("/campaigns/<campaign_id>/pause")
def pause(campaign_id: str) -> Response:
    if campaign_id not in web_state().config.campaigns:
        abort(404)
    who = _acting(campaign_id)
    note = request.form.get("note", "").strip()[:500] or None
    flash(actions.pause(web_state().engine, campaign_id, who.actor, note).message)
    return _back(url_for("dashboard.overview") + "#campaigns")


@blueprint.post("/campaigns/<campaign_id>/resume")
def resume(campaign_id: str) -> Response:
    if campaign_id not in web_state().config.campaigns:
        abort(404)
    who = _acting(campaign_id)
    flash(actions.resume(web_state().engine, campaign_id, who.actor).message)
    return _back(url_for("dashboard.overview") + "#campaigns")


@blueprint.post("/occurrences/<path:occurrence_id>/cancel")
def cancel(occurrence_id: str) -> Response:
    occ = _occurrence(occurrence_id)
    who = _acting(occ.campaign_id)
    state = web_state()
    flash(actions.cancel(state.engine, state.config, occ.id, who.actor).message)
    return _back(url_for("dashboard.occurrence", occurrence_id=occ.id))


@blueprint.post("/occurrences/<path:occurrence_id>/approve")
def approve(occurrence_id: str) -> Response:
    occ = _occurrence(occurrence_id)
    who = _acting(occ.campaign_id, approve=True)
    assert who.account is not None
    state = web_state()
    try:
        found = approvals.approve(current_project(), state.engine, occ, who.account, who.actor)
    except ReviewError as e:
        flash(str(e))
    else:
        flash(
            f"{occ.id}: approved"
            + ("" if found.approved else f"; needs {found.missing} more approval(s)")
        )
    return _back(url_for("dashboard.occurrence", occurrence_id=occ.id))


@blueprint.post("/occurrences/<path:occurrence_id>/test")
def send_test(occurrence_id: str) -> Response | tuple[str, int]:
    """Email this occurrence to the signed-in organizer only: outside the ledger (nothing is
    recorded as sent to anyone), its subject marked as a test."""
    occ = _occurrence(occurrence_id)
    who = _acting(occ.campaign_id)
    assert who.account is not None
    state = web_state()
    if state.mailer is None:
        return message_page("dashboard_title", "test_no_smtp", 409)
    language = request.form.get("language") or state.config.organization.default_language
    rendered = Renderer(state.project).email(
        occ, Recipient(email=who.account.email, name=None, language=language, subscriber_id=0)
    )
    state.mailer.send(
        Letter(
            to=who.account.email,
            name=None,
            subject=f"{TEST_MARK} {rendered.subject}",
            text=f"{TEST_MARK} {occ.id}\n\n{rendered.text}",
            html=rendered.html,
            language=rendered.language,
        )
    )
    audit.record(
        state.engine,
        actor=who.name,
        action="occurrence.test",
        target=occ.id,
        detail=f"to={who.account.email} language={rendered.language}",
        origin=who.actor.origin,
    )
    flash(f"a test of {occ.id} ({rendered.language}) is on its way to {who.account.email}")
    return _back(url_for("dashboard.occurrence", occurrence_id=occ.id))


def _send_by_hand(occ: Occurrence, channels: list[str], kind: str) -> Response | tuple[str, int]:
    """Send now (`kind` "send") or send the channels still planned ("planned"), after the
    same checks as `scheduler send`: review, secrets, and the time (confirmed on a form)."""
    who = _acting(occ.campaign_id)
    state = web_state()
    project = current_project()
    back = _back(url_for("dashboard.occurrence", occurrence_id=occ.id) + "#actions")
    missing = {c: v for c in channels if (v := unset_variables(project.config, c))}
    if missing:
        needs = "; ".join(f"{c} needs {', '.join(v)}" for c, v in missing.items())
        flash(f"nothing was sent: {needs} (set them in the environment of the web process)")
        return back
    check = actions.check_send(project, state.engine, occ, channels, state.now())
    if check.review:
        flash(f"{occ.id} needs review before it is sent: {check.review}")
        return back
    if check.timing is not None and request.form.get("confirm") != check.timing.instant.isoformat():
        return render_page(
            "confirm_send.html",
            occ=occ,
            problem=check.timing,
            channels=channels,
            action=url_for(
                f"dashboard.{'send_now' if kind == 'send' else 'send_planned'}",
                occurrence_id=occ.id,
            ),
        )
    note = check.confirmed_note()
    actor = who.actor

    def job(ctx: DeliveryContext) -> object:
        if kind == "send":
            return actions.send_now(ctx, occ, actor, channels=channels, note=note)
        return actions.send_still_planned(ctx, occ, actor, note=note)

    state.sends.run(project, f"{kind}:{occ.id}", job)
    flash(f"{occ.id}: sending on {', '.join(channels)}")
    return back


@blueprint.post("/occurrences/<path:occurrence_id>/send")
def send_now(occurrence_id: str) -> Response | tuple[str, int]:
    occ = _occurrence(occurrence_id)
    channels = request.form.getlist("channel") or list(occ.channels)
    if any(c not in occ.channels for c in channels):
        abort(400)
    return _send_by_hand(occ, channels, "send")


@blueprint.post("/occurrences/<path:occurrence_id>/send-planned")
def send_planned(occurrence_id: str) -> Response | tuple[str, int]:
    occ = _occurrence(occurrence_id)
    planned = actions.still_planned(web_state().engine, occ)
    if ledger.get_occurrence(web_state().engine, occ.id) is None or not planned:
        _acting(occ.campaign_id)
        flash(f"{occ.id}: no channel is still planned")
        return _back(url_for("dashboard.occurrence", occurrence_id=occ.id))
    return _send_by_hand(occ, planned, "planned")


@blueprint.post("/occurrences/<path:occurrence_id>/retry")
def retry(occurrence_id: str) -> Response:
    """Retry the failed deliveries of the occurrence, or of one channel (`channel`)."""
    occ = _occurrence(occurrence_id)
    who = _acting(occ.campaign_id)
    state = web_state()
    channel = request.form.get("channel") or None
    if channel is not None and channel not in occ.channels:
        abort(400)
    back = _back(url_for("dashboard.occurrence", occurrence_id=occ.id) + "#actions")
    row = ledger.get_occurrence(state.engine, occ.id)
    if row is None or row.state == "cancelled":
        flash(f"{occ.id} has not been sent: nothing to retry")
        return back
    by_channel = ledger.counts(state.engine, occ.id).get(occ.id, {})
    failed = sum(
        by.get("failed", 0) for c, by in by_channel.items() if channel is None or c == channel
    )
    if not failed:
        flash(f"{occ.id}: no failed deliveries to retry")
        return back
    channels = [channel] if channel else None
    actor = who.actor
    state.sends.run(
        current_project(),
        f"retry:{occ.id}",
        lambda ctx: actions.retry(ctx, occ.id, actor, channels=channels),
    )
    flash(f"{occ.id}: retrying {failed} failed deliveries" + (f" on {channel}" if channel else ""))
    return back


def _previews(occ: Occurrence) -> tuple[list[EmailPreview], list[PostPreview], str | None]:
    state = web_state()
    config = state.config
    campaign = config.campaigns[occ.campaign_id]
    renderer = Renderer(state.project)
    emails: list[EmailPreview] = []
    posts: list[PostPreview] = []
    try:
        for name in occ.channels:
            channel_config = config.channels[name]
            cls = get_channel_class(channel_config.type)
            if cls.kind == "email":
                for language in config.campaign_languages(campaign):
                    recipient = Recipient(
                        email="ana@example.org", name="Ana", language=language, subscriber_id=0
                    )
                    rendered = renderer.email(occ, recipient)
                    emails.append(EmailPreview(name, rendered.language, rendered.subject))
            else:
                channel = cls.from_config(name, channel_config)
                post = renderer.post(occ, name)
                parts = [(p, channel.count(p)) for p in channel.split(post.text)]
                posts.append(
                    PostPreview(name, channel_config.type, post.language, channel.max_length, parts)
                )
    except SchedulerError as e:
        return emails, posts, str(e)
    return emails, posts, None


@blueprint.get("/occurrences/<path:occurrence_id>")
def occurrence(occurrence_id: str) -> tuple[str, int, dict[str, str]]:
    occ = _occurrence(occurrence_id)
    state = web_state()
    who = session_auth.current()
    review = approvals.status(state.project, state.engine, occ)
    emails, posts, problem = _previews(occ)
    row = ledger.get_occurrence(state.engine, occ.id)
    counts = ledger.counts(state.engine, occ.id).get(occ.id, {})
    hold = holds.get(state.engine, occ.id)
    shown, blocked_reason = (None, None)
    if row is not None:
        blocked = problems.blocked_reasons(problems.current(state.engine, problems.CAMPAIGN))
        shown, blocked_reason = problems.shown_state(row.state, row.campaign, row.note, blocked)
    progress = channel_state.occurrence_progress(state.engine, occ.id, occ.channels)
    html, status = render_page(
        "occurrence.html",
        occ=occ,
        row=row,
        shown_state=shown,
        blocked_reason=blocked_reason,
        counts=counts,
        review=review,
        hold=hold if hold is not None and hold.released_at is None else None,
        emails=emails,
        posts=posts,
        problem=problem,
        paused=occ.campaign_id in campaign_paused(),
        may_act=who is not None
        and who.account is not None
        and who.may_act
        and scope.may_act_on(who.account, state.config, occ.campaign_id),
        may_approve=who is not None and who.may_approve,
        future=occ.instant > state.now(),
        # What a hand send may still do: start channels, send the rest, retry failures.
        startable=[p.channel for p in progress if p.state in ("planned", "missed")],
        planned=[p.channel for p in progress if p.still_planned] if row is not None else [],
        failed={p.channel: p.failed for p in progress if p.failed},
        now=state.now().astimezone(dt.UTC),
    )
    return html, status, {"Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY"}


def campaign_paused() -> set[str]:
    return clock_state.paused(web_state().engine)


@blueprint.get("/occurrences/<path:occurrence_id>/email/<channel>/<language>")
def email_html(occurrence_id: str, channel: str, language: str) -> tuple[str, int, dict[str, str]]:
    occ = _occurrence(occurrence_id)
    if channel not in occ.channels:
        abort(404)
    state = web_state()
    recipient = Recipient(email="ana@example.org", name="Ana", language=language, subscriber_id=0)
    rendered = Renderer(state.project).email(occ, recipient)
    return (
        rendered.html,
        200,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": EMAIL_POLICY,
            "X-Frame-Options": "SAMEORIGIN",
        },
    )
