"""Initial schema: subscribers, lists, memberships, suppressions, occurrences, deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Written out in full rather than imported from `schema.py`: a migration must keep meaning
what it meant when it was written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
NOW = sa.func.now()


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else NOW,
    )


def _check(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}_valid")


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_table(
        "lists",
        sa.Column("name", sa.String(64), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("name", name="pk_lists"),
    )
    op.create_table(
        "memberships",
        sa.Column("subscriber_id", BIG_ID, nullable=False),
        sa.Column("list_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200), nullable=True),
        _when("subscribed_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("subscriber_id", "list_name", name="pk_memberships"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_memberships_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_name"],
            ["lists.name"],
            name="fk_memberships_list_name_lists",
            onupdate="CASCADE",
        ),
        _check(
            "memberships",
            "status",
            ("unconfirmed", "active", "unsubscribed", "bounced", "complained"),
        ),
    )
    op.create_index("ix_memberships_list_status", "memberships", ["list_name", "status"])
    op.create_table(
        "suppressions",
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("email_key", name="pk_suppressions"),
    )
    op.create_table(
        "occurrences",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("instant", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="planned"),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("recipients", sa.Integer, nullable=True),
        _when("fired_at", nullable=True),
        _when("fanned_out_at", nullable=True),
        _when("finished_at", nullable=True),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_occurrences"),
        _check("occurrences", "state", ("planned", "firing", "done", "missed", "cancelled")),
    )
    op.create_index("ix_occurrences_state_instant", "occurrences", ["state", "instant"])
    op.create_table(
        "deliveries",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("occurrence_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subscriber_id", BIG_ID, nullable=True),
        sa.Column("language", sa.String(35), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("provider_response", sa.Text, nullable=True),
        sa.Column("message_id", sa.Text, nullable=True),
        _when("created_at"),
        _when("updated_at"),
        _when("sent_at", nullable=True),
        _when("lease_until", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["occurrence_id"],
            ["occurrences.id"],
            name="fk_deliveries_occurrence_id_occurrences",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "occurrence_id",
            "channel",
            "recipient",
            name="uq_deliveries_occurrence_id_channel_recipient",
        ),
        _check("deliveries", "state", ("pending", "sending", "sent", "failed", "skipped")),
    )
    op.create_index("ix_deliveries_occurrence_state", "deliveries", ["occurrence_id", "state"])
    op.create_index(
        "ix_deliveries_occurrence_channel_id", "deliveries", ["occurrence_id", "channel", "id"]
    )

    op.create_table(
        "pauses",
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        _when("paused_at"),
        sa.PrimaryKeyConstraint("campaign", name="pk_pauses"),
    )
    op.create_table(
        "clock_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.DateTime(timezone=True), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("key", name="pk_clock_state"),
    )


def downgrade() -> None:
    op.drop_table("clock_state")
    op.drop_table("pauses")
    op.drop_table("deliveries")
    op.drop_table("occurrences")
    op.drop_table("suppressions")
    op.drop_table("memberships")
    op.drop_table("lists")
    op.drop_table("subscribers")
