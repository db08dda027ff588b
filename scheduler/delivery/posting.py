"""Post one occurrence on one social channel: the thread planned once, each part posted once.

A post delivery moves through steps that are each safe to repeat, in this process or in
another one after a crash:

1. plan — render the post, split it into parts and freeze them in `post_parts` on the first
   attempt; every later attempt reads the same parts back, so a thread never changes shape
   half-way (a template edited between attempts does not matter);
2. post — send each part not yet confirmed, and record its platform id the moment the
   platform confirms it, so a retry continues after the last confirmed part;
3. retry — a transient failure (timeout, dropped connection, 5xx, 429) waits for the
   platform's `Retry-After` or the backoff of `ctx.retry` (a long wait in the ledger, see
   `deferral.py`), then continues; it fails once the channel's retry window has passed
   since its first such failure. A part whose answer
   was lost is recognised on Mastodon (same Idempotency-Key), on Bluesky (its record key is
   looked up before creating it again) and by webhook receivers (same `webhook-id`). Discord,
   Slack and Telegram offer no such thing: the part is sent again and may show twice, and
   the ledger says so in the delivery's response.

A permanent failure (refused credentials, a deleted webhook, a rejected post) fails the
delivery with the platform's reason; secrets never appear in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.calendar import Occurrence
from scheduler.channels import AnyChannel, LinkCard, Media, Post, PostRef, get_channel_class
from scheduler.content.render import Renderer
from scheduler.delivery import alerts, ledger
from scheduler.delivery.attempts import Attempts, GiveUp, Round
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.ledger import ClaimedDelivery, Result
from scheduler.errors import (
    ConfigError,
    PermanentSendError,
    SecretError,
    StatementError,
    TemplateError,
    TransientSendError,
    UploadExpiredError,
)
from scheduler.store.db import dialect_insert, writer
from scheduler.store.reconnect import survives_connection_loss
from scheduler.store.schema import DeliveryState, post_parts, post_uploads, utcnow

log = logging.getLogger(__name__)

P = post_parts.c
U = post_uploads.c
_RESPONSE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class PlannedPart:
    part: int  # 1-based
    text: str
    ref: PostRef | None  # where it went, once the platform confirmed it


def delivery_key(occurrence_id: str, channel: str) -> str:
    """The delivery's stable name, e.g. 'may-day/2027/statement/mastodon': platform
    idempotency keys, Bluesky record keys and webhook ids derive from it (as in previews)."""
    return f"{occurrence_id}/{channel}"


# --- the thread in the store -------------------------------------------------------------------


@survives_connection_loss
def thread_of(engine: Engine, delivery_id: int) -> list[PlannedPart]:
    """The planned parts of a delivery, in order (empty before its first attempt)."""
    query = sa.select(P.part, P.text, P.remote_id, P.remote_cid, P.posted_at).where(
        P.delivery_id == delivery_id
    )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(P.part)).all()
    return [
        PlannedPart(
            part=int(part),
            text=text,
            ref=None if posted_at is None else PostRef(id=remote_id, cid=remote_cid),
        )
        for part, text, remote_id, remote_cid, posted_at in rows
    ]


@survives_connection_loss
def plan_thread(engine: Engine, delivery_id: int, parts: list[str]) -> list[PlannedPart]:
    """Freeze `parts` as the delivery's thread, unless it has one already: the first plan
    wins, and is what this returns."""
    with writer(engine).begin() as conn:
        exists = conn.scalar(sa.select(sa.func.count()).where(P.delivery_id == delivery_id))
        if not exists:
            conn.execute(
                dialect_insert(conn, post_parts).on_conflict_do_nothing(),
                [
                    {"delivery_id": delivery_id, "part": i, "text": text}
                    for i, text in enumerate(parts, 1)
                ],
            )
    return thread_of(engine, delivery_id)


@survives_connection_loss
def record_part(engine: Engine, delivery_id: int, part: int, ref: PostRef) -> None:
    """Record that the platform confirmed `part`; the first record stands."""
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(post_parts)
            .where(P.delivery_id == delivery_id, P.part == part, P.posted_at.is_(None))
            .values(remote_id=ref.id, remote_cid=ref.cid, posted_at=utcnow())
        )


@survives_connection_loss
def uploads_of(engine: Engine, delivery_id: int) -> dict[str, str]:
    """Images the delivery uploaded already: name -> the platform's id."""
    query = sa.select(U.name, U.remote_id).where(U.delivery_id == delivery_id)
    with engine.connect() as conn:
        return {name: remote for name, remote in conn.execute(query)}


