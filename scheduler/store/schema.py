"""The durable state, as SQLAlchemy Core tables. Migrations in `migrations/` create them.

Every timestamp is stored in UTC and read back as an aware datetime, on SQLite too.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class MembershipStatus(StrEnum):
    UNCONFIRMED = "unconfirmed"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# A membership in one of these states is never changed back by an import.
FINAL_STATUSES = frozenset(
    {MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED, MembershipStatus.COMPLAINED}
)


class SuppressionReason(StrEnum):
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    MANUAL = "manual"


class OccurrenceState(StrEnum):
    PLANNED = "planned"
    FIRING = "firing"
    DONE = "done"
    MISSED = "missed"
    CANCELLED = "cancelled"


class ChannelState(StrEnum):
    """One channel of one occurrence: an occurrence is `done` when every channel of its step
    is final (done, missed or cancelled), so a hand send of one channel ends nothing else."""

    PLANNED = "planned"  # not fanned out yet: the clock sends it at the instant
    FIRING = "firing"  # claimed; its deliveries are being created or sent
    DONE = "done"  # fanned out, and every delivery is final (sent, failed or skipped)
    MISSED = "missed"  # its instant passed outside the catch-up window: never sent
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # unsubscribed, bounced or suppressed after the fan-out: nothing sent


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored in UTC; naive values are refused, not guessed."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        value = value.astimezone(dt.UTC)
        # SQLite has no time zones; store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_in(column: str, values: type[StrEnum]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
EMAIL_LENGTH = 254

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created_at(name: str = "created_at") -> sa.Column[dt.datetime]:
    return sa.Column(
        name, UtcDateTime, nullable=False, default=utcnow, server_default=sa.func.now()
    )


def _updated_at() -> sa.Column[dt.datetime]:
    return sa.Column(
        "updated_at",
        UtcDateTime,
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=sa.func.now(),
    )


def _timestamps() -> tuple[sa.Column[dt.datetime], sa.Column[dt.datetime]]:
    return _created_at(), _updated_at()


subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # address_key(email): the whole address lower-cased; one subscriber per key.
    sa.Column("email_key", sa.String(EMAIL_LENGTH), nullable=False, unique=True),
    sa.Column("email", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("language", sa.String(35), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("attributes", Json, nullable=False, default=dict),
    *_timestamps(),
)

lists = sa.Table(
    "lists",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    _created_at(),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column(
        "subscriber_id",
        BigId,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "list_name",
        sa.String(64),
        # No ON DELETE CASCADE: dropping a list must not silently forget who unsubscribed.
        sa.ForeignKey("lists.name", onupdate="CASCADE"),
        primary_key=True,
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200), nullable=True),
    _created_at("subscribed_at"),
    _updated_at(),
    _check_in("status", MembershipStatus),
    sa.Index("ix_memberships_list_status", "list_name", "status"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_key", sa.String(EMAIL_LENGTH), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    _created_at(),
)

occurrences = sa.Table(
    "occurrences",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),  # 'may-day/2027/statement'
    sa.Column("campaign", sa.String(64), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("instant", UtcDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default=OccurrenceState.PLANNED.value),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("note", sa.Text, nullable=True),  # why late, missed or cancelled
    sa.Column("recipients", sa.Integer, nullable=True),  # deliveries created by the fan-out
    sa.Column("fired_at", UtcDateTime, nullable=True),
    sa.Column("fanned_out_at", UtcDateTime, nullable=True),  # every delivery row exists
    sa.Column("finished_at", UtcDateTime, nullable=True),
    *_timestamps(),
    _check_in("state", OccurrenceState),
    sa.Index("ix_occurrences_state_instant", "state", "instant"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "occurrence_id",
        sa.String(200),
        sa.ForeignKey("occurrences.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("channel", sa.String(64), nullable=False),
    # A subscriber id (as text) for email, the channel's target for posts.
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("subscriber_id", BigId, nullable=True),  # email deliveries
    sa.Column("language", sa.String(35), nullable=True),
    sa.Column("state", sa.String(16), nullable=False, server_default=DeliveryState.PENDING.value),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("provider_response", sa.Text, nullable=True),
    sa.Column("message_id", sa.Text, nullable=True),
    *_timestamps(),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    # A worker holds a delivery in `sending` until this instant; after it, the delivery is
    # considered abandoned (a killed worker) and may be claimed again.
    sa.Column("lease_until", UtcDateTime, nullable=True),
    # `scheduler retry` sent a failed delivery again: how often, when last, and the reason
    # it had failed with before (last_error then says what happened on the retry).
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retried_at", UtcDateTime, nullable=True),
    sa.Column("retried_error", sa.Text, nullable=True),
    sa.UniqueConstraint("occurrence_id", "channel", "recipient"),
    _check_in("state", DeliveryState),
    sa.Index("ix_deliveries_occurrence_state", "occurrence_id", "state"),
    # Batches are id ranges of one occurrence and channel: claiming one must read ~250 rows,
    # not every row of the occurrence.
    sa.Index("ix_deliveries_occurrence_channel_id", "occurrence_id", "channel", "id"),
)

# One row per (occurrence, channel of its step), written when the occurrence is first claimed
# or settled. The clock fires the channels still `planned` at the instant, whatever was sent
# by hand before.
occurrence_channels = sa.Table(
    "occurrence_channels",
    metadata,
    sa.Column(
        "occurrence_id",
        sa.String(200),
        sa.ForeignKey("occurrences.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, server_default=ChannelState.PLANNED.value),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("note", sa.Text, nullable=True),  # why late, by hand, missed or failed
    sa.Column("fired_at", UtcDateTime, nullable=True),
    sa.Column("fanned_out_at", UtcDateTime, nullable=True),  # every delivery row exists
    sa.Column("first_sent_at", UtcDateTime, nullable=True),  # when something really went out
    sa.Column("finished_at", UtcDateTime, nullable=True),
    *_timestamps(),
    _check_in("state", ChannelState),
)


pauses = sa.Table(
    "pauses",
    metadata,
    sa.Column("campaign", sa.String(64), primary_key=True),
    sa.Column("note", sa.Text, nullable=True),
    _created_at("paused_at"),
)

# Small facts the clock keeps between runs, such as when it was last alive (so a restart can
# tell which occurrences passed while nothing ran).
clock_state = sa.Table(
    "clock_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", UtcDateTime, nullable=False),
    _updated_at(),
)

# The parts of a post delivery's thread, frozen when the delivery is first attempted (so a
# retry posts the same text), and each part's platform id once posted: a retry continues the
# thread after the last posted part instead of starting it again.
post_parts = sa.Table(
    "post_parts",
    metadata,
    sa.Column(
        "delivery_id",
        BigId,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),  # 1-based
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("remote_id", sa.Text, nullable=True),  # status id, message id, at:// URI
    sa.Column("remote_cid", sa.Text, nullable=True),  # Bluesky: needed to reply to the part
    sa.Column("posted_at", UtcDateTime, nullable=True),  # set once the platform confirmed it
    _created_at(),
)
