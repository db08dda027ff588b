"""The open-deliveries index names the channel: finishing a channel is one index probe; the
Message-ID and next-attempt indexes leave out NULLs (a fan-out's rows have neither).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


_PARTIAL = {
    "message_id": "ix_deliveries_message_id",
    "next_attempt_at": "ix_deliveries_next_attempt_at",
}


def upgrade() -> None:
    op.drop_index("ix_deliveries_occurrence_state", table_name="deliveries")
    op.create_index(
        "ix_deliveries_occurrence_state", "deliveries", ["occurrence_id", "state", "channel"]
    )
    for column, name in _PARTIAL.items():
        op.drop_index(name, table_name="deliveries")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "deliveries", [column], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for column, name in _PARTIAL.items():
        op.drop_index(name, table_name="deliveries")
        op.create_index(name, "deliveries", [column])
    op.drop_index("ix_deliveries_occurrence_state", table_name="deliveries")
    op.create_index("ix_deliveries_occurrence_state", "deliveries", ["occurrence_id", "state"])
