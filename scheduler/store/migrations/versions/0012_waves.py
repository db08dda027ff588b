"""Waves: a delivery of a `deliver: local` step is due at its recipient's local time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("zone", sa.String(64), nullable=True))
    op.create_index(
        "ix_deliveries_occurrence_state_due", "deliveries", ["occurrence_id", "state", "due_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_occurrence_state_due", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("zone")
        batch.drop_column("due_at")
