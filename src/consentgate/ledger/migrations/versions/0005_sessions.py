"""Sessions that can be ended: a per-account session generation (logout, a new password or
disabling the account ends every copy of every session of that account) and disabled accounts.

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


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("session_generation")
