"""``snapshot verify``: re-hash a published snapshot against its manifest and the registry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from consentgate.ledger.mirror import file_sha256
from consentgate.snapshots.registry import SnapshotEntry


@dataclass(frozen=True)
class VerifyResult:
    snapshot_id: str
    files_checked: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_snapshot(entry: SnapshotEntry) -> VerifyResult:
    """Every file listed must have its recorded hash; no file may be added; the manifest must match."""
    manifest_path = entry.path / "manifest.json"
    if not manifest_path.is_file():
        return VerifyResult(entry.snapshot_id, 0, [f"{manifest_path}: missing"])
    body = manifest_path.read_bytes()
    problems: list[str] = []
    if hashlib.sha256(body).hexdigest() != entry.manifest_sha256:
        problems.append(f"{manifest_path}: changed since the snapshot was registered")
    manifest = json.loads(body)
    listed = [*manifest["outputs"]["records"], manifest["outputs"]["members"]]
    for item in listed:
        path = entry.path / item["file"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_sha256(path) != item["sha256"]:
            problems.append(f"{path}: content differs from the manifest (sha256)")
    known = {entry.path / item["file"] for item in listed} | {manifest_path}
    for path in sorted(entry.path.rglob("*")):
        if path.is_file() and path not in known:
            problems.append(f"{path}: not listed in the manifest")
    return VerifyResult(entry.snapshot_id, len(listed) + 1, problems)
