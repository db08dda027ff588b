"""Delivery retries: how often `scheduler retry` sent a failed delivery again, when, and why
it had failed before.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("retries", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retried_error", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("retried_error")
        batch.drop_column("retried_at")
        batch.drop_column("retries")
