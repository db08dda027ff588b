"""The open-deliveries index names the channel: finishing a channel is one index probe.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_occurrence_state", table_name="deliveries")
    op.create_index(
        "ix_deliveries_occurrence_state", "deliveries", ["occurrence_id", "state", "channel"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_occurrence_state", table_name="deliveries")
    op.create_index("ix_deliveries_occurrence_state", "deliveries", ["occurrence_id", "state"])
