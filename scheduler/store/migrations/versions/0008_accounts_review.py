"""Accounts, one-time password links, login failures, the audit log, approvals, holds, alerts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("chapter", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        sa.CheckConstraint(
            "role IN ('viewer', 'organizer', 'approver')", name="ck_accounts_role_valid"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("email_key", name="uq_accounts_email_key"),
    )
    op.create_table(
        "password_links",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("token_hash", name="pk_password_links"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_password_links_account_id_accounts",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_email_key_at", "login_failures", ["email_key", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False, server_default=_now()),
        sa.Column("actor", sa.String(270), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "approvals",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("occurrence_id", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("approver", sa.String(254), nullable=False),
        sa.Column("approved_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint(
            "occurrence_id",
            "fingerprint",
            "approver",
            name="uq_approvals_occurrence_id_fingerprint_approver",
        ),
    )
    op.create_index("ix_approvals_occurrence_id", "approvals", ["occurrence_id"])
    op.create_table(
        "holds",
        sa.Column("occurrence_id", sa.String(200), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("instant", TS, nullable=False),
        sa.Column("held_at", TS, nullable=False, server_default=_now()),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("occurrence_id", name="pk_holds"),
    )
    op.create_table(
        "alerts",
        sa.Column("cause", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("sent_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("cause", name="pk_alerts"),
    )


def downgrade() -> None:
    for table in ("alerts", "holds", "approvals", "audit_log", "login_failures"):
        op.drop_table(table)
    op.drop_table("password_links")
    op.drop_table("accounts")
