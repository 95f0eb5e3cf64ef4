"""The consent ledger: append-only, hash-chained, idempotent events, read as of (T, watermark)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, select
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError

from consentgate.exceptions import (
    AnchorMismatch,
    ChainBroken,
    IdempotencyConflict,
    InputError,
    LedgerError,
    LedgerNotInitialised,
    one_line,
)
from consentgate.ledger.anchors import Anchor
from consentgate.ledger.database import (
    POOL,
    SQLITE_MMAP_SIZE,
    WRITE,
    create_ledger_engine,
    migrate,
    require_schema,
    sqlite_path,
)
from consentgate.ledger.events import (
    GENESIS_HASH,
    MEMBER_ORIGINATED,
    EventBatch,
    EventDraft,
    LedgerEvent,
    digest_of,
    event_digest,
)
from consentgate.ledger.schema import OBJECTION_KINDS_SQL, ledger_head
from consentgate.timeutil import (
    BOUNDS_TEXT,
    MAX_MICROS,
    MIN_MICROS,
    format_instant,
    from_micros,
    in_bounds,
    now_utc,
    to_micros,
)

COLUMNS = (
    "seq",
    "member_id",
    "kind",
    "key",
    "value",
    "effective_at",
    "recorded_at",
    "source",
    "actor",
    "idempotency_key",
    "prev_hash",
    "hash",
)
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM events"
ProgressFn = Callable[[int], None]
MAX_SEQ = 2**63 - 1  # the largest seq either database can hold

SQLITE_BULK_CACHE = -1_048_576  # KiB: 1 GiB of page cache while a bulk append runs
SQLITE_DEFAULT_CACHE = -2_000  # KiB: SQLite's default
REBUILD_MIN_ROWS = 50_000
REBUILD_FRACTION = 0.2
"""Rebuild instead of maintain the indexes when a batch adds at least this share of the table."""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``audit verify``: ok, or the first bad seq and what is wrong with it."""

    ok: bool
    events_checked: int
    head_seq: int
    bad_seq: int | None = None
    problem: str | None = None
    anchors_agreed: int = 0
    """Anchors compared with the chain and found to agree (before the problem, if any)."""
    anchor: Anchor | None = None
    """The anchor that disagrees, when that is the problem."""
    ledger_hash: str | None = None
    """The chain's hash at ``anchor.seq`` (None: the ledger has no such seq)."""

    def error(self) -> ChainBroken:
        """The exception that states this report's problem (for a report that is not ok)."""
        assert not self.ok and self.bad_seq is not None and self.problem is not None
        if self.anchor is not None:
            return _mismatch(self.anchor, self.ledger_hash, self.head_seq)
        return ChainBroken(self.bad_seq, f"{self.problem} ({self.events_checked} events before it verified)")


