"""The ledger's tables (SQLAlchemy Core). Changes to them go through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text, text

OBJECTION_KINDS_SQL = "kind IN ('objection_received', 'objection_decided', 'objection_extended')"

metadata = MetaData()

# SQLite makes only "INTEGER PRIMARY KEY" an alias of the rowid; a BIGINT key would need a second
# B-tree and slow every append.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("member_id", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key", String(128), nullable=False),
    Column("value", Text, nullable=False),
    Column("effective_at", BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
    Column("recorded_at", BigInteger, nullable=False, comment="microseconds since epoch, UTC"),
    Column("source", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("uq_events_idempotency_key", events.c.idempotency_key, unique=True)
Index("ix_events_member_seq", events.c.member_id, events.c.seq)
Index(
    "ix_events_objections",
    events.c.key,
    events.c.seq,
    sqlite_where=text(OBJECTION_KINDS_SQL),
    postgresql_where=text(OBJECTION_KINDS_SQL),
)

# The head of the chain: the last seq and hash, so an append reads one row under a lock and a
# removed tail is detected by ``audit verify``.
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# The lineage registry (migration 0002): which snapshots exist and which models used them.
snapshots = Table(
    "snapshots",
    metadata,
    Column("snapshot_id", String(200), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("purpose", String(128), nullable=False),
    Column("as_of", BigInteger, nullable=False),
    Column("watermark", BigInteger, nullable=False),
    Column("policy_ref", String(200), nullable=True),
    Column("engine", String(16), nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("members", BigInteger, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Column("derived_from", String(200), nullable=True),  # migration 0004: a refresh's source
)
models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("registered_at", BigInteger, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    # Migration 0004: when the training used the snapshots, the ledger head it was checked against,
    # and the override (reason, who, members) it was registered under despite a debt.
    Column("trained_at", BigInteger, nullable=True),
    Column("watermark", BigInteger, nullable=True),
    Column("override_reason", Text, nullable=True),
    Column("override_by", String(128), nullable=True),
    Column("debt_members", BigInteger, nullable=False, server_default="0"),
)
model_snapshots = Table(
    "model_snapshots",
    metadata,
    Column("model_name", String(200), ForeignKey("models.name"), primary_key=True),
    Column("snapshot_id", String(200), ForeignKey("snapshots.snapshot_id"), primary_key=True),
)
# Migration 0004: the members a model was trained on after their opt-out, under a recorded override.
debt_overrides = Table(
    "debt_overrides",
    metadata,
    Column("model_name", String(200), ForeignKey("models.name"), primary_key=True),
    Column("snapshot_id", String(200), ForeignKey("snapshots.snapshot_id"), primary_key=True),
    Column("member_id", BigInteger, primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("since", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=True),
)
Index("ix_debt_overrides_member", debt_overrides.c.member_id)
# Every read of a snapshot by a training job through ``consentgate.training.open_snapshot``.
training_reads = Table(
    "training_reads",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("snapshot_id", String(200), ForeignKey("snapshots.snapshot_id"), nullable=False),
    Column("purpose", String(128), nullable=False),
    Column("read_at", BigInteger, nullable=False),
    Column("watermark", BigInteger, nullable=False),
    Column("job", String(200), nullable=False),
    Column("covered_by_override", BigInteger, nullable=False, server_default="0"),
    Column("recorded_at", BigInteger, nullable=False),
)
Index("ix_training_reads_snapshot", training_reads.c.snapshot_id)

# Migration 0006: one lease per build in progress (renewed while it runs; only an expired lease's
# folder is cleaned) and the OpenLineage outbox (events recorded with the build's state change).
build_leases = Table(
    "build_leases",
    metadata,
    Column("lease_id", String(32), primary_key=True),
    Column("build_key", String(64), nullable=False, unique=True),
    Column("folder", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("acquired_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
lineage_outbox = Table(
    "lineage_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("target", Text, nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("event_type", String(16), nullable=False),
    Column("event", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
)
Index("ix_lineage_outbox_pending", lineage_outbox.c.delivered_at, lineage_outbox.c.id)

# The portal (migration 0003): login accounts and API service tokens. Only hashes are stored.
accounts = Table(
    "accounts",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("member_id", BigInteger, nullable=True),
    Column("language", String(8), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # Migration 0005: ending sessions and disabling accounts.
    Column("session_generation", BigInteger, nullable=False, server_default="0"),
    Column("disabled_at", BigInteger, nullable=True),
)
Index("uq_accounts_member", accounts.c.member_id, unique=True)
# Migration 0005: failed logins, shared by every worker and server on this database.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("client", String(64), nullable=False),
    Column("username", String(128), nullable=False),
    Column("at", BigInteger, nullable=False),
)
Index("ix_login_failures_key", login_failures.c.client, login_failures.c.username, login_failures.c.at)
service_tokens = Table(
    "service_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)
