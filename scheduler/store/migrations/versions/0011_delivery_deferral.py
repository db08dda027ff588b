"""Deferred deliveries: a message's own temporary failure (450, 452, a platform's 429 for one
request) waits in the ledger for its next attempt instead of using up a count of attempts.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_deliveries_next_attempt_at", "deliveries", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_next_attempt_at", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("first_failed_at")
