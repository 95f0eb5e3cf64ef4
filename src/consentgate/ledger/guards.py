"""The append-only guard: the triggers that make the database refuse UPDATE, DELETE (and TRUNCATE).

Whoever edits events in place has to lift the guard first, so a missing or disabled trigger is the
cheapest sign that the ledger may have been tampered with. Readers that must not use tampered events
(the event mirror, and so every snapshot build) refuse to read while the guard is down, however
consistent the chain still looks; ``consentgate audit guard`` reports it and, after a full ``audit
verify``, restores it. The statements are those of migration 0001 (which keeps its own copy, so that
the migration goes on meaning what it meant).
"""

from __future__ import annotations

from sqlalchemy import text

from consentgate.exceptions import GuardMissing
from consentgate.ledger.store import Ledger

TRIGGERS: dict[str, dict[str, list[str]]] = {
    "sqlite": {
        "events_no_update": [
            """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
               BEGIN SELECT RAISE(ABORT, 'consentgate ledger is append-only: UPDATE refused'); END"""
        ],
        "events_no_delete": [
            """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
               BEGIN SELECT RAISE(ABORT, 'consentgate ledger is append-only: DELETE refused'); END"""
        ],
    },
    "postgresql": {
        "events_append_only": [
            "DROP TRIGGER IF EXISTS events_append_only ON events",
            """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
               FOR EACH ROW EXECUTE FUNCTION consentgate_refuse_change()""",
        ],
        "events_no_truncate": [
            "DROP TRIGGER IF EXISTS events_no_truncate ON events",
            """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
               FOR EACH STATEMENT EXECUTE FUNCTION consentgate_refuse_change()""",
        ],
    },
}
_REFUSE = """CREATE OR REPLACE FUNCTION consentgate_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'consentgate ledger is append-only: % refused on %', TG_OP, TG_TABLE_NAME;
       END $$"""


def missing_guards(ledger: Ledger) -> list[str]:
    """The append-only triggers of ``ledger`` that are missing or disabled (empty: the guard is up)."""
    wanted = TRIGGERS.get(ledger.dialect)
    if wanted is None:
        return []
    with ledger.engine.connect() as conn:
        if ledger.dialect == "sqlite":
            rows = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
            )
        else:
            rows = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass"
                    " AND NOT tgisinternal AND tgenabled <> 'D'"
                )
            )
        present = {str(r[0]) for r in rows}
    return sorted(set(wanted) - present)


def require_guards(ledger: Ledger) -> None:
    """Raise ``GuardMissing`` when the append-only guard is down."""
    missing = missing_guards(ledger)
    if missing:
        raise GuardMissing(
            f"the ledger's append-only guard is down (trigger {', '.join(missing)} missing or disabled):"
            " its events may have been edited in place, so nothing is read from it; check the chain"
            " with `consentgate audit verify` (with your checkpoints), then restore the guard with"
            " `consentgate audit guard --restore`"
        )


def restore_guards(ledger: Ledger) -> list[str]:
    """Recreate the missing triggers; returns their names."""
    missing = missing_guards(ledger)
    if not missing:
        return []
    with ledger.engine.begin() as conn:
        if ledger.dialect == "postgresql":
            conn.execute(text(_REFUSE))
        for name in missing:
            for statement in TRIGGERS[ledger.dialect][name]:
                conn.execute(text(statement))
    return missing