@survives_connection_loss
def record_upload(engine: Engine, delivery_id: int, name: str, remote_id: str) -> None:
    """Record an upload the platform confirmed; the first record stands."""
    with writer(engine).begin() as conn:
        conn.execute(
            dialect_insert(conn, post_uploads).on_conflict_do_nothing(),
            [{"delivery_id": delivery_id, "name": name, "remote_id": remote_id}],
        )


@survives_connection_loss
def forget_uploads(engine: Engine, delivery_id: int) -> None:
    """The platform no longer has them: the next attempt uploads again."""
    with writer(engine).begin() as conn:
        conn.execute(sa.delete(post_uploads).where(U.delivery_id == delivery_id))


# --- what a post is made of --------------------------------------------------------------------


def post_for(
    renderer: Renderer,
    occ: Occurrence,
    channel_name: str,
    key: str,
    language: str,
    parts: list[str],
) -> Post:
    """The post for `parts`: the statement's images (with alt text in `language`), its link
    as a card, the campaign's hashtags. Previews build the same value."""
    campaign = renderer.config.campaigns[occ.campaign_id]
    statement = renderer.statement(campaign.statement, language, campaign.chapter)
    channel_type = renderer.config.channels[channel_name].type
    fetched_as = channel_type if get_channel_class(channel_type).fetches_images else None
    media = tuple(
        Media(
            name=image.file,
            path=image.path,
            alt=image.alt,
            mime=image.info.mime,
            width=image.info.width,
            height=image.info.height,
            size=image.info.size,
            url=renderer.media_url(image.file, fetched_as),
        )
        for image in renderer.images(occ, language, channel_name)
    )
    link = LinkCard(
        url=statement.canonical_url or renderer.archive_url(occ, language),
        title=statement.title,
        description=statement.summary,
        image=media[0] if media else None,
    )
    return Post(
        key=key,
        language=language,
        parts=tuple(parts),
        media=media,
        link=link,
        hashtags=tuple(campaign.hashtags.get(language, [])),
        metadata=metadata_for(occ, channel_name),
    )


# --- posting -----------------------------------------------------------------------------------


@dataclass
class PostOutcome:
    result: Result
    reason: str | None = None  # short, for grouping failures in reports
    retries: int = 0
    # Handed back to the ledger for a later attempt (already recorded, see deferral.py).
    deferred: bool = False


