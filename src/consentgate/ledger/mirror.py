"""A verified Parquet copy of the ledger's events: what bulk jobs (snapshots, gates, lineage debt) read.

DESIGN §6: at network scale the engines compute the as-of state from an export of the ledger's
events, not through per-member queries. Because the ledger is append-only and hash-chained, the
copy is kept incrementally: each sync appends one segment with the events after the last mirrored
seq. Nothing enters the mirror unverified:

- **On export**, every event's digest is recomputed (DuckDB, in bulk) and its link to the event
  before is checked, from the last verified hash on; seqs must be gapless and the chain must end in
  the hash that ``ledger_head`` records. A changed, missing or reordered event refuses the sync with
  the first bad seq named (``ChainBroken``).
- **On every sync**, the segments' file hashes must match the index, and the database's chain hash
  at the end of every segment must still equal the verified one; if not, a binary search names the
  first seq from which the database's history differs (rewritten or removed). The database must
  still hold every seq up to the watermark (a row count), so a deleted event is found too.

What a sync does not re-read is the *content* of database rows it verified before: an edit that
leaves the database's ``hash`` column alone (a changed value, two rows' contents swapped) makes the
database disagree with its own chain, but the mirror still holds the verified events, so nothing
built from it uses the edit; ``consentgate audit verify`` names such rows, and ``sync(...,
reverify=True)`` (``snapshot build --reverify``) re-reads and re-verifies every event.

A mirror whose files are damaged, or that belongs to another ledger (another first event), is
rebuilt from scratch, which verifies everything again.

Layout of the folder: ``index.json`` and ``segment-<first>-<last>.parquet`` files with every event
column (``effective_at`` and ``recorded_at`` as int64 µs UTC, as in the ledger).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as adbc_sqlite
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import text

from consentgate.exceptions import ChainBroken, LedgerError
from consentgate.ledger.database import SQLITE_MMAP_SIZE, sqlite_path
from consentgate.ledger.events import GENESIS_HASH, LedgerEvent, digest_sql
from consentgate.ledger.guards import require_guards
from consentgate.ledger.store import COLUMNS, Ledger

MIRROR_COLUMNS = COLUMNS
_TYPES = {"seq": pa.int64(), "member_id": pa.int64(), "effective_at": pa.int64(), "recorded_at": pa.int64()}
MIRROR_SCHEMA = pa.schema([(name, _TYPES.get(name, pa.string())) for name in MIRROR_COLUMNS])
MAX_SEGMENTS = 16
"""More segments than this are merged into one, so a busy ledger does not leave thousands of files."""
FORMAT = "consentgate.event-mirror/2"
CHUNK_ROWS = 200_000
"""Events read, verified and written at a time: memory stays bounded whatever the ledger's size."""


@dataclass(frozen=True)
class Segment:
    file: str
    first: int
    last: int
    last_hash: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "first": self.first,
            "last": self.last,
            "last_hash": self.last_hash,
            "sha256": self.sha256,
        }


def default_mirror_dir(url: str) -> Path:
    """Next to a SQLite ledger file; for a server database, in the user's cache folder."""
    path = sqlite_path(url)
    if path is not None:
        return path.with_name(path.name + ".events")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "consentgate" / ("events-" + hashlib.sha256(url.encode()).hexdigest()[:16])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def parquet_source(files: Sequence[Path]) -> str:
    """A DuckDB relation over mirror segment files (an empty one for no files)."""
    if not files:
        columns = ", ".join(
            f"NULL::{'BIGINT' if f.type == pa.int64() else 'VARCHAR'} AS {f.name}" for f in MIRROR_SCHEMA
        )
        return f"(SELECT {columns} WHERE false)"
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    return f"read_parquet([{listed}])"


