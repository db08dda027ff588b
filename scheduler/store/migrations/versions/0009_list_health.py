"""List health: processed bounce, complaint and unsubscribe reports (health_events), and
an index to find a delivery by the Message-ID a provider reports.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe", "ignored", "unparseable")


def upgrade() -> None:
    op.create_table(
        "health_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subscriber_id", BIG_ID, nullable=True),
        sa.Column("occurrence_id", sa.String(200), nullable=True),
        sa.Column("list_name", sa.String(500), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_health_events"),
        sa.UniqueConstraint("source", "event_key", name="uq_health_events_source_event_key"),
        sa.CheckConstraint(
            "kind IN ({})".format(", ".join(f"'{k}'" for k in KINDS)),
            name="ck_health_events_kind_valid",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_health_events_subscriber_id_subscribers",
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        "ix_health_events_subscriber_kind",
        "health_events",
        ["subscriber_id", "kind", "created_at"],
    )
    op.create_index("ix_health_events_created_at", "health_events", ["created_at"])
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_message_id", "deliveries")
    op.drop_table("health_events")