def post_delivery(
    ctx: DeliveryContext, occ: Occurrence, channel_name: str, delivery: ClaimedDelivery
) -> PostOutcome:
    """Post one claimed delivery (the whole thread) and say what to write to the ledger."""
    engine = ctx.engine
    channel = ctx.channel(channel_name)
    key = delivery_key(occ.id, channel_name)

    def fail(reason: str, detail: str | None = None, *, error: str | None = None) -> PostOutcome:
        error = error or (reason if detail is None else f"{reason}: {detail}")
        log.warning("%s %s: %s", occ.id, channel_name, error)
        return PostOutcome(Result(delivery.id, DeliveryState.FAILED, error=error), reason)

    try:
        rendered = ctx.renderer.post(occ, channel_name)
    except (TemplateError, ConfigError, StatementError) as e:
        return fail("cannot render the post", str(e).split("\n")[0])
    thread = thread_of(engine, delivery.id)
    if not thread:
        try:
            planned = _plan(ctx, occ, channel, rendered.text)
        except ValueError as e:
            return fail("cannot fit the post", str(e))
        if isinstance(planned, str):
            return fail(planned)
        thread = plan_thread(engine, delivery.id, planned)
    parts = [p.text for p in thread]
    posted: list[PostRef] = []
    for p in thread:
        if p.ref is None:
            break
        posted.append(p.ref)

    def on_posted(index: int, ref: PostRef) -> None:
        record_part(engine, delivery.id, index, ref)
        posted.append(ref)
        ledger.renew_lease(engine, [delivery.id], lease=ctx.lease)

    post = post_for(ctx.renderer, occ, channel_name, key, rendered.language, parts)

    def on_uploaded(name: str, remote_id: str) -> None:
        record_upload(engine, delivery.id, name, remote_id)
        ledger.renew_lease(engine, [delivery.id], lease=ctx.lease)

    # A sender before us (a crash, an expired lease) may have been cut off right after the
    # platform took the next part: channels that can look it up do so first.
    maybe_posted = delivery.attempts > 1
    notes: list[str] = []
    attempts = Attempts(ctx, occ.id, channel_name, attempt=delivery.attempts, server=channel.type)
    outcome: PostOutcome | None = None

    def send(todo: list[ClaimedDelivery]) -> Round:
        nonlocal maybe_posted, outcome
        try:
            refs = channel.send(
                post.replace(uploaded=uploads_of(engine, delivery.id)),
                posted=list(posted),
                on_posted=on_posted,
                on_uploaded=on_uploaded,
                maybe_posted=maybe_posted,
            )
        except (PermanentSendError, SecretError) as e:
            if isinstance(e, PermanentSendError) and e.status in (401, 403):
                alerts.token_rejected(ctx, occ.id, channel_name, str(e))
            outcome = fail(_reason(channel, e), error=str(e))
            return Round()
        except TransientSendError as e:
            if isinstance(e, UploadExpiredError):
                forget_uploads(engine, delivery.id)
            maybe_posted = True
            # (A lost answer while the platform is down matters once a part has gone.)
            if e.maybe_accepted and not channel.idempotent and (posted or not e.unreachable):
                when = "" if e.unreachable else f"(attempt {attempts.attempt}) "
                notes.append(
                    f"part {len(posted) + 1} may show twice: its answer was lost "
                    f"{when}and {channel.type} has no idempotency key"
                )
            if e.unreachable:
                # The platform is down, not this post: the channel waits for it as a whole
                # and the post's attempts do not move (see delivery/breaker.py).
                return Round(waiting=[delivery], reason=str(e), retry_after=e.retry_after)
            return Round(again=[(delivery, str(e))], retry_after=e.retry_after)
        ctx.breaker(channel_name).success()
        outcome = _posted(delivery, refs, notes)
        return Round()

    def give_up(failed: list[tuple[ClaimedDelivery, str]], why: GiveUp) -> None:
        nonlocal outcome
        ((_, reply),) = failed
        if why.deferred:
            error = f"{why.error}: {reply}"
            outcome = PostOutcome(Result(delivery.id, DeliveryState.PENDING, error=error))
            outcome.deferred = True
        elif why.pending:
            error = f"{why.error}: {reply}"
            if not why.unreachable:
                error = f"stopping; will continue after part {len(posted)}: {reply}"
            outcome = PostOutcome(Result(delivery.id, DeliveryState.PENDING, error=error))
        else:
            outcome = fail(why.error, reply)

    attempts.run([delivery], send, give_up)
    assert outcome is not None  # every round ends in a post, a failure or a give-up
    outcome.retries = attempts.retried + attempts.waited
    return outcome


def _posted(delivery: ClaimedDelivery, refs: list[PostRef], notes: list[str]) -> PostOutcome:
    ids = [r.id for r in refs if r.id]
    response = f"posted {len(refs)} part{'s' if len(refs) != 1 else ''}"
    if ids:
        response += ": " + ", ".join(ids)
    if notes:
        response += "; " + "; ".join(notes)
    result = Result(
        delivery.id,
        DeliveryState.SENT,
        response=response[:_RESPONSE_CHARS],
        message_id=ids[0] if ids else None,
    )
    return PostOutcome(result)


def _plan(ctx: DeliveryContext, occ: Occurrence, channel: AnyChannel, text: str) -> list[str] | str:
    """The parts to post, or why there are none."""
    step = ctx.config.campaigns[occ.campaign_id].steps[occ.step_id]
    channel.prepare()  # e.g. a Mastodon instance's own limits, before measuring
    if step.overflow == "error" and not channel.fits(text):
        return (
            f"the post is {channel.count(text)} characters, over {channel.type}'s limit of "
            f"{channel.limit}, and the step sets overflow: error; shorten the template or "
            "set overflow: thread"
        )
    parts = channel.split(text)
    if not parts:
        return "the rendered post is empty; check the post template"
    return parts


def metadata_for(occ: Occurrence, channel_name: str) -> Mapping[str, Any]:
    """What a webhook body carries besides the text (previews show the same)."""
    return {
        "occurrence": {
            "id": occ.id,
            "campaign": occ.campaign_id,
            "step": occ.step_id,
            "instant": occ.instant.isoformat().replace("+00:00", "Z"),
        },
        "channel": channel_name,
    }


def _reason(channel: AnyChannel, error: Exception) -> str:
    status = getattr(error, "status", None)
    if isinstance(error, SecretError):
        return "a secret is not set"
    return f"{channel.type} refused the post" + (f" (HTTP {status})" if status else "")
