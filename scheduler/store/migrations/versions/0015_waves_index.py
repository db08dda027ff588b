"""The waves index leaves out deliveries without a `due_at`: only a `deliver: local` step's
rows have one, and each other delivery wrote an entry there at its fan-out, its claim and
its record (three of a message's index writes, none ever read).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

_NAME = "ix_deliveries_occurrence_state_due"
_COLUMNS = ["occurrence_id", "state", "due_at"]
_WHERE = sa.text("due_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index(_NAME, table_name="deliveries")
    op.create_index(_NAME, "deliveries", _COLUMNS, sqlite_where=_WHERE, postgresql_where=_WHERE)


def downgrade() -> None:
    op.drop_index(_NAME, table_name="deliveries")
    op.create_index(_NAME, "deliveries", _COLUMNS)