class Ledger:
    """One consent ledger in one database. Thread-safe as far as the SQLAlchemy engine is."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = now_utc) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        self._param = "?" if self.dialect == "sqlite" else "%s"
        # The hot read path of decide(): on PostgreSQL a pool without pre-ping and in autocommit
        # saves three of four round trips per call (ping, BEGIN, ROLLBACK on return).
        self._reader = (
            create_engine(engine.url, pool_pre_ping=False, isolation_level="AUTOCOMMIT", **POOL)
            if self.dialect == "postgresql"
            else engine
        )

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], datetime] = now_utc, initialise: bool = False) -> Ledger:
        """Open the ledger at ``url``; with ``initialise`` create or migrate its schema first."""
        path = sqlite_path(url)
        if not initialise and path is not None and not path.exists():
            # Opening would create an empty file at a mistyped path; say what is wrong instead.
            raise LedgerNotInitialised(
                f"no ledger at {path}: run `consentgate init --db {url}` to create one"
            )
        engine = create_ledger_engine(url)
        try:
            if initialise:
                migrate(engine)
            else:
                require_schema(engine)
        except DatabaseError as exc:
            engine.dispose()
            if path is not None and "not a database" in str(exc.orig):
                raise InputError(
                    f"--db: {path} is not a SQLite database (expected a consentgate ledger)"
                ) from None
            raise
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock)

    def close(self) -> None:
        if self._reader is not self.engine:
            self._reader.dispose()
        self.engine.dispose()

    # -- writing -------------------------------------------------------------------------------

    def append(self, drafts: Sequence[EventDraft]) -> list[LedgerEvent]:
        """Append events atomically, in order; returns them as stored.

        A draft whose idempotency key is already in the ledger with the same content returns the
        stored event and appends nothing; the same key with other content is a conflict.
        """
        if not drafts:
            return []
        recorded_at = to_micros(self.clock())
        self._check_drafts(drafts, recorded_at)
        with self._write() as conn:
            existing = self._existing(conn, [d.idempotency_key for d in drafts])
            head_seq, head_hash = self._lock_head(conn)
            out: list[LedgerEvent] = []
            rows: list[tuple[Any, ...]] = []
            for draft in drafts:
                found = existing.get(draft.idempotency_key)
                if found is not None:
                    if not draft.same_content(found):
                        raise IdempotencyConflict(
                            f"idempotency key {draft.idempotency_key!r} was used for another event "
                            f"(seq {found.seq})"
                        )
                    out.append(found)
                    continue
                head_seq += 1
                event = _seal(draft, head_seq, recorded_at, head_hash)
                head_hash = event.hash
                rows.append(_row(event))
                out.append(event)
                existing[draft.idempotency_key] = event
            self._insert(conn, rows)
            self._set_head(conn, head_seq, head_hash)
        return out

    def append_bulk(
        self,
        events: EventBatch | Iterable[EventDraft],
        *,
        progress: ProgressFn | None = None,
        chunk: int = 50_000,
    ) -> tuple[int, int]:
        """Append many events in one transaction, fast; returns (appended, already present).

        Used by imports. It first tries the fast path (no per-key look-ups); if the database
        reports a duplicate idempotency key, it rolls back and redoes the work the careful way, so
        re-importing a file skips what is already there and conflicting rows are refused.
        """
        batch = events if isinstance(events, EventBatch) else EventBatch.of(events)
        recorded_at = to_micros(self.clock())
        self._check_batch(batch, recorded_at)
        # A re-import shows in its first or last key; then the fast path would only fail late.
        probe = [batch.idempotency_key[0], batch.idempotency_key[-1]] if len(batch) else []
        if not self._existing_many(probe):
            try:
                return self._bulk(batch, recorded_at, skip=set(), progress=progress, chunk=chunk)
            except IntegrityError:
                pass
        existing = self._existing_many(batch.idempotency_key)
        skip: set[int] = set()
        for index, key in enumerate(batch.idempotency_key):
            found = existing.get(key)
            if found is None:
                continue
            if not batch.same_content(index, found):
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was used for another event (seq {found.seq}); "
                    "nothing was imported",
                    index=index,
                )
            skip.add(index)
        return self._bulk(batch, recorded_at, skip=skip, progress=progress, chunk=chunk)

    def _bulk(
        self,
        batch: EventBatch,
        recorded_at: int,
        *,
        skip: set[int],
        progress: ProgressFn | None,
        chunk: int,
    ) -> tuple[int, int]:
        appended = 0
        sha256 = hashlib.sha256
        with self._write() as conn:
            seq, prev = self._lock_head(conn)
            rebuild = self._drop_indexes_for(conn, len(batch) - len(skip), seq)
            rows: list[tuple[Any, ...]] = []
            if skip:
                batch = _without(batch, skip)
            # The digest text of events.event_digest, built from parts that repeat across a batch
            # (kind and key; source, actor and the recording time) so each row formats only what
            # is its own. This loop runs once per imported event; the chain itself is sequential.
            heads: dict[tuple[str, str], str] = {}
            tails: dict[tuple[str, str], str] = {}
            columns = zip(
                batch.member_id,
                batch.kind,
                batch.key,
                batch.value,
                batch.effective_at,
                batch.source,
                batch.actor,
                batch.idempotency_key,
                strict=True,
            )
            for member, kind, key, value, effective, source, actor, idem in columns:
                seq += 1
                head = heads.get((kind, key))
                if head is None:
                    head = heads[(kind, key)] = f"{len(kind)}:{kind}|{len(key)}:{key}|"
                tail = tails.get((source, actor))
                if tail is None:
                    tail = tails[(source, actor)] = (
                        f"|{recorded_at}|{len(source)}:{source}|{len(actor)}:{actor}|"
                    )
                digest = sha256(
                    f"{seq}|{member}|{head}{len(value)}:{value}|{effective}{tail}{len(idem)}:{idem}|{prev}".encode()
                ).hexdigest()
                rows.append(
                    (seq, member, kind, key, value, effective, recorded_at, source, actor, idem, prev, digest)
                )
                prev = digest
                if len(rows) >= chunk:
                    self._insert(conn, rows)
                    appended += len(rows)
                    rows = []
                    if progress:
                        progress(appended)
            self._insert(conn, rows)
            appended += len(rows)
            for ddl in rebuild:
                # A duplicate idempotency key surfaces here as an IntegrityError, as it would have
                # on insert; the transaction (with the dropped indexes) is rolled back whole.
                conn.exec_driver_sql(ddl)
            if self.dialect == "sqlite":
                conn.exec_driver_sql(f"PRAGMA cache_size={SQLITE_DEFAULT_CACHE}")
            self._set_head(conn, seq, prev)
        if progress:
            progress(appended)
        return appended, len(skip)

    def _drop_indexes_for(self, conn: Connection, incoming: int, existing: int) -> list[str]:
        """For a large SQLite batch, drop the secondary indexes and return the DDL to rebuild them.

        Building an index from sorted data is several times cheaper than as many random B-tree
        inserts. It all happens in the write transaction: readers keep seeing the last committed
        snapshot (WAL), with its indexes, and a failed import leaves the indexes as they were.
        """
        if self.dialect != "sqlite":
            return []
        # Bulk work wants a big page cache; restored to the default before the commit.
        conn.exec_driver_sql(f"PRAGMA cache_size={SQLITE_BULK_CACHE}")
        if incoming < REBUILD_MIN_ROWS or incoming < REBUILD_FRACTION * existing:
            return []
        indexes = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
            # Partial indexes (objections) gain no rows from imports; rebuilding one is a full scan.
            " AND sql NOT LIKE '% WHERE %'"
        ).all()
        for name, _ in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        return [str(sql) for _, sql in indexes]

    def _check_batch(self, batch: EventBatch, recorded_at: int) -> None:
        _check_append(batch.idempotency_key, zip(batch.source, batch.effective_at, strict=True), recorded_at)

    def _check_drafts(self, drafts: Sequence[EventDraft], recorded_at: int) -> None:
        _check_append(
            [d.idempotency_key for d in drafts],
            ((str(d.source), d.effective_at) for d in drafts),
            recorded_at,
        )

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self.engine)

    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        query = select(ledger_head.c.seq, ledger_head.c.hash).where(ledger_head.c.id == 1)
        if self.dialect == "postgresql":
            # Row lock on the head serialises appenders; readers are not blocked.
            query = query.with_for_update()
        row = conn.execute(query).one()
        return int(row.seq), str(row.hash)

    def _set_head(self, conn: Connection, seq: int, digest: str) -> None:
        conn.execute(ledger_head.update().where(ledger_head.c.id == 1).values(seq=seq, hash=digest))

    def _insert(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        raw = conn.connection.driver_connection
        assert raw is not None
        if self.dialect == "postgresql":
            # COPY is PostgreSQL's bulk path: one round trip instead of one per row.
            try:
                with (
                    raw.cursor() as cursor,
                    cursor.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
            except psycopg.errors.UniqueViolation as exc:
                raise IntegrityError("COPY events", None, exc) from exc
            return
        placeholders = ", ".join("?" for _ in COLUMNS)
        cursor = raw.cursor()
        try:
            cursor.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows)
        except Exception as exc:
            # Map the driver's error to SQLAlchemy's so callers handle one type on both backends.
            if "UNIQUE" in str(exc):
                raise IntegrityError("INSERT INTO events", None, exc) from exc
            raise
        finally:
            cursor.close()

    def _existing(self, conn: Connection, keys: Sequence[str]) -> dict[str, LedgerEvent]:
        out: dict[str, LedgerEvent] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join(self._param for _ in part)
            for row in self._raw_query(conn, f"{_SELECT} WHERE idempotency_key IN ({marks})", part):
                event = LedgerEvent(*row)
                out[event.idempotency_key] = event
        return out

    def _existing_many(self, keys: Sequence[str]) -> dict[str, LedgerEvent]:
        with self.engine.connect() as conn:
            return self._existing(conn, keys)

    # -- reading -------------------------------------------------------------------------------

    def _raw_query(self, conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(sql, tuple(params))
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest event: the current watermark."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ledger_head.c.seq, ledger_head.c.hash)).one()
            return int(row.seq), str(row.hash)

    def watermark(self) -> int:
        return self.head()[0]

    def out_of_range(self, limit: int = 20) -> list[tuple[int, str, int]]:
        """(seq, column, micros) of stored instants outside the bounds (written before versions that
        enforce them). Reading code copes with them; ``audit verify`` names them as warnings."""
        found: list[tuple[int, str, int]] = []
        with self.engine.connect() as conn:
            for column in ("effective_at", "recorded_at"):
                rows = conn.exec_driver_sql(
                    f"SELECT seq, {column} FROM events"
                    f" WHERE {column} < {MIN_MICROS} OR {column} >= {MAX_MICROS}"
                    f" ORDER BY seq LIMIT {int(limit)}"
                ).all()
                found += [(int(seq), column, int(value)) for seq, value in rows]
        return sorted(found)[:limit]

    def member_events(
        self, member_id: int, *, at: int | None = None, watermark: int | None = None
    ) -> list[LedgerEvent]:
        """A member's events with ``effective_at <= at`` and ``seq <= watermark``, by seq.

        This is the hot path of ``decide()``: one indexed query through the driver, no ORM.
        """
        sql = f"{_SELECT} WHERE member_id = {self._param}"
        params: list[Any] = [member_id]
        if watermark is not None:
            sql += f" AND seq <= {self._param}"
            params.append(watermark)
        if at is not None:
            sql += f" AND effective_at <= {self._param}"
            params.append(at)
        sql += " ORDER BY seq"
        # A pooled DB-API connection without SQLAlchemy's Connection wrapper: half the cost of a
        # decision is otherwise spent setting that wrapper up and tearing it down. Without that
        # wrapper nobody notices a connection that died with its server (a PostgreSQL restart):
        # such a read is retried once on a new connection, after the pool is renewed.
        for attempt in (1, 2):
            raw = self._reader.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(sql, tuple(params))
                    return [LedgerEvent(*row) for row in cursor.fetchall()]
                finally:
                    with contextlib.suppress(Exception):
                        cursor.close()
            except self._reader.dialect.loaded_dbapi.Error as exc:
                if attempt == 2 or not self._reader.dialect.is_disconnect(exc, raw.dbapi_connection, None):
                    raise
                raw.invalidate(exc)
                self._reader.dispose()
            finally:
                raw.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def members_events(
        self, member_ids: Iterable[int], *, at: int, watermark: int | None = None
    ) -> dict[int, list[LedgerEvent]]:
        """Many members' events with ``effective_at <= at`` (and ``seq <= watermark``), each by seq.

        The bulk form of :meth:`member_events`: one indexed query per 500 members instead of one per
        member. Every requested member has an entry, empty when the ledger holds nothing of it.
        """
        wanted = sorted(set(member_ids))
        out: dict[int, list[LedgerEvent]] = {member_id: [] for member_id in wanted}
        limit = "" if watermark is None else f" AND seq <= {self._param}"
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ", ".join(self._param for _ in part)
                sql = (
                    f"{_SELECT} WHERE member_id IN ({marks}) AND effective_at <= {self._param}{limit}"
                    " ORDER BY member_id, seq"
                )
                params: list[Any] = [*part, at] + ([] if watermark is None else [watermark])
                for row in self._raw_query(conn, sql, params):
                    out[row[1]].append(LedgerEvent(*row))
        return out

    def events_of_members(self, member_ids: Sequence[int], *, kind: str, at: int) -> list[LedgerEvent]:
        """Events of one kind for many members, effective by ``at``: a few chunked queries, not one each."""
        out: list[LedgerEvent] = []
        with self.engine.connect() as conn:
            for start in range(0, len(member_ids), 500):
                part = list(member_ids[start : start + 500])
                marks = ", ".join(self._param for _ in part)
                sql = (
                    f"{_SELECT} WHERE member_id IN ({marks}) AND kind = {self._param}"
                    f" AND effective_at <= {self._param} ORDER BY seq"
                )
                out.extend(LedgerEvent(*row) for row in self._raw_query(conn, sql, [*part, kind, at]))
        return out

    def objection_events(self, reference: str | None = None) -> list[LedgerEvent]:
        """Every objection event (optionally of one reference), by seq."""
        sql = f"{_SELECT} WHERE {OBJECTION_KINDS_SQL}"
        params: list[Any] = []
        if reference is not None:
            sql += f" AND key = {self._param}"
            params.append(reference)
        # Sorted here, not by the database: with ORDER BY seq SQLite's planner prefers a full scan
        # in rowid order over the partial objection index (seen: 0.6 s instead of ms on 1.7M events).
        with self.engine.connect() as conn:
            rows = self._raw_query(conn, sql, params)
        return sorted((LedgerEvent(*row) for row in rows), key=lambda e: e.seq)

    def iter_events(self, *, watermark: int | None = None, batch: int = 20_000) -> Iterator[LedgerEvent]:
        """All events in seq order, streamed in batches (keyset pagination)."""
        last = 0
        limit = watermark if watermark is not None else None
        with self.engine.connect() as conn:
            while True:
                sql = f"{_SELECT} WHERE seq > {self._param}"
                params: list[Any] = [last]
                if limit is not None:
                    sql += f" AND seq <= {self._param}"
                    params.append(limit)
                sql += f" ORDER BY seq LIMIT {int(batch)}"
                rows = self._raw_query(conn, sql, params)
                if not rows:
                    return
                for row in rows:
                    yield LedgerEvent(*row)
                last = rows[-1][0]

    def event_rows(
        self, columns: Sequence[str], *, after: int, upto: int, batch: int = 100_000
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """Chunks of raw rows (``columns``) with ``after < seq <= upto``, in seq order.

        For exports: no event objects, one server-side cursor, so memory stays bounded.
        """
        for name in columns:
            if name not in COLUMNS:
                raise ValueError(f"unknown event column {name!r}")
        sql = (
            f"SELECT {', '.join(columns)} FROM events WHERE seq > {self._param} AND seq <= {self._param}"
            " ORDER BY seq"
        )
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            # A named cursor streams from PostgreSQL instead of materialising the result first.
            cursor = raw.cursor(name="consentgate_rows") if self.dialect == "postgresql" else raw.cursor()
            if self.dialect == "sqlite":
                # A full scan through the memory map would leave the whole file resident in this
                # process (peak RSS = database size); read it through SQLite's small page cache.
                cursor.execute("PRAGMA mmap_size=0")
            try:
                cursor.execute(sql, (after, upto))
                while chunk := cursor.fetchmany(batch):
                    yield chunk
            finally:
                if self.dialect == "sqlite":
                    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_SIZE}")
                cursor.close()

    def hash_at(self, seq: int) -> str | None:
        """The chain hash of event ``seq`` (None if there is no such event)."""
        with self.engine.connect() as conn:
            rows = self._raw_query(conn, f"SELECT hash FROM events WHERE seq = {self._param}", [seq])
        return str(rows[0][0]) if rows else None

    def registered_members(self) -> set[int]:
        """Every member id with a registration event (any time)."""
        with self.engine.connect() as conn:
            rows = self._raw_query(
                conn, "SELECT DISTINCT member_id FROM events WHERE kind = 'member_registered'", []
            )
            return {int(r[0]) for r in rows}

    # -- auditing ------------------------------------------------------------------------------

    def verify(self, *, progress: ProgressFn | None = None, anchors: Sequence[Anchor] = ()) -> VerifyReport:
        """Recompute the chain; report the first changed, missing or out-of-order event.

        ``anchors`` are (seq, hash) pairs recorded outside the database (snapshot manifests,
        signed checkpoints). The same pass compares the chain with each of them: the first, in seq
        order, that disagrees or lies beyond the last event is reported.
        """
        head_seq, head_hash = self.head()
        pending = deque(sorted(anchors, key=lambda a: a.seq))
        expected_seq = 1
        prev_hash = GENESIS_HASH
        checked = 0
        agreed = 0

        def disagreeing(seq: int, digest: str) -> VerifyReport | None:
            nonlocal agreed
            while pending and pending[0].seq <= seq:
                anchor = pending.popleft()
                if anchor.hash != digest:
                    return _anchor_report(anchor, digest, checked, head_seq, agreed)
                agreed += 1
            return None

        if report := disagreeing(0, GENESIS_HASH):
            return report
        # Raw rows in chunks, not one LedgerEvent per row: 1.4x the events/s on SQLite, 2x on PostgreSQL.
        with closing(self.event_rows(COLUMNS, after=0, upto=MAX_SEQ)) as chunks:
            for chunk in chunks:
                for row in chunk:
                    seq = row[0]
                    problem = None
                    if seq != expected_seq:
                        problem = (
                            f"missing event(s): expected seq {expected_seq}, found seq {seq}"
                            if seq > expected_seq
                            else f"out of order: seq {seq} after seq {expected_seq - 1}"
                        )
                    elif row[10] != prev_hash:
                        problem = self._diagnose_link(LedgerEvent(*row))
                    elif event_digest(*row[:11]) != row[11]:
                        problem = "changed: its contents do not match its hash"
                    if problem:
                        bad = seq if seq <= expected_seq else expected_seq
                        return VerifyReport(False, checked, head_seq, bad, problem, anchors_agreed=agreed)
                    prev_hash = row[11]
                    expected_seq += 1
                    checked += 1
                    if pending and pending[0].seq == seq and (report := disagreeing(seq, prev_hash)):
                        return report
                    if progress and checked % 100_000 == 0:
                        progress(checked)
        if checked != head_seq or prev_hash != head_hash:
            return VerifyReport(
                False,
                checked,
                head_seq,
                checked + 1,
                f"missing event(s): the chain head records seq {head_seq}, the last event is seq {checked}",
                anchors_agreed=agreed,
            )
        if pending:  # recorded beyond the last event: events were removed and the head rewound
            return _anchor_report(pending[0], None, checked, head_seq, agreed)
        return VerifyReport(True, checked, head_seq, anchors_agreed=agreed)

    def _diagnose_link(self, event: LedgerEvent) -> str:
        with self.engine.connect() as conn:
            rows = self._raw_query(
                conn, f"SELECT seq FROM events WHERE hash = {self._param}", [event.prev_hash]
            )
        if rows and int(rows[0][0]) != event.seq - 1:
            return f"out of order: it was chained after seq {rows[0][0]}, not after seq {event.seq - 1}"
        return f"changed: seq {event.seq - 1} before it was altered, or its link (prev_hash) was edited"


class _WriteTransaction:
    """A transaction that appends: BEGIN IMMEDIATE on SQLite, errors mapped to LedgerError.

    On a SQLite file, writers of all processes first take an exclusive ``flock`` on
    ``<db>.write-lock``. SQLite's own busy handler waits by sleeping in steps of up to 100 ms, so two
    server processes writing at once saw 2 s p99 latencies (bench/portal.py --workers 2); a blocked
    ``flock`` wakes the moment the lock is released. SQLite's locking still protects against
    writers that do not take the file lock.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None
        self.lock: int | None = None

    def __enter__(self) -> Connection:
        path = sqlite_path(str(self.engine.url)) if self.engine.dialect.name == "sqlite" else None
        if path is not None:
            self.lock = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            self.conn = self.engine.connect().execution_options(**WRITE)
            self.conn.begin()
        except OperationalError as exc:
            self._unlock()
            raise LedgerError(f"cannot write to the ledger: {one_line(exc.orig)}") from None
        except BaseException:
            self._unlock()
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.conn is not None
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()
            self._unlock()

    def _unlock(self) -> None:
        if self.lock is not None:
            os.close(self.lock)  # closing the descriptor releases the flock
            self.lock = None


