"""Going forward: when a model was trained, the debt overrides it was registered under, derived
snapshots, and every read of a snapshot by a training job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(
            sa.Column("trained_at", sa.BigInteger, nullable=True, comment="microseconds since epoch, UTC")
        )
        batch.add_column(sa.Column("watermark", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("override_reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("override_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("debt_members", sa.BigInteger, nullable=False, server_default="0"))
    # Models registered before this revision: the registration is the best record of their training.
    op.execute("UPDATE models SET trained_at = registered_at WHERE trained_at IS NULL")
    op.create_table(
        "debt_overrides",
        sa.Column("model_name", sa.String(200), sa.ForeignKey("models.name"), primary_key=True),
        sa.Column("snapshot_id", sa.String(200), sa.ForeignKey("snapshots.snapshot_id"), primary_key=True),
        sa.Column("member_id", sa.BigInteger, primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False, comment="why the member was in debt"),
        sa.Column("since", sa.BigInteger, nullable=True, comment="microseconds since epoch, UTC"),
        sa.Column("seq", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_debt_overrides_member", "debt_overrides", ["member_id"])
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("derived_from", sa.String(200), nullable=True))
    op.create_table(
        "training_reads",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("snapshot_id", sa.String(200), sa.ForeignKey("snapshots.snapshot_id"), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("read_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("covered_by_override", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("recorded_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
    )
    op.create_index("ix_training_reads_snapshot", "training_reads", ["snapshot_id"])


def downgrade() -> None:
    op.drop_index("ix_training_reads_snapshot", "training_reads")
    op.drop_table("training_reads")
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("derived_from")
    op.drop_index("ix_debt_overrides_member", "debt_overrides")
    op.drop_table("debt_overrides")
    with op.batch_alter_table("models") as batch:
        for column in ("debt_members", "override_by", "override_reason", "watermark", "trained_at"):
            batch.drop_column(column)
