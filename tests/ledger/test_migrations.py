"""Schema migrations: a ledger made by an older consentgate is refused until `init` migrates it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command

from consentgate.exceptions import LedgerNotInitialised
from consentgate.ledger.database import _alembic_config, create_ledger_engine, head_revision
from consentgate.ledger.store import Ledger
from consentgate.snapshots.registry import Registry
from tests.conftest import FixedClock, register


def test_a_0001_ledger_keeps_its_events_when_migrated_to_the_lineage_registry(tmp_path: Path) -> None:
    """0001 → head adds the snapshot/model tables; events and the chain are untouched."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_ledger_engine(url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
    engine.dispose()
    old = Ledger(create_ledger_engine(url), clock=FixedClock())
    register(old, 7, "DE")
    head = old.head()
    old.close()

    with pytest.raises(
        LedgerNotInitialised, match=f"at schema 0001, this consentgate needs {head_revision()}"
    ):
        Ledger.open(url)
    migrated = Ledger.open(url, initialise=True)
    try:
        assert migrated.head() == head
        assert migrated.verify().ok
        assert Registry(migrated).snapshots() == []
    finally:
        migrated.close()
