"""A manifest is never more than its files: checked before publication and by ``snapshot verify``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from consentgate.cli import app
from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import EngineOutputError
from consentgate.ledger.mirror import file_sha256
from consentgate.ledger.schema import snapshots
from consentgate.ledger.store import Ledger
from consentgate.snapshots import build as build_module
from consentgate.snapshots.integrity import content_digest, snapshot_suffix
from consentgate.snapshots.manifest import canonical_json
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.verify import verify_snapshot
from tests.snapshots.conftest import MakeNetwork, assert_nothing_published, build, openlineage_events


def _with_hook(monkeypatch: pytest.MonkeyPatch, hook: Callable[[Path], None]) -> None:
    monkeypatch.setattr(build_module, "AFTER_ENGINE", hook)


def _fewer_rows(path: Path, keep: int) -> None:
    """Replace a Parquet file by a valid one with the same columns and only ``keep`` rows."""
    table = pq.read_table(path)
    pq.write_table(table.slice(0, keep), path)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda work: (work / "records" / "part-00001.parquet").unlink(), "the output file is missing"),
        (lambda work: _fewer_rows(work / "records" / "part-00000.parquet", 3), "holds 3 rows, but"),
        (lambda work: (work / "records" / "part-00000.parquet").write_bytes(b"PAR1"), "not a readable"),
        (lambda work: _fewer_rows(work / "members.parquet", 5), "members.parquet accounts for"),
    ],
    ids=["part-deleted", "part-truncated", "part-damaged", "lineage-truncated"],
)
def test_output_that_does_not_back_the_counts_is_never_published(
    sqlite_ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tamper: Callable[[Path], None],
    message: str,
) -> None:
    """Missing task output is an error, never "no rows": the build names the file and publishes nothing."""
    net = make_network(sqlite_ledger)
    _with_hook(monkeypatch, tamper)
    out = tmp_path / "out"
    with pytest.raises(EngineOutputError, match=message) as raised:
        build(sqlite_ledger, engine, net.root, out)
    assert "nothing published" in str(raised.value)
    assert_nothing_published(out, sqlite_ledger)
    assert [e["eventType"] for e in openlineage_events(out)] == ["START", "FAIL"]


def test_a_part_file_emptied_together_with_its_lineage_is_still_caught(
    sqlite_ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hostile cluster case: files and lineage agree with each other (both empty), not with the input."""
    net = make_network(sqlite_ledger)

    def lose_everything(work: Path) -> None:
        for part in (work / "records").glob("*.parquet"):
            _fewer_rows(part, 0)
        _fewer_rows(work / "members.parquet", 0)

    _with_hook(monkeypatch, lose_everything)
    with pytest.raises(EngineOutputError, match="holds 0 rows, but"):
        build(sqlite_ledger, engine, net.root, tmp_path / "out")
    assert_nothing_published(tmp_path / "out", sqlite_ledger)


