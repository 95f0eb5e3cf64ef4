"""What an engine is given and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from consentgate.snapshots.dataset import Dataset

ProgressFn = Callable[[int], None]
"""Called with the number of input records processed so far."""

LINEAGE_COLUMNS = ("member_id", "category", "records")


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


@dataclass
class EngineOutput:
    record_files: list[Path]
    groups: list[tuple[int, str | None, bool, int]] = field(default_factory=list)
    """(class_id, category as found in the record, created after T, records) over all input."""


class SnapshotEngine(Protocol):
    name: str

    def run(self, job: Job, progress: ProgressFn | None = None) -> EngineOutput: ...
