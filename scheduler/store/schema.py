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
    FORGOTTEN = "forgotten"  # erased on request; the key is a keyed hash, not the address


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
    # "Was anyone erased?" is one probe, so an import hashes its addresses only when
    # someone was (migration 0014). The literal is SuppressionReason.FORGOTTEN.
    sa.Index(
        "ix_suppressions_erased",
        "email_key",
        sqlite_where=sa.text("reason = 'forgotten'"),
        postgresql_where=sa.text("reason = 'forgotten'"),
    ),
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
    # A message's own temporary failure (450 mailbox busy, a platform's 429 for one request):
    # when it first failed so (its retry window runs from there) and, while it waits in
    # `pending`, when it may be tried again (see delivery/deferral.py).
    sa.Column("first_failed_at", UtcDateTime, nullable=True),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    # A `deliver: local` step (scheduler/waves.py): not claimable before this instant, the
    # step's wall time in `zone`, the recipient's. NULL: due when the occurrence fires.
    sa.Column("due_at", UtcDateTime, nullable=True),
    sa.Column("zone", sa.String(64), nullable=True),
    sa.UniqueConstraint("occurrence_id", "channel", "recipient"),
    _check_in("state", DeliveryState),
    # "Is anything of this channel still open?" after every batch (channel_state.finish)
    # must be one probe: without `channel` here SQLite walks the channel's every row by the
    # id index (16 ms at 50,000 rows, a third of a second at 1,000,000, per batch).
    sa.Index("ix_deliveries_occurrence_state", "occurrence_id", "state", "channel"),
    # The clock's sweep asks for the earliest due wave nobody sends (ledger.open_waves).
    # Partial: only a local-time step's rows have a `due_at`; each other delivery would add
    # an entry at its fan-out, claim and record, never read (migration 0015).
    sa.Index(
        "ix_deliveries_occurrence_state_due",
        "occurrence_id",
        "state",
        "due_at",
        sqlite_where=sa.text("due_at IS NOT NULL"),
        postgresql_where=sa.text("due_at IS NOT NULL"),
    ),
    # Batches are id ranges of one occurrence and channel: claiming one must read ~250 rows,
    # not every row of the occurrence.
    sa.Index("ix_deliveries_occurrence_channel_id", "occurrence_id", "channel", "id"),
    # A provider's bounce or complaint names the Message-ID it saw (scheduler/listhealth).
    # Both partial: a fan-out adds its rows without either (NULL in each), so adding 100,000
    # deliveries writes two index entries fewer per row (migration 0013).
    sa.Index(
        "ix_deliveries_message_id",
        "message_id",
        sqlite_where=sa.text("message_id IS NOT NULL"),
        postgresql_where=sa.text("message_id IS NOT NULL"),
    ),
    # The clock looks for deferred deliveries whose next attempt has come at every sweep.
    sa.Index(
        "ix_deliveries_next_attempt_at",
        "next_attempt_at",
        sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
        postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
    ),
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


# Images a post delivery uploaded (Mastodon media, Bluesky blobs, ...), recorded the moment
# the platform answered, so a retry attaches the same upload instead of uploading again.
post_uploads = sa.Table(
    "post_uploads",
    metadata,
    sa.Column(
        "delivery_id",
        BigId,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.Text, primary_key=True),  # the image's file under statements/
    sa.Column("remote_id", sa.Text, nullable=False),  # media id, blob JSON, message id
    _created_at("uploaded_at"),
)


class Role(StrEnum):
    VIEWER = "viewer"  # sees the dashboard
    ORGANIZER = "organizer"  # pauses, cancels, sends, tests
    APPROVER = "approver"  # everything an organizer does, and approves content


# Organizer accounts of the dashboard. `chapter` is NULL for the alliance's own accounts;
# a chapter's account may act only on that chapter's campaigns (see accounts.scope).
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("email_key", sa.String(EMAIL_LENGTH), nullable=False, unique=True),
    sa.Column("email", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("chapter", sa.String(64), nullable=True),
    sa.Column("password_hash", sa.Text, nullable=True),  # argon2id; NULL until set
    # Bumped when the password changes: every session signed before it stops working.
    sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),
    *_timestamps(),
    _check_in("role", Role),
)

