"""An index of erasures: an import asks "was anyone erased?" in one probe, and only then
works out each row's keyed hash.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

_WHERE = sa.text("reason = 'forgotten'")


def upgrade() -> None:
    op.create_index(
        "ix_suppressions_erased",
        "suppressions",
        ["email_key"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_suppressions_erased", table_name="suppressions")
