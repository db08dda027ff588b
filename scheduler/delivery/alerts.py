"""Alerts to the organizers: an occurrence held for review or missed, a reminder to approvers,
a send whose failure rate passed the threshold. Each by email to the accounts concerned and to
the alert channel (`settings.alert_channel`, any post channel), once per cause: the cause is
the primary key of the `alerts` table, so a second clock or a restart cannot repeat one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from scheduler.accounts import store as accounts
from scheduler.accounts.scope import may_act_on
from scheduler.calendar import Occurrence
from scheduler.channels import Post, get_channel_class
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.letters import Letter, Mailer
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import Role, alerts, utcnow

log = logging.getLogger(__name__)

ORGANIZERS = (Role.ORGANIZER, Role.APPROVER)


def _first_time(ctx: DeliveryContext, cause: str, kind: str, message: str) -> bool:
    with writer(ctx.engine).begin() as conn:
        added = conn.execute(
            dialect_insert(conn, alerts)
            .values(cause=cause[:300], kind=kind, message=message, sent_at=utcnow())
            .on_conflict_do_nothing()
            .returning(alerts.c.cause)
        ).first()
    return added is not None


def alerted(ctx: DeliveryContext, cause: str) -> bool:
    import sqlalchemy as sa

    with ctx.engine.connect() as conn:
        return conn.scalar(sa.select(alerts.c.cause).where(alerts.c.cause == cause)) is not None


def recipients(
    ctx: DeliveryContext, campaign_id: str | None, roles: Iterable[Role] = ORGANIZERS
) -> list[str]:
    wanted = set(roles)
    return [
        a.email
        for a in accounts.all_accounts(ctx.engine)
        if a.role in wanted and (campaign_id is None or may_act_on(a, ctx.config, campaign_id))
    ]


def raise_alert(
    ctx: DeliveryContext,
    *,
    kind: str,
    cause: str,
    subject: str,
    body: str,
    campaign_id: str | None = None,
    to: list[str] | None = None,
) -> bool:
    """Send the alert unless its cause was alerted before; True when this call sent it."""
    if not _first_time(ctx, cause, kind, f"{subject}\n\n{body}"):
        return False
    log.warning("event=alert kind=%s cause=%r", kind, cause)
    addresses = recipients(ctx, campaign_id) if to is None else to
    _email(ctx, addresses, subject, body)
    _post(ctx, cause, f"{subject}\n\n{body}")
    return True


def _email(ctx: DeliveryContext, addresses: list[str], subject: str, body: str) -> None:
    if not addresses:
        return
    from html import escape

    try:
        mailer = Mailer(ctx, background=False)
    except Exception as e:  # no smtp channel: the alert channel and the log remain
        log.error("event=alert_email_unavailable error=%s", e)
        return
    html = "<p>" + escape(body).replace("\n\n", "</p><p>").replace("\n", "<br>") + "</p>"
    for address in addresses:
        mailer.send(
            Letter(
                to=address,
                name=None,
                subject=f"[{ctx.config.organization.name}] {subject}",
                text=body + "\n",
                html=html,
                language=ctx.config.organization.default_language,
            )
        )


def _post(ctx: DeliveryContext, cause: str, text: str) -> None:
    name = ctx.config.settings.alert_channel
    if name is None or name not in ctx.config.channels:
        return
    config = ctx.config.channels[name]
    cls = get_channel_class(config.type)
    if cls.kind == "email":
        return
    channel = cls.from_config(name, config)
    try:
        channel.send(
            Post(
                key=f"alert:{cause}",
                language=config.language or ctx.config.organization.default_language,
                parts=tuple(channel.split(text)),
            )
        )
    except Exception as e:  # an alert must never stop the clock
        log.error("event=alert_post_failed channel=%s error=%s", name, e)
    finally:
        channel.close()


def _dashboard(ctx: DeliveryContext, occurrence_id: str) -> str:
    base = ctx.config.organization.public_url.rstrip("/")
    return f"{base}/dashboard/occurrences/{occurrence_id}"


def held(ctx: DeliveryContext, occ: Occurrence, note: str) -> bool:
    campaign = ctx.config.campaigns[occ.campaign_id]
    return raise_alert(
        ctx,
        kind="held",
        cause=f"held:{occ.id}",
        campaign_id=occ.campaign_id,
        subject=f"HELD, not sent: {occ.id}",
        body=(
            f"{occ.id} was due at {occ.instant:%Y-%m-%d %H:%M} UTC and was not sent: {note}.\n"
            f"Approved within its catch-up window ({campaign.catch_up}) it goes out late; after "
            f"that it is recorded missed.\nReview and approve: {_dashboard(ctx, occ.id)}\n"
            f"or: scheduler review {occ.id} && scheduler approve {occ.id}"
        ),
    )


def missed(ctx: DeliveryContext, occ: Occurrence, note: str) -> bool:
    return raise_alert(
        ctx,
        kind="missed",
        cause=f"missed:{occ.id}",
        campaign_id=occ.campaign_id,
        subject=f"MISSED: {occ.id}",
        body=f"{occ.id} (due {occ.instant:%Y-%m-%d %H:%M} UTC) was not sent: {note}.",
    )


def reminder(ctx: DeliveryContext, occ: Occurrence, approvers: list[str], missing: int) -> bool:
    return raise_alert(
        ctx,
        kind="reminder",
        cause=f"remind:{occ.id}",
        campaign_id=occ.campaign_id,
        to=approvers,
        subject=f"Review needed before {occ.instant:%Y-%m-%d %H:%M} UTC: {occ.id}",
        body=(
            f"{occ.id} goes out at {occ.instant:%Y-%m-%d %H:%M} UTC and still needs {missing} "
            f"approval(s); without them it is held, not sent.\nReview: {_dashboard(ctx, occ.id)}"
        ),
    )


def failure_rate(
    ctx: DeliveryContext, occurrence_id: str, campaign_id: str, failed: int, total: int
) -> bool:
    if total <= 0 or failed / total <= ctx.config.settings.alert_failure_rate:
        return False
    return raise_alert(
        ctx,
        kind="failure_rate",
        cause=f"failures:{occurrence_id}",
        campaign_id=campaign_id,
        subject=f"{failed} of {total} deliveries failed: {occurrence_id}",
        body=(
            f"{failed / total:.0%} of the deliveries of {occurrence_id} failed (threshold "
            f"{ctx.config.settings.alert_failure_rate:.0%}). See `scheduler status` and the "
            f"dashboard: {_dashboard(ctx, occurrence_id)}"
        ),
    )


def failure_rate_when_done(ctx: DeliveryContext, occurrence_id: str) -> bool:
    """The failure-rate alert from the ledger, once the occurrence is done: what a worker asks
    after each batch (`scheduler clock` + workers), where no one process sees the whole send.
    Several workers finishing at once are harmless: the cause is alerted once."""
    from scheduler.delivery import ledger

    row = ledger.get_occurrence(ctx.engine, occurrence_id)
    if row is None or row.state != "done" or alerted(ctx, f"failures:{occurrence_id}"):
        return False
    by_channel = ledger.counts(ctx.engine, occurrence_id).get(occurrence_id, {})
    failed = sum(states.get("failed", 0) for states in by_channel.values())
    sent = sum(states.get("sent", 0) for states in by_channel.values())
    return failure_rate(ctx, occurrence_id, row.campaign, failed, failed + sent)


def token_rejected(ctx: DeliveryContext, occurrence_id: str, channel: str, error: str) -> bool:
    """A platform refused the channel's credential (HTTP 401/403): every later post fails
    the same way until someone fixes the token."""
    return raise_alert(
        ctx,
        kind="token_rejected",
        cause=f"token:{channel}:{occurrence_id}",
        subject=f"{channel}: the platform refused the credential",
        body=(
            f"Posting {occurrence_id} to {channel} failed: {error}\n"
            "Fix the token in the environment, then retry the failed deliveries."
        ),
    )


def bad_rows(ctx: DeliveryContext, list_name: str, source: str, problems: list[str]) -> bool:
    """A list's CSV source had rows that could not be imported; once per distinct set."""
    import hashlib

    digest = hashlib.sha256("\n".join(problems).encode()).hexdigest()[:16]
    shown = "\n".join(problems[:10]) + (
        f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
    )
    return raise_alert(
        ctx,
        kind="bad_rows",
        cause=f"rows:{list_name}:{digest}",
        subject=f"list {list_name}: {len(problems)} row(s) of {source} were not imported",
        body=f"Fix these rows in {source} (the others were imported):\n{shown}",
    )
