"""The append-only event ledger and its chain head.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Written out (not imported) so the migration keeps meaning what it meant when it was written.
OBJECTION_KINDS_SQL = "kind IN ('objection_received', 'objection_decided', 'objection_extended')"
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_TRIGGERS = [
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'consentgate ledger is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'consentgate ledger is append-only: DELETE refused'); END""",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION consentgate_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'consentgate ledger is append-only: % refused on %', TG_OP, TG_TABLE_NAME;
       END $$""",
    """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
       FOR EACH ROW EXECUTE FUNCTION consentgate_refuse_change()""",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION consentgate_refuse_change()""",
]


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("member_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("effective_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
        sa.Column("recorded_at", sa.BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # A named index, not a column constraint: SQLite cannot drop the automatic index of a
    # constraint, and bulk imports drop and rebuild the indexes inside their transaction.
    op.create_index("uq_events_idempotency_key", "events", ["idempotency_key"], unique=True)
    op.create_index("ix_events_member_seq", "events", ["member_id", "seq"])
    op.create_index(
        "ix_events_objections",
        "events",
        ["key", "seq"],
        sqlite_where=sa.text(OBJECTION_KINDS_SQL),
        postgresql_where=sa.text(OBJECTION_KINDS_SQL),
    )
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    # A ledger is never downgraded in place: that would destroy evidence. Export it first.
    raise RuntimeError("the consentgate ledger cannot be downgraded; export it and start anew")
