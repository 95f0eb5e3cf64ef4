"""Alembic environment: migrations run on the connection consentgate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from consentgate.ledger.schema import metadata

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
