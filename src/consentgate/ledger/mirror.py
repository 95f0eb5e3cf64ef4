"""A Parquet mirror of the ledger's events: what bulk jobs (snapshots, lineage debt) read.

DESIGN §6: at network scale the engines compute the as-of state from an export of the ledger's
events, not through per-member queries. Because the ledger is append-only and hash-chained, the
export can be kept incrementally: each sync appends one segment with the events after the last
mirrored seq. Before a segment is trusted, its file hash must match the index, the segments must
chain (each starts where the previous ended), and the ledger's own hash of the last mirrored event
must equal the one recorded at export time; anything else and the mirror is rebuilt from scratch.

Layout of the folder: ``index.json`` and ``segment-<first>-<last>.parquet`` files with the columns
``seq, member_id, kind, key, value, effective_at`` (``effective_at`` as int64 µs UTC, as in the
ledger).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.exceptions import LedgerError
from consentgate.ledger.database import sqlite_path
from consentgate.ledger.store import Ledger

MIRROR_COLUMNS = ("seq", "member_id", "kind", "key", "value", "effective_at")
MIRROR_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("member_id", pa.int64()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("value", pa.string()),
        ("effective_at", pa.int64()),
    ]
)
MAX_SEGMENTS = 16
"""More segments than this are merged into one, so a busy ledger does not leave thousands of files."""
FORMAT = "consentgate.event-mirror/1"


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

    def sync(self, upto: int, *, progress: Callable[[int], None] | None = None) -> list[Path]:
        """Bring the mirror up to seq ``upto`` (at least); returns the segment files to read."""
        with _locked(self.folder):
            segments = self._trusted_segments()
            last = segments[-1].last if segments else 0
            if upto > last:
                segments.append(self._export(last, upto, progress))
            if len(segments) > MAX_SEGMENTS:
                segments = [self._merge(segments)]
            self._write_index(segments)
            for stale in self.folder.glob("segment-*.parquet"):
                if stale.name not in {s.file for s in segments}:
                    stale.unlink()
            return [self.folder / s.file for s in segments]

    # -- trusting what is there ----------------------------------------------------------------

    def _read_index(self) -> list[Segment]:
        try:
            data = json.loads((self.folder / "index.json").read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return []
        try:
            return [Segment(**s) for s in data["segments"]]
        except (KeyError, TypeError):
            return []

    def _trusted_segments(self) -> list[Segment]:
        segments = self._read_index()
        expected_first = 1
        for segment in segments:
            path = self.folder / segment.file
            if segment.first != expected_first or not path.is_file() or file_sha256(path) != segment.sha256:
                return []
            expected_first = segment.last + 1
        if segments and self.ledger.hash_at(segments[-1].last) != segments[-1].last_hash:
            return []  # another ledger's mirror (or one that was rebuilt): start again
        return segments

    def _write_index(self, segments: list[Segment]) -> None:
        tmp = self.folder / "index.json.tmp"
        body = {"format": FORMAT, "segments": [s.to_dict() for s in segments]}
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(self.folder / "index.json")

    # -- writing -------------------------------------------------------------------------------

    def _export(self, after: int, upto: int, progress: Callable[[int], None] | None) -> Segment:
        tmp = self.folder / f".segment-{after + 1}.partial"
        rows = 0
        last_seq = after
        with pq.ParquetWriter(tmp, MIRROR_SCHEMA, compression="zstd") as writer:
            for chunk in self.ledger.event_rows(MIRROR_COLUMNS, after=after, upto=upto):
                columns = list(zip(*chunk, strict=True))
                writer.write_batch(
                    pa.record_batch(
                        [pa.array(c, type=f.type) for c, f in zip(columns, MIRROR_SCHEMA, strict=True)],
                        schema=MIRROR_SCHEMA,
                    )
                )
                rows += len(chunk)
                last_seq = int(chunk[-1][0])
                if progress is not None:
                    progress(rows)
        last_hash = self.ledger.hash_at(last_seq)
        if last_hash is None or last_seq != upto:
            tmp.unlink()
            raise LedgerError(f"ledger changed while mirroring: expected seq {upto}, read up to {last_seq}")
        name = f"segment-{after + 1:012d}-{last_seq:012d}.parquet"
        tmp.replace(self.folder / name)
        return Segment(name, after + 1, last_seq, last_hash, file_sha256(self.folder / name))

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