def test_the_snapshot_id_covers_the_outputs(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """The id's digest is recomputable from the manifest's inputs identity and its output digests."""
    net = make_network(sqlite_ledger)
    result = build(sqlite_ledger, engine, net.root, tmp_path / "out")
    manifest = result.manifest
    assert manifest["content_digest"] == content_digest(manifest["outputs"])
    suffix = snapshot_suffix(manifest["identity_digest"], manifest["content_digest"])
    assert result.snapshot_id.endswith("-" + suffix)
    # Another output under the same inputs identity would get another id.
    other = dict(manifest["outputs"], members=dict(manifest["outputs"]["members"], rows=0))
    assert snapshot_suffix(manifest["identity_digest"], content_digest(other)) != suffix
    check = verify_snapshot(Registry(sqlite_ledger).require(result.snapshot_id))
    assert check.ok and check.checks == ["hash", "rows", "counts", "lineage", "id"]


def _reregister(ledger: Ledger, snapshot_id: str, manifest_path: Path, records: int | None = None) -> None:
    """What an attacker with database access does after editing a manifest: fix the registry too."""
    values: dict[str, object] = {"manifest_sha256": file_sha256(manifest_path)}
    if records is not None:
        values["records"] = records
    with ledger.engine.begin() as conn:
        conn.execute(update(snapshots).where(snapshots.c.snapshot_id == snapshot_id).values(**values))


def test_verify_rederives_counts_and_lineage_from_the_files(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """Edited counts, and a part file replaced by a valid shorter one with every hash fixed up, fail."""
    net = make_network(sqlite_ledger)
    result = build(sqlite_ledger, engine, net.root, tmp_path / "out")
    registry = Registry(sqlite_ledger)
    manifest_path = result.path / "manifest.json"
    original = manifest_path.read_bytes()

    # 1. Counts edited after publication, manifest hash fixed up in the registry.
    data = json.loads(original)
    data["counts"]["records_included"] += 10
    manifest_path.write_bytes(canonical_json(data))
    _reregister(sqlite_ledger, result.snapshot_id, manifest_path)
    problems = verify_snapshot(registry.require(result.snapshot_id)).problems
    assert any(p.startswith("counts: the record files hold") for p in problems), problems
    assert any(p.startswith("counts: members.parquet accounts for") for p in problems), problems
    manifest_path.write_bytes(original)
    _reregister(sqlite_ledger, result.snapshot_id, manifest_path)
    assert verify_snapshot(registry.require(result.snapshot_id)).ok

    # 2. A part file replaced by a valid Parquet file with fewer rows; its sha256, its rows and the
    #    included count fixed up in the manifest, and the registry fixed up to match.
    part = result.path / "records" / "part-00000.parquet"
    before = pq.ParquetFile(part).metadata.num_rows
    _fewer_rows(part, 2)
    data = json.loads(original)
    entry = data["outputs"]["records"][0]
    entry.update(rows=2, sha256=file_sha256(part), bytes=part.stat().st_size)
    data["counts"]["records_included"] -= before - 2
    manifest_path.write_bytes(canonical_json(data))
    _reregister(sqlite_ledger, result.snapshot_id, manifest_path, records=data["counts"]["records_included"])
    problems = verify_snapshot(registry.require(result.snapshot_id)).problems
    assert any(p.startswith("lineage: ") and "differ between the record files" in p for p in problems)
    assert any(p.startswith("counts: members.parquet accounts for") for p in problems)
    assert any(p.startswith("id: the outputs listed digest") for p in problems)


def test_verify_names_the_failed_check_in_the_cli(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(sqlite_ledger)
    result = build(sqlite_ledger, engine, net.root, tmp_path / "out")
    url = str(sqlite_ledger.engine.url)
    passed = CliRunner().invoke(app, ["--db", url, "snapshot", "verify", result.snapshot_id])
    assert passed.exit_code == 0
    assert "checked: hash, rows, counts, lineage, id" in passed.stdout
    part = result.path / "records" / "part-00001.parquet"
    _fewer_rows(part, 1)
    failed = CliRunner().invoke(app, ["--db", url, "snapshot", "verify", result.snapshot_id])
    assert failed.exit_code == 1
    assert "FAILED: hash: " in failed.stdout
    assert "FAILED: rows: records/part-00001.parquet holds 1 rows" in failed.stdout
    assert hashlib.sha256(b"").hexdigest() not in failed.stdout


def test_verify_names_a_part_file_truncated_after_publication(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """Bytes cut off the end (a copy that stopped half way): no longer Parquet at all."""
    net = make_network(sqlite_ledger)
    result = build(sqlite_ledger, engine, net.root, tmp_path / "out")
    part = result.path / "records" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    problems = verify_snapshot(Registry(sqlite_ledger).require(result.snapshot_id)).problems
    assert any(
        p.startswith("hash: ")
        and p.endswith("/records/part-00001.parquet differs from the manifest (sha256)")
        for p in problems
    ), problems
    assert any(
        p.startswith("rows: records/part-00001.parquet: not a readable Parquet file") for p in problems
    ), problems
    assert not any("nothing published" in p for p in problems)  # it was published; verify says what is wrong
