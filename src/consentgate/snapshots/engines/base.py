"""What an engine is given and what it returns."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.exceptions import InputError
from consentgate.snapshots.dataset import Dataset

ProgressFn = Callable[[int], None]
"""Called with the number of input records processed so far."""

LINEAGE_COLUMNS = ("member_id", "category", "records")
LINEAGE_SCHEMA = pa.schema([("member_id", pa.int64()), ("category", pa.string()), ("records", pa.int64())])
"""``members.parquet`` as both engines write it: every column nullable, as Parquet's default and as
the records' own columns are (a test compares the engines' schemas, nullability included)."""
_GLOB = "\\{}[]*?"
FIXED_SPARK_SETTINGS = frozenset(
    {
        "spark.sql.session.timeZone",
        "spark.sql.caseSensitive",
        "spark.sql.parquet.outputTimestampType",
        "spark.sql.parquet.compression.codec",
        "spark.sql.parquet.datetimeRebaseModeInRead",
        "spark.sql.parquet.datetimeRebaseModeInWrite",
        "spark.sql.parquet.int96RebaseModeInRead",
        "spark.sql.parquet.int96RebaseModeInWrite",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs",
        "spark.hadoop.parquet.enable.summary-metadata",
    }
)
"""The Spark engine's settings that ``--spark-conf`` cannot change."""


REDACT = re.compile(r"(?i)secret|password|token|access[.]?key|credential")
"""Setting names whose values a manifest never holds (Spark's own ``spark.redaction.regex``, and more)."""


def parse_spark_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``--spark-conf KEY=VALUE`` (repeatable) as a dict; a malformed pair is named."""
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.startswith("spark.") or any(c.isspace() for c in key):
            raise InputError(
                f"--spark-conf: expected KEY=VALUE with a Spark setting name (spark.…), got {pair!r}"
            )
        if key in FIXED_SPARK_SETTINGS:
            raise InputError(
                f"--spark-conf: {key} is set by consentgate (the snapshot's rows, types or bytes depend"
                " on it) and cannot be changed"
            )
        conf[key] = value
    return conf


def recorded_conf(conf: Mapping[str, str]) -> dict[str, str]:
    """``conf`` as the manifest records it: values of secret-looking names redacted."""
    return {k: ("<redacted>" if REDACT.search(k) else v) for k, v in sorted(conf.items())}


def spark_uri(path: Path) -> str:
    """A local path as Spark reads it: explicit ``file:`` scheme, Hadoop glob characters escaped."""
    text = str(path.resolve())
    for char in _GLOB:
        text = text.replace(char, "\\" + char)
    return "file://" + text


@dataclass(frozen=True)
class Job:
    """One enforcement run.

    ``eligibility`` holds ``member_class.parquet`` (member_id int64, class_id int32) and
    ``rules.parquet`` (class_id, category, allowed, reason, late_reason); ``out`` is the snapshot's
    unpublished folder, where the engine writes ``records/part-NNNNN.parquet`` (one per input
    file, eligible rows in input order, every column intact) and ``members.parquet`` (lineage:
    ``member_id, category, records``, sorted).
    """

    dataset: Dataset
    at_us: int
    eligibility: Path
    out: Path
    lineage: bool = True
    """Write ``members.parquet`` (a refresh derives it from its source's instead)."""


Group = tuple[int, str | None, bool, int]
"""(class_id, category as found in the record, created after T, records)."""


@dataclass
class EngineOutput:
    record_files: list[Path]
    groups_by_file: list[list[Group]] = field(default_factory=list)
    """The groups of each input file, in input order: what the build expects each output to hold."""

    @property
    def groups(self) -> list[Group]:
        """The groups over all input."""
        return [group for groups in self.groups_by_file for group in groups]


def allowed_pairs(rules: Path) -> set[tuple[int, str]]:
    """The (class_id, category) pairs that ``rules.parquet`` allows."""
    table = pq.read_table(rules, columns=["class_id", "category", "allowed"])
    return {
        (int(c), str(cat))
        for c, cat, ok in zip(*(table[name].to_pylist() for name in table.column_names), strict=True)
        if ok
    }


def included_rows(groups: list[Group], allowed: set[tuple[int, str]]) -> int:
    """How many records of ``groups`` are eligible: created by T, in a (class, category) allowed."""
    return sum(n for class_id, category, late, n in groups if not late and (class_id, category) in allowed)


class SnapshotEngine(Protocol):
    name: str

    def run(self, job: Job, progress: ProgressFn | None = None) -> EngineOutput: ...