def seqs_then_rows(where_seqs: str, files: Sequence[Path]) -> str:
    """A query for the full rows of the events whose seqs ``where_seqs`` selects, by seq.

    Two steps because DuckDB decodes every projected column of every row before a filter: a
    condition on one column over 8.5M events read all twelve columns (hashes included) in 5.8 s,
    the seqs alone in 0.4 s, and the rows of those seqs by a semi join on seq (row groups are in
    seq order, so most are skipped) in 1 s.
    """
    source = parquet_source(files)
    return (
        f"WITH wanted_seqs AS ({where_seqs})"
        f" SELECT {', '.join('e.' + c for c in MIRROR_COLUMNS)} FROM {source} e"
        " SEMI JOIN wanted_seqs w ON w.seq = e.seq ORDER BY e.seq"
    )


def read_events(files: Sequence[Path], where: str, params: Sequence[Any] = ()) -> list[LedgerEvent]:
    """The mirrored events matching the SQL condition ``where``, by seq."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            seqs_then_rows(f"SELECT seq FROM {parquet_source(files)} WHERE {where}", files), list(params)
        ).fetchall()
    finally:
        con.close()
    return [LedgerEvent(*row) for row in rows]


def events_of_members(
    files: Sequence[Path], member_ids: Sequence[int], *, at_us: int, watermark: int
) -> dict[int, list[LedgerEvent]]:
    """Each member's mirrored events with ``effective_at <= at_us`` and ``seq <= watermark``, by seq:
    what ``Ledger.member_events`` returns, read from the verified copy."""
    found: dict[int, list[LedgerEvent]] = {member: [] for member in member_ids}
    if not member_ids or not files:
        return found
    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"member_id": pa.array(sorted(set(member_ids)), pa.int64())}))
        rows = con.execute(
            seqs_then_rows(
                f"""SELECT e.seq FROM {parquet_source(files)} e
                SEMI JOIN wanted w ON w.member_id = e.member_id
                WHERE e.effective_at <= ? AND e.seq <= ?""",
                files,
            ),
            [at_us, watermark],
        ).fetchall()
    finally:
        con.close()
    for row in rows:
        event = LedgerEvent(*row)
        found[event.member_id].append(event)
    return found


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Two builds syncing the same mirror must not write the same segment twice.
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EventMirror:
    """The mirror folder of one ledger."""

    def __init__(self, ledger: Ledger, folder: Path) -> None:
        self.ledger = ledger
        self.folder = folder

    def sync(
        self, upto: int, *, progress: Callable[[int], None] | None = None, reverify: bool = False
    ) -> list[Path]:
        """Bring the mirror up to seq ``upto`` (at least), verified; returns the segment files to read.

        Raises ``ChainBroken`` naming the first bad seq when the ledger's events up to ``upto``, or
        its history since the mirror verified it, are not the chain they should be.
        """
        require_guards(self.ledger)
        with _locked(self.folder):
            segments = [] if reverify else self._trusted_segments()
            self._check_history(segments)
            last = segments[-1].last if segments else 0
            if upto > last:
                prev = segments[-1].last_hash if segments else GENESIS_HASH
                segments.append(self._export(last, upto, prev, progress))
            self._check_complete(max(upto, last))
            if len(segments) > MAX_SEGMENTS:
                segments = [self._merge(segments)]
            self._write_index(segments)
            for stale in self.folder.glob("segment-*.parquet"):
                if stale.name not in {s.file for s in segments}:
                    stale.unlink()
            return [self.folder / s.file for s in segments]

    # -- trusting what is there ----------------------------------------------------------------

    def _read_index(self) -> tuple[str | None, list[Segment]]:
        try:
            data = json.loads((self.folder / "index.json").read_text())
        except (OSError, ValueError):
            return None, []
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None, []
        try:
            return str(data["first_hash"]), [Segment(**s) for s in data["segments"]]
        except (KeyError, TypeError):
            return None, []

    def _trusted_segments(self) -> list[Segment]:
        """The indexed segments whose files are intact, if the mirror is this ledger's; else none."""
        first_hash, segments = self._read_index()
        expected_first = 1
        for segment in segments:
            path = self.folder / segment.file
            if segment.first != expected_first or not path.is_file() or file_sha256(path) != segment.sha256:
                return []  # damaged or incomplete: rebuilt (and so verified again) from the ledger
            expected_first = segment.last + 1
        if segments and self.ledger.hash_at(1) != first_hash:
            return []  # another ledger's mirror (its first event differs): start again
        return segments

    def _check_history(self, segments: list[Segment]) -> None:
        """The database's chain hash at each verified segment's end must be the verified one."""
        for segment in segments:
            if self.ledger.hash_at(segment.last) != segment.last_hash:
                seq, problem = self._first_difference(segment)
                raise ChainBroken(seq, problem)

    def _first_difference(self, segment: Segment) -> tuple[int, str]:
        """Binary search for the first seq whose database hash differs from the verified copy.

        A chain rewritten from seq s differs at every seq from s on; a removed tail is missing from
        s on. Either way "differs at seq" is monotonic, so about 2·log2(n) point reads find s.
        """
        path = self.folder / segment.file
        con = duckdb.connect()
        try:

            def ours(seq: int) -> str:
                return str(
                    con.execute(
                        f"SELECT hash FROM read_parquet('{_sql(path)}') WHERE seq = ?", [seq]
                    ).fetchall()[0][0]
                )

            low, high = segment.first, segment.last
            while low < high:
                middle = (low + high) // 2
                if self.ledger.hash_at(middle) == ours(middle):
                    low = middle + 1
                else:
                    high = middle
            theirs, verified = self.ledger.hash_at(low), ours(low)
        finally:
            con.close()
        head, _ = self.ledger.head()
        if theirs is None:
            return low, (
                f"missing: the ledger has no event seq {low}, which was verified earlier (hash"
                f" {verified[:12]}…); events were removed (the ledger's head records seq {head})"
            )
        return low, (
            f"changed: the ledger's hash at seq {low} is {theirs[:12]}…, the verified chain has"
            f" {verified[:12]}…: the history was rewritten from this event on"
        )

    def _check_complete(self, upto: int) -> None:
        """Every seq up to ``upto`` is still in the database (a deleted row leaves a gap)."""
        sqlite = self.ledger.dialect == "sqlite"
        with self.ledger.engine.connect() as conn:
            if sqlite:  # a scan through the memory map would leave the index resident (RSS)
                conn.exec_driver_sql("PRAGMA mmap_size=0")
            try:
                # The fast proof: as many rows as the highest seq, and seq 1 there, means no seq is
                # missing anywhere (count(*) alone is answered from the smallest index: 60 ms for
                # 8.5M events). Only when it fails is the range up to ``upto`` counted and searched.
                total = int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
                low = conn.execute(text("SELECT min(seq) FROM events")).scalar_one()
                high = conn.execute(text("SELECT max(seq) FROM events")).scalar_one()
                if upto == 0 or (low == 1 and high is not None and total == int(high) >= upto):
                    return
                count = int(
                    conn.execute(
                        text("SELECT count(*) FROM events WHERE seq <= :u"), {"u": upto}
                    ).scalar_one()
                )
                if count == upto:
                    return  # the gap lies beyond what this build reads
                gap = conn.execute(
                    text(
                        "SELECT min(e.seq) + 1 FROM events e LEFT JOIN events f ON f.seq = e.seq + 1"
                        " WHERE e.seq < :u AND f.seq IS NULL"
                    ),
                    {"u": upto},
                ).scalar_one()
            finally:
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA mmap_size={SQLITE_MMAP_SIZE}")
        seq = 1 if low != 1 else int(gap if gap is not None else upto)
        raise ChainBroken(
            seq,
            f"missing: the ledger holds {count:,} events up to seq {upto}, not {upto:,}; seq {seq} is gone",
        )

    def _write_index(self, segments: list[Segment]) -> None:
        tmp = self.folder / "index.json.tmp"
        body = {
            "format": FORMAT,
            "first_hash": self.ledger.hash_at(1) if segments else None,
            "segments": [s.to_dict() for s in segments],
        }
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(self.folder / "index.json")

    # -- writing -------------------------------------------------------------------------------

    def _export(
        self, after: int, upto: int, prev_hash: str, progress: Callable[[int], None] | None
    ) -> Segment:
        """Write and verify the events ``after+1..upto``: each chunk is verified while the next is read."""
        tmp = self.folder / f".segment-{after + 1}.partial"
        chain = _ChainCheck(after, prev_hash)
        rows = 0
        try:
            with (
                pq.ParquetWriter(tmp, MIRROR_SCHEMA, compression="zstd") as writer,
                ThreadPoolExecutor(max_workers=1) as pool,
            ):
                pending: Future[None] | None = None
                for chunk in self._chunks(after, upto):
                    if pending is not None:
                        pending.result()  # a broken chain stops the export at its first bad seq

                    def verify_and_write(table: pa.Table = chunk) -> None:
                        chain.check(table)
                        writer.write_table(table)

                    pending = pool.submit(verify_and_write)
                    rows += chunk.num_rows
                    if progress is not None:
                        progress(rows)
                if pending is not None:
                    pending.result()
            chain.finish(upto)
            self._check_head(upto, chain.last_hash)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        name = f"segment-{after + 1:012d}-{upto:012d}.parquet"
        tmp.replace(self.folder / name)
        return Segment(name, after + 1, upto, chain.last_hash, file_sha256(self.folder / name))

    def _chunks(self, after: int, upto: int) -> Iterator[pa.Table]:
        """The events ``after < seq <= upto`` in seq order, as Arrow tables of about CHUNK_ROWS rows.

        A SQLite file is read by the ADBC driver straight into Arrow (about four times the rate of
        Python rows); other databases stream rows through their driver.
        """
        path = sqlite_path(str(self.ledger.engine.url))
        if path is None:
            for rows in self.ledger.event_rows(MIRROR_COLUMNS, after=after, upto=upto):
                columns = list(zip(*rows, strict=True))
                yield pa.table(
                    [pa.array(c, type=f.type) for c, f in zip(columns, MIRROR_SCHEMA, strict=True)],
                    schema=MIRROR_SCHEMA,
                )
            return
        for batch in sqlite_event_batches(path, after=after, upto=upto):
            yield pa.Table.from_batches([batch])

    def _check_head(self, upto: int, last_hash: str) -> None:
        head, head_hash = self.ledger.head()
        if upto > head:
            raise LedgerError(f"ledger changed while mirroring: its head is seq {head}, below {upto}")
        if upto == head and head_hash != last_hash:
            raise ChainBroken(
                head,
                f"changed: the chain head records hash {head_hash[:12]}… for seq {head}, the event's"
                f" hash is {last_hash[:12]}…",
            )

    def _merge(self, segments: list[Segment]) -> Segment:
        first, last = segments[0].first, segments[-1].last
        name = f"segment-{first:012d}-{last:012d}.parquet"
        tmp = self.folder / f".{name}.partial"
        with pq.ParquetWriter(tmp, MIRROR_SCHEMA, compression="zstd") as writer:
            for segment in segments:
                for batch in pq.ParquetFile(self.folder / segment.file).iter_batches(batch_size=1 << 20):
                    writer.write_batch(batch)
        tmp.replace(self.folder / name)
        return Segment(name, first, last, segments[-1].last_hash, file_sha256(self.folder / name))


