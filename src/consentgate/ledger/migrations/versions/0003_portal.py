"""The portal's accounts (members and DPOs, argon2 password hashes) and API service tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False, comment="argon2id"),
        sa.Column("role", sa.String(16), nullable=False, comment="member or dpo"),
        sa.Column("member_id", sa.BigInteger, nullable=True),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
    )
    op.create_index("uq_accounts_member", "accounts", ["member_id"], unique=True)
    op.create_table(
        "service_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False, comment="space-separated"),
        sa.Column("created_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("service_tokens")
    op.drop_index("uq_accounts_member", table_name="accounts")
    op.drop_table("accounts")
