"""Opening the ledger database: SQLite (embedded default) or PostgreSQL, and its migrations."""

from __future__ import annotations

import sqlite3
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from consentgate.exceptions import InputError, LedgerError, LedgerNotInitialised, one_line
from consentgate.storage import database_unavailable

DEFAULT_URL = "sqlite:///consentgate.db"
MIGRATIONS = Path(__file__).parent / "migrations"
WRITE = {"consentgate_write": True}
"""Execution options for a connection that appends: on SQLite it begins with BEGIN IMMEDIATE."""


SQLITE_MMAP_SIZE = 4 << 30
"""Bytes of the ledger file SQLite may memory-map: reads of hot pages without system calls."""


def normalise_url(url: str) -> str:
    """Accept a plain file path for SQLite and plain ``postgresql://`` URLs (psycopg 3 driver)."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # We issue BEGIN ourselves (see _sqlite_begin); the driver's implicit BEGIN would start a
    # deferred transaction after our read of the chain head, letting two writers race.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # SQLite fsyncs the WAL on commit only with synchronous=FULL; an acknowledged objection must
    # survive a power cut.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Reads through the OS page cache without copying into SQLite's own cache: decide()'s p99
    # halves on a large ledger (bench/RESULTS.md).
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_SIZE}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = "IMMEDIATE" if connection.get_execution_options().get("consentgate_write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite write waits for another process's lock before the ledger answers "locked"
(exit 69 on the command line, 503 on the web). Read when a connection is opened."""

POOL = {"pool_size": 16, "max_overflow": 16}
"""Connections kept per engine. The portal serves from a pool of 40 threads; with SQLAlchemy's
default of 5 kept connections, every further one was opened and closed per request (a tenth of an
API write's cost in bench/portal.py)."""


def create_ledger_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the ledger at ``url`` with the settings durability needs."""
    kwargs = {**POOL, **kwargs}
    normalised = normalise_url(url)
    try:
        parsed = make_url(normalised)
    except ArgumentError:
        raise InputError(f"--db: {url!r} is not a database URL or SQLite file path") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            file = Path(database).expanduser().resolve()
            if file.is_dir():
                raise InputError(f"--db: {file} is a folder; expected a SQLite file or a database URL")
            parent = file.parent
            if not parent.is_dir():
                raise InputError(f"--db: folder {parent} does not exist")
        engine = create_engine(normalised, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(normalised, pool_pre_ping=True, **kwargs)
    raise InputError(f"--db: unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _refuse(exc: OperationalError) -> NoReturn:
    """A server that is down or busy stays what it is (exit 69 on the command line, 503 on the web);
    any other refusal (a wrong password, a database that does not exist) is one error saying so."""
    if database_unavailable(exc) is not None:
        raise exc
    raise LedgerError(f"cannot reach the ledger database: {one_line(exc.orig)}") from None


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest migration; returns the revision now in place."""
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "head")
    except OperationalError as exc:
        _refuse(exc)
    return head_revision()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        _refuse(exc)


def require_schema(engine: Engine) -> None:
    """Refuse to work on a database without the current schema, with the command that fixes it."""
    revision = current_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    if revision is None:
        raise LedgerNotInitialised(
            f"the ledger at {where} is not initialised: run `consentgate init --db {where}`"
        )
    if revision != head_revision():
        raise LedgerNotInitialised(
            f"the ledger at {where} is at schema {revision}, this consentgate needs "
            f"{head_revision()}: run `consentgate init --db {where}` to migrate"
        )