def sqlite_event_batches(
    path: Path, *, after: int, upto: int, rows: int = CHUNK_ROWS
) -> Iterator[pa.RecordBatch]:
    """The events ``after < seq <= upto`` of the SQLite ledger at ``path`` in seq order, read by the
    ADBC driver straight into Arrow (``MIRROR_SCHEMA``: instants as int64 µs), one statement (one
    read transaction, so one consistent view), batches of about ``rows``."""
    sql = f"SELECT {', '.join(MIRROR_COLUMNS)} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq"
    conn, lock = _adbc_reader(path)
    with lock, conn.cursor() as cursor:
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(rows)})
        cursor.execute(sql, (after, upto))
        for batch in cursor.fetch_record_batch():
            yield pa.Table.from_batches([batch]).cast(MIRROR_SCHEMA).combine_chunks().to_batches()[0]


_READERS: OrderedDict[Path, tuple[adbc_sqlite.Connection, threading.Lock, tuple[int, int]]] = OrderedDict()
_READERS_LOCK = threading.Lock()
READERS_KEPT = 32
"""ADBC connections kept open per process (one per SQLite file, least recently used dropped)."""


def _adbc_reader(path: Path) -> tuple[adbc_sqlite.Connection, threading.Lock]:
    """The process's read-only ADBC connection to the SQLite file ``path``, opened once and kept.

    The ADBC driver carries its own copy of SQLite. POSIX releases *every* lock a process holds on a
    file when *any* of its descriptors of that file is closed, and SQLite can only work around that
    among connections of one library copy: closing an ADBC connection silently dropped the locks of
    the process's other (sqlite3) connections, so another process closing the database last deleted
    the write-ahead log under them, and their later commits were lost to every other process. A
    connection that is never closed never drops them.

    A file replaced at the same path (a restored backup) is another file: its reader is opened
    anew, and the old one closed (POSIX locks belong to a file, not to its name).
    """
    key = path.resolve()
    stat = key.stat()
    identity = (stat.st_dev, stat.st_ino)
    with _READERS_LOCK:
        reader = _READERS.get(key)
        if reader is not None and reader[2] != identity:
            reader[0].close()
            reader = None
        if reader is None:
            # autocommit: each read is its own transaction, no snapshot is held between syncs
            conn = adbc_sqlite.connect(f"{key.as_uri()}?mode=ro", autocommit=True)
            reader = (conn, threading.Lock(), identity)
            _READERS[key] = reader
            while len(_READERS) > READERS_KEPT:  # a file this process stopped using long ago
                _READERS.popitem(last=False)[1][0].close()
        _READERS.move_to_end(key)
        return reader[0], reader[1]


