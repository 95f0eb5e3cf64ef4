"""``snapshot verify``: re-derive a published snapshot's proof from its files, not only its hashes.

Each problem names the check that failed:

- ``manifest``: the manifest is missing, unreadable or changed since it was registered;
- ``hash``: a listed file is missing, differs from its sha256, or a file is not listed;
- ``rows``: a file's Parquet footer holds another row count than the manifest lists;
- ``counts``: the files' rows or the lineage do not add up to the manifest's counts;
- ``lineage``: the (member, category) record counts of the files differ from ``members.parquet``;
- ``id``: the outputs' digest or the snapshot id does not cover what the files hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consentgate.exceptions import EngineOutputError
from consentgate.ledger.mirror import file_sha256
from consentgate.snapshots import stores
from consentgate.snapshots.integrity import (
    compare_lineage,
    content_digest,
    lineage_disagreements,
    lineage_totals,
    parquet_rows,
    snapshot_suffix,
)
from consentgate.snapshots.registry import SnapshotEntry, readable


@dataclass(frozen=True)
class VerifyResult:
    snapshot_id: str
    files_checked: int
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    """The checks that ran (``hash``, ``rows``, ``counts``, ``lineage``, ``id``)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_snapshot(entry: SnapshotEntry, *, root: Path | None = None) -> VerifyResult:
    """Hashes, row counts, counts, lineage and id of a registered snapshot, against its files.

    ``root`` is the folder whose files are checked (default: the snapshot's folder; for one on an
    object store a fresh copy of its published prefix, every object in it, removed afterwards, so
    that what the store holds now is checked, not a local copy)."""
    if root is not None or entry.uri is None:
        return _verify(entry, root or entry.path)
    try:
        fresh = readable(entry, fresh=True)
    except (stores.NotPublished, stores.StoreError) as exc:
        return VerifyResult(entry.snapshot_id, 0, [f"manifest: {exc}"])
    try:
        return _verify(entry, fresh)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _verify(entry: SnapshotEntry, root: Path) -> VerifyResult:
    entry = dataclasses.replace(entry, path=root)
    shown = _namer(entry, root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return VerifyResult(entry.snapshot_id, 0, [f"manifest: {shown(manifest_path)} is missing"])
    body = manifest_path.read_bytes()
    problems: list[str] = []
    if hashlib.sha256(body).hexdigest() != entry.manifest_sha256:
        problems.append(f"manifest: {shown(manifest_path)} changed since the snapshot was registered")
    try:
        manifest = json.loads(body)
        listed: list[dict[str, Any]] = [*manifest["outputs"]["records"], manifest["outputs"]["members"]]
        counts = manifest["counts"]
    except (ValueError, KeyError, TypeError) as exc:
        return VerifyResult(entry.snapshot_id, 1, [*problems, f"manifest: not a snapshot manifest ({exc})"])
    checks = ["hash"]
    intact = True
    for item in listed:
        path = root / item["file"]
        if not path.is_file():
            problems.append(f"hash: {shown(path)} is missing")
            intact = False
        elif file_sha256(path) != item["sha256"]:
            problems.append(f"hash: {shown(path)} differs from the manifest (sha256)")
    known = {root / item["file"] for item in listed} | {manifest_path}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path not in known:
            problems.append(f"hash: {shown(path)} is not listed in the manifest")
    if intact:
        checks += ["rows", "counts", "lineage"]
        problems += _derived(entry, manifest, listed, counts)
    if "content_digest" in manifest and "identity_digest" in manifest:
        checks.append("id")
        problems += _identity(entry, manifest)
    return VerifyResult(entry.snapshot_id, len(listed) + 1, problems, checks)


def _namer(entry: SnapshotEntry, root: Path) -> Callable[[Path], str]:
    """How a problem names a file: its path, or for a snapshot on a store its URI (not the copy's path)."""
    if entry.uri is None:
        return str
    uri = entry.uri.rstrip("/")
    return lambda path: f"{uri}/{path.relative_to(root).as_posix()}"


def _derived(
    entry: SnapshotEntry, manifest: dict[str, Any], listed: list[dict[str, Any]], counts: dict[str, Any]
) -> list[str]:
    """Row counts from the footers, totals from the lineage, and the lineage from the records."""
    problems: list[str] = []
    found: dict[str, int] = {}
    try:
        for item in listed:
            found[item["file"]] = rows = parquet_rows(entry.path / item["file"], label=item["file"], after="")
            if rows != item["rows"]:
                problems.append(
                    f"rows: {item['file']} holds {rows:,} rows, the manifest lists {item['rows']:,}"
                )
        file_rows = sum(found[item["file"]] for item in manifest["outputs"]["records"])
        lineage = lineage_totals(entry.path / manifest["outputs"]["members"]["file"])
    except EngineOutputError as exc:
        return [*problems, f"rows: {exc}"]
    problems += [
        f"counts: {p}"
        for p in compare_lineage(
            lineage, int(counts["records_included"]), counts["included_by_category"], file_rows
        )
    ]
    if lineage.members != counts.get("members_included"):
        problems.append(
            f"counts: members.parquet names {lineage.members:,} members,"
            f" the manifest says {counts.get('members_included')}"
        )
    if entry.records != counts["records_included"]:
        problems.append(
            f"counts: the registry records {entry.records:,} included records,"
            f" the manifest {counts['records_included']:,}"
        )
    differing, shown = lineage_disagreements(
        [entry.path / item["file"] for item in manifest["outputs"]["records"]],
        entry.path / manifest["outputs"]["members"]["file"],
    )
    if differing:
        problems.append(
            f"lineage: {differing:,} (member, category) counts differ between the record files and"
            f" members.parquet, e.g. {'; '.join(shown)}"
        )
    return problems


def _identity(entry: SnapshotEntry, manifest: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    content = content_digest(manifest["outputs"])
    if content != manifest["content_digest"]:
        problems.append(
            f"id: the outputs listed digest to {content[:12]}…, the manifest records"
            f" {str(manifest['content_digest'])[:12]}…"
        )
    suffix = snapshot_suffix(manifest["identity_digest"], content)
    if not entry.snapshot_id.endswith("-" + suffix) or manifest.get("snapshot_id") != entry.snapshot_id:
        problems.append(
            f"id: {entry.snapshot_id} does not cover these outputs (their id would end in -{suffix})"
        )
    return problems
