"""Builds that run where the data lives: a lease per build in progress (instead of a PID that only
means something on one host) and an outbox for OpenLineage events (recorded with the build's state
change, delivered after it, so an unreachable lineage server never fails a build).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_MICROS = "microseconds since epoch, UTC"


def upgrade() -> None:
    op.create_table(
        "build_leases",
        sa.Column("lease_id", sa.String(32), primary_key=True),
        sa.Column(
            "build_key",
            sa.String(64),
            nullable=False,
            unique=True,
            comment="sha256 of OUT, kind, purpose, as-of and watermark: one build of them at a time",
        ),
        sa.Column("folder", sa.Text, nullable=False, comment="the build's unpublished folder"),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("host", sa.String(255), nullable=False, comment="for humans, never for decisions"),
        sa.Column("pid", sa.BigInteger, nullable=False, comment="for humans, never for decisions"),
        sa.Column("acquired_at", sa.BigInteger, nullable=False, comment=_MICROS),
        sa.Column("expires_at", sa.BigInteger, nullable=False, comment=_MICROS),
    )
    op.create_table(
        "lineage_outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("target", sa.Text, nullable=False, comment="the endpoint URL or the file log's path"),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("event", sa.Text, nullable=False, comment="the OpenLineage run event, JSON"),
        sa.Column("created_at", sa.BigInteger, nullable=False, comment=_MICROS),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.BigInteger, nullable=True, comment=_MICROS),
    )
    op.create_index("ix_lineage_outbox_pending", "lineage_outbox", ["delivered_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_lineage_outbox_pending", "lineage_outbox")
    op.drop_table("lineage_outbox")
    op.drop_table("build_leases")