class _ChainCheck:
    """Verifies chunks of consecutive events: gapless seqs, links, and every digest recomputed."""

    def __init__(self, after: int, prev_hash: str) -> None:
        self.next = after + 1
        self.last_hash = prev_hash
        self.con = duckdb.connect()

    def check(self, table: pa.Table) -> None:
        """Raise ``ChainBroken`` at the first event of ``table`` that is missing, relinked or changed."""
        n = table.num_rows
        if n == 0:
            return
        seqs = table["seq"].to_numpy()
        gaps = np.flatnonzero(seqs != np.arange(self.next, self.next + n))
        hashes = table["hash"]
        before = pa.chunked_array([pa.array([self.last_hash]), *hashes.slice(0, n - 1).chunks], pa.string())
        relinked = np.flatnonzero(
            ~np.asarray(pc.equal(table["prev_hash"], before).to_numpy(zero_copy_only=False))
        )
        self.con.register("chunk", table)
        [(changed,)] = self.con.execute(f"SELECT min(seq) FROM chunk WHERE {digest_sql()} <> hash").fetchall()
        self.con.unregister("chunk")
        first = min(
            [int(seqs[i]) for i in (gaps[:1].tolist() + relinked[:1].tolist())]
            + ([] if changed is None else [int(changed)])
            + [self.next + n]
        )
        if gaps.size and int(seqs[gaps[0]]) == first:
            expected = self.next + int(gaps[0])
            raise ChainBroken(expected, f"missing event(s): expected seq {expected}, found seq {first}")
        if relinked.size and int(seqs[relinked[0]]) == first:
            raise ChainBroken(
                first,
                f"changed: its link (prev_hash) is not the hash of seq {first - 1}: seq {first - 1}"
                " was altered, or this link edited",
            )
        if changed is not None:
            raise ChainBroken(first, "changed: its contents do not match its hash")
        self.next += n
        self.last_hash = str(hashes[n - 1])

    def finish(self, upto: int) -> None:
        """The events must reach ``upto``: a missing tail is missing events too."""
        self.con.close()
        if self.next != upto + 1:
            raise ChainBroken(
                self.next,
                f"missing event(s): the ledger's head records seq {upto},"
                f" the events end at seq {self.next - 1}",
            )


def _sql(path: Path) -> str:
    return str(path).replace("'", "''")
