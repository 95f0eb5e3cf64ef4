"""Sessions that can be ended: a per-account session generation (logout, a new password or
disabling the account ends every copy of every session of that account) and disabled accounts;
failed logins in the database, so the login rate limit holds across workers and servers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column(
                "session_generation",
                sa.BigInteger,
                nullable=False,
                server_default="0",
                comment="a session cookie is valid only with the generation it was issued under",
            )
        )
        batch.add_column(
            sa.Column("disabled_at", sa.BigInteger, nullable=True, comment="microseconds since epoch, UTC")
        )
    op.create_table(
        "login_failures",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["client", "username", "at"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_key", "login_failures")
    op.drop_table("login_failures")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("session_generation")
