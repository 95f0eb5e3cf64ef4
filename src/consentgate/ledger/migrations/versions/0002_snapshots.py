"""The lineage registry: snapshots, models and which snapshots each model was trained on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("snapshot_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("as_of", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("policy_ref", sa.String(200), nullable=True),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("members", sa.BigInteger, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("registered_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "model_snapshots",
        sa.Column("model_name", sa.String(200), sa.ForeignKey("models.name"), primary_key=True),
        sa.Column("snapshot_id", sa.String(200), sa.ForeignKey("snapshots.snapshot_id"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("model_snapshots")
    op.drop_table("models")
    op.drop_table("snapshots")
