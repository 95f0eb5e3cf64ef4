"""Enforcement engines: join the records to the eligibility relation and write the snapshot.

Both engines receive the same eligibility (computed once by the build) and must produce the same
rows, the same per-group counts and the same lineage; tests compare them.
"""

from consentgate.snapshots.engines.base import EngineOutput, Job, SnapshotEngine

__all__ = ["EngineOutput", "Job", "SnapshotEngine"]