def _mismatch(anchor: Anchor, found: str | None, head_seq: int) -> AnchorMismatch:
    return AnchorMismatch(anchor.label, anchor.seq, anchor.hash, found, head_seq)


def _anchor_report(
    anchor: Anchor, found: str | None, checked: int, head_seq: int, agreed: int
) -> VerifyReport:
    return VerifyReport(
        False,
        checked,
        head_seq,
        anchor.seq,
        _mismatch(anchor, found, head_seq).problem,
        anchors_agreed=agreed,
        anchor=anchor,
        ledger_hash=found,
    )


MAX_CLIENT_KEY = 200
"""A key a client gives (the API's Idempotency-Key header, an import's idempotency_key column)."""
MAX_IDEMPOTENCY_KEY = 256
"""A key as stored: the client's key with the prefix that scopes it (``api:setting:1001:…``)."""


def check_idempotency_key(key: str, limit: int = MAX_IDEMPOTENCY_KEY) -> None:
    """Printable text of 1 to ``limit`` characters, on SQLite and PostgreSQL alike (PostgreSQL
    cannot store a NUL at all, so a ledger holding one could never move there)."""
    if not key or len(key) > limit:
        raise InputError(f"idempotency key: expected 1 to {limit} characters, got {len(key):,}")
    if not key.isprintable():
        bad = next(c for c in key if not c.isprintable())
        raise InputError(
            f"idempotency key: expected printable text, found U+{ord(bad):04X}"
            f" at position {key.index(bad) + 1}"
        )