# One-time links that set a password. Only a hash of the token is stored.
password_links = sa.Table(
    "password_links",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "account_id", BigId, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
    _created_at(),
)

# Failed sign-ins, per address key and client: the lockout counts these.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("email_key", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("client", sa.String(64), nullable=False),
    _created_at("at"),
    sa.Index("ix_login_failures_email_key_at", "email_key", "at"),
)

# Who did what, when, from where: every action of the dashboard and the CLI.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _created_at("at"),
    sa.Column("actor", sa.String(EMAIL_LENGTH + 16), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(300), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("origin", sa.String(64), nullable=False),  # client address, or "cli"
    sa.Index("ix_audit_log_at", "at"),
)

# An approval binds to the fingerprint of everything the occurrence will send; `content` is
# the rendered text it approved, kept to show what changed since.
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("occurrence_id", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("approver", sa.String(EMAIL_LENGTH), nullable=False),
    _created_at("approved_at"),
    sa.UniqueConstraint("occurrence_id", "fingerprint", "approver"),
    sa.Index("ix_approvals_occurrence_id", "occurrence_id"),
)

# Occurrences held at their instant for want of an approval, until fired or missed.
holds = sa.Table(
    "holds",
    metadata,
    sa.Column("occurrence_id", sa.String(200), primary_key=True),
    sa.Column("campaign", sa.String(64), nullable=False),
    sa.Column("instant", UtcDateTime, nullable=False),
    _created_at("held_at"),
    sa.Column("released_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),  # fired | missed
)

# Alerts already sent, one row per cause ('held:may-day/2027/statement'): never twice.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("cause", sa.String(300), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    _created_at("sent_at"),
)


class HealthKind(StrEnum):
    """What one bounce, complaint or unsubscribe report said (see scheduler/listhealth/)."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    IGNORED = "ignored"  # read and understood, nothing to do (a delivery report, a test)
    UNPARSEABLE = "unparseable"  # kept in the mailbox for a person to read


# One row per report processed (a mailbox message, a provider webhook event, an unsubscribe
# made on the web), keyed by where it came from and its own id, so reading a mailbox again or
# a provider's redelivered webhook changes nothing. Holds no address: the subscriber id
# (cut when the person is forgotten), the occurrence and list it concerns, and a short
# code (a DSN status, a feedback type). Soft-bounce scoring and the per-occurrence and
# per-list counts of `status` and the dashboard read it.
health_events = sa.Table(
    "health_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),  # mailbox, ses, postmark, mailgun, ...
    sa.Column("event_key", sa.String(200), nullable=False),  # the source's id, or a hash
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column(
        "subscriber_id",
        BigId,
        sa.ForeignKey("subscribers.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("occurrence_id", sa.String(200), nullable=True),
    sa.Column("list_name", sa.String(500), nullable=True),  # "a,b": the lists concerned
    sa.Column("detail", sa.String(200), nullable=True),
    _created_at(),
    sa.UniqueConstraint("source", "event_key"),
    _check_in("kind", HealthKind),
    sa.Index("ix_health_events_subscriber_kind", "subscriber_id", "kind", "created_at"),
    sa.Index("ix_health_events_created_at", "created_at"),
)

# What the last look at the project found wrong, for `status` and the dashboard: a list's
# rows left out at its last sync (kind 'list'), a campaign blocked by its own problem (kind
# 'campaign'). Replaced at every sync and every (re)load; a row disappears once fixed.
problems = sa.Table(
    "problems",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("subject", sa.String(200), primary_key=True),  # list name or campaign id
    sa.Column("file", sa.Text, nullable=True),
    sa.Column("count", sa.Integer, nullable=False),
    # The first few, each {"line", "column", "message"}: enough to find them, never a dump.
    sa.Column("detail", Json, nullable=False, default=list),
    sa.Column("since", UtcDateTime, nullable=False, default=utcnow),
    _updated_at(),
)
