"""Occurrence channels: completion per (occurrence, channel), so a hand send of one channel
does not end the day for the step's other channels.

Existing occurrences get a row for each channel they have deliveries on, in the
occurrence's state, dated from those deliveries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

STATES = ("planned", "firing", "done", "missed", "cancelled")


def upgrade() -> None:
    now = sa.func.now()
    op.create_table(
        "occurrence_channels",
        sa.Column("occurrence_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="planned"),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fanned_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("occurrence_id", "channel", name="pk_occurrence_channels"),
        sa.ForeignKeyConstraint(
            ["occurrence_id"],
            ["occurrences.id"],
            name="fk_occurrence_channels_occurrence_id_occurrences",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")",
            name="ck_occurrence_channels_state_valid",
        ),
    )
    # Channels that already have deliveries take their occurrence's state and times.
    op.execute(
        """
        INSERT INTO occurrence_channels (occurrence_id, channel, state, late, note, fired_at,
            fanned_out_at, first_sent_at, finished_at, created_at, updated_at)
        SELECT o.id, d.channel, o.state, o.late, o.note, o.fired_at, o.fanned_out_at,
            MIN(d.sent_at), o.finished_at, o.created_at, o.updated_at
        FROM occurrences o JOIN deliveries d ON d.occurrence_id = o.id
        GROUP BY o.id, d.channel, o.state, o.late, o.note, o.fired_at, o.fanned_out_at,
            o.finished_at, o.created_at, o.updated_at
        """
    )


def downgrade() -> None:
    op.drop_table("occurrence_channels")