def check_client_key(key: str) -> None:
    check_idempotency_key(key, MAX_CLIENT_KEY)


def _check_append(keys: Sequence[str], timed: Iterable[tuple[str, int | None]], recorded_at: int) -> None:
    """Keys printable and short, none twice in one append; instants within the bounds; member-originated
    events never back-dated."""
    for key in keys:
        check_idempotency_key(key)
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise InputError(f"idempotency key {key!r} appears twice in one append")
            seen.add(key)
    originated = {str(s) for s in MEMBER_ORIGINATED}
    for source, effective in timed:
        if effective is not None and not in_bounds(effective):
            raise InputError(f"effective_at: out of range (expected an instant {BOUNDS_TEXT})")
        if source in originated and effective is not None and effective < recorded_at:
            raise InputError(
                f"a {source} event is never back-dated: effective_at "
                f"{format_instant(from_micros(effective))} is before now "
                f"({format_instant(from_micros(recorded_at))})"
            )


def _without(batch: EventBatch, skip: set[int]) -> EventBatch:
    """The batch less the events at the positions in ``skip`` (already in the ledger)."""
    keep = [i for i in range(len(batch)) if i not in skip]
    return EventBatch(
        member_id=[batch.member_id[i] for i in keep],
        kind=[batch.kind[i] for i in keep],
        key=[batch.key[i] for i in keep],
        value=[batch.value[i] for i in keep],
        effective_at=[batch.effective_at[i] for i in keep],
        source=[batch.source[i] for i in keep],
        actor=[batch.actor[i] for i in keep],
        idempotency_key=[batch.idempotency_key[i] for i in keep],
    )


def _seal(draft: EventDraft, seq: int, recorded_at: int, prev_hash: str) -> LedgerEvent:
    effective = recorded_at if draft.effective_at is None else draft.effective_at
    event = LedgerEvent(
        seq=seq,
        member_id=draft.member_id,
        kind=str(draft.kind),
        key=draft.key,
        value=draft.value,
        effective_at=effective,
        recorded_at=recorded_at,
        source=str(draft.source),
        actor=draft.actor,
        idempotency_key=draft.idempotency_key,
        prev_hash=prev_hash,
        hash="",
    )
    return replace(event, hash=digest_of(event))


def _row(event: LedgerEvent) -> tuple[Any, ...]:
    return tuple(getattr(event, c) for c in COLUMNS)
