"""Post uploads: each image a post delivery uploaded to its platform, and the platform's id.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "post_uploads",
        sa.Column("delivery_id", BIG_ID, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("remote_id", sa.Text, nullable=False),
        sa.Column(
            "uploaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("delivery_id", "name", name="pk_post_uploads"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_post_uploads_delivery_id_deliveries",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("post_uploads")
