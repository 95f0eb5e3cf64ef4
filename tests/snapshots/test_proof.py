"""``snapshot prove``: a member-level proof that agrees with ``decide()``; it lists what does not check."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from consentgate.cli import app
from consentgate.decisions.engine import DecisionEngine, decide
from consentgate.exceptions import NotFoundError
from consentgate.ledger.events import EventKind
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import BuildResult
from consentgate.snapshots.proof import MemberProof, prove_member
from consentgate.snapshots.registry import Registry
from tests.conftest import at
from tests.snapshots.conftest import T_NEXT_DAY, UNKNOWN_MEMBERS, MakeNetwork, Network, build

T = T_NEXT_DAY
PURPOSE = "genai.training"
KEYS = {
    "format",
    "ok",
    "problems",
    "snapshot_id",
    "kind",
    "purpose",
    "as_of",
    "watermark",
    "hash_at_watermark",
    "manifest_sha256",
    "registered_manifest_sha256",
    "policy",
    "member_id",
    "region",
    "included",
    "records",
    "categories",
    "denied",
    "evidence",
}
EVIDENCE_KEYS = {
    "seq",
    "member_id",
    "kind",
    "key",
    "value",
    "effective_at",
    "effective_at_us",
    "recorded_at",
    "recorded_at_us",
    "source",
    "actor",
    "idempotency_key",
    "prev_hash",
    "hash",
    "digest",
    "digest_ok",
}


def prove(ledger: Ledger, engine: DecisionEngine, snapshot_id: str, member_id: int) -> MemberProof:
    return prove_member(
        registry=Registry(ledger), ledger=ledger, engine=engine, snapshot_id=snapshot_id, member_id=member_id
    )


def per_category(body: dict[str, Any]) -> dict[str, tuple[bool, str | None, list[dict[str, Any]], list[int]]]:
    """category → (allowed, legal basis, reasons, evidence seqs), from the listed and the grouped ones."""
    out: dict[str, tuple[bool, str | None, list[dict[str, Any]], list[int]]] = {}
    for c in body["categories"]:
        assert c["category"] not in out
        out[c["category"]] = (c["allowed"], c["legal_basis"], c["reasons"], c["evidence"])
    for group in body["denied"]:
        for category in group["categories"]:
            assert category not in out, f"{category} listed twice"
            reasons = [
                {**r, "message": r["message"].replace("{category}", category)} for r in group["reasons"]
            ]
            out[category] = (False, group["legal_basis"], reasons, group["evidence"])
    return out


def lineage_counts(snapshot: Path, member_id: int) -> dict[str, int]:
    rows = pq.read_table(snapshot / "members.parquet").to_pylist()
    return {str(r["category"]): int(r["records"]) for r in rows if r["member_id"] == member_id}


def codes(proof: MemberProof) -> list[str]:
    return [str(p.code) for p in proof.problems]


def tamper(ledger: Ledger, statement: str) -> None:
    """An attacker with write access to the database: lift the append-only guard, then edit."""
    with ledger.engine.begin() as conn:
        if ledger.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER events_no_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
        conn.execute(text(statement))


# -- agreement with decide() ------------------------------------------------------------------------


@pytest.mark.parametrize("older_watermark", [False, True], ids=["head", "older-watermark"])
def test_proof_agrees_with_decide_for_every_member(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    older_watermark: bool,
) -> None:
    """For every member (known, late, unknown), every category's decision in the proof is decide()'s at
    (T, W); the counts equal members.parquet and the input records decide() allows; the proof is ok."""
    net = make_network(ledger)
    watermark = net.watermark_early if older_watermark else net.head
    result = build(ledger, engine, net.root, tmp_path / "out", watermark=watermark)
    manifest_sha = hashlib.sha256((result.path / "manifest.json").read_bytes()).hexdigest()
    members = sorted({*net.ids.values(), *UNKNOWN_MEMBERS})
    inputs: dict[int, Counter[str]] = {m: Counter() for m in members}
    for row in net.rows():
        member, category, created = row["member_id"], row["category"], row["created_at"]
        assert isinstance(member, int) and isinstance(category, str) and isinstance(created, datetime)
        if decide(
            engine, ledger, member, category, PURPOSE, at(T), watermark=watermark, created_at=created
        ).allowed:
            inputs[member][category] += 1
    seen_included = seen_excluded = 0
    for member in members:
        proof = prove(ledger, engine, result.snapshot_id, member)
        body = proof.to_dict()
        assert set(body) == KEYS
        assert body["ok"] is True and body["problems"] == [], body["problems"]
        assert (body["snapshot_id"], body["purpose"], body["as_of"]) == (result.snapshot_id, PURPOSE, T)
        assert body["watermark"] == watermark
        assert (
            body["hash_at_watermark"]
            == ledger.hash_at(watermark)
            == result.manifest["ledger"]["hash_at_watermark"]
        )
        assert body["manifest_sha256"] == body["registered_manifest_sha256"] == manifest_sha
        assert body["policy"] == result.manifest["policy"]

        decided = per_category(body)
        assert set(decided) == set(engine.taxonomy.categories)
        for category, (allowed, basis, reasons, evidence) in decided.items():
            expected = decide(engine, ledger, member, category, PURPOSE, at(T), watermark=watermark)
            assert allowed == expected.allowed, (member, category)
            assert basis == expected.legal_basis, (member, category)
            assert reasons == [r.to_dict() for r in expected.reasons], (member, category)
            assert evidence == [e.seq for e in expected.evidence], (member, category)

        counts = {c["category"]: c["records"] for c in body["categories"] if c["records"]}
        assert counts == lineage_counts(result.path, member) == dict(inputs[member])
        assert body["included"] is bool(counts)
        assert body["records"] == sum(counts.values())
        assert all(decided[c][0] for c in counts)
        # Only allowed or present categories are listed one by one; the rest are grouped.
        assert all(c["allowed"] or c["records"] for c in body["categories"])

        stored = {e.seq: e for e in ledger.member_events(member, watermark=watermark)}
        cited = {r["seq"] for _, _, reasons, _ in decided.values() for r in reasons if "seq" in r}
        listed = {e["seq"]: e for e in body["evidence"]}
        assert cited <= set(listed)
        for seq, item in listed.items():
            assert set(item) == EVIDENCE_KEYS
            assert seq <= watermark and item["member_id"] == member
            assert (item["hash"], item["prev_hash"], item["value"]) == (
                stored[seq].hash,
                stored[seq].prev_hash,
                stored[seq].value,
            )
            assert item["digest"] == item["hash"] and item["digest_ok"] is True
        if body["included"]:
            seen_included += 1
        else:
            seen_excluded += 1
    assert seen_included >= 5 and seen_excluded >= 5  # the network has both kinds


def test_an_unknown_member_is_a_reasoned_no_not_an_error(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(ledger)
    result = build(ledger, engine, net.root, tmp_path / "out")
    proof = prove(ledger, engine, result.snapshot_id, 424242)
    body = proof.to_dict()
    assert body["ok"] is True and body["included"] is False and body["categories"] == []
    [group] = body["denied"]
    assert group["categories"] == list(engine.taxonomy.categories)
    assert [r["code"] for r in group["reasons"]] == ["unknown_member"]
    assert body["evidence"] == [] and body["region"] is None


def test_an_unknown_snapshot_is_not_found(ledger: Ledger, engine: DecisionEngine) -> None:
    with pytest.raises(NotFoundError, match="no snapshot 'nope' is registered"):
        prove(ledger, engine, "nope", 1)


# -- what does not check out ------------------------------------------------------------------------


@pytest.fixture
def sqlite_built(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> tuple[str, Ledger, Network, BuildResult]:
    """A snapshot on a SQLite ledger, and the ledger's URL for the command line."""
    net = make_network(sqlite_ledger)
    url = sqlite_ledger.engine.url.render_as_string(hide_password=False)
    return url, sqlite_ledger, net, build(sqlite_ledger, engine, net.root, tmp_path / "out")


def test_records_of_a_denied_category_are_an_inconsistency(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """A members.parquet rewritten to hold an opted-out member's records: changed file and a denied
    category with records, both listed; the member counts as included; the proof is not ok."""
    net = make_network(ledger)
    result = build(ledger, engine, net.root, tmp_path / "out")
    member = net.ids["row_optout_before"]
    assert not prove(ledger, engine, result.snapshot_id, member).included
    path = result.path / "members.parquet"
    table = pq.read_table(path)
    extra = pa.table(
        {
            "member_id": pa.array([member], pa.int64()),
            "category": ["profile.skills"],
            "records": pa.array([5], pa.int64()),
        }
    ).cast(table.schema)
    pq.write_table(pa.concat_tables([table, extra]), path)
    proof = prove(ledger, engine, result.snapshot_id, member)
    assert codes(proof) == ["lineage_changed", "records_not_allowed"]
    assert "5 profile.skills records" in proof.problems[1].message
    assert "setting_off(seq=" in proof.problems[1].message
    body = proof.to_dict()
    assert body["ok"] is False and body["included"] is True and body["records"] == 5
    [skills] = [c for c in body["categories"] if c["category"] == "profile.skills"]
    assert (skills["records"], skills["allowed"]) == (5, False)
    # Another member of the same file is untouched, but the file's digest no longer matches.
    other = prove(ledger, engine, result.snapshot_id, net.ids["eea_adult"])
    assert codes(other) == ["lineage_changed"]


def test_a_changed_manifest_is_reported_not_used(
    sqlite_built: tuple[str, Ledger, Network, BuildResult], engine: DecisionEngine
) -> None:
    _, ledger, net, result = sqlite_built
    path = result.path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["ledger"]["watermark"] = 1
    path.write_text(json.dumps(manifest))
    proof = prove(ledger, engine, result.snapshot_id, net.ids["eea_adult"])
    assert codes(proof) == ["manifest_changed", "manifest_disagrees"]
    assert "ledger.watermark is 1" in proof.problems[1].message
    body = proof.to_dict()
    assert body["manifest_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert body["registered_manifest_sha256"] != body["manifest_sha256"]
    assert body["watermark"] == net.head  # the registry's W decides, not the edited manifest's


def test_a_missing_manifest_or_lineage_file_is_a_problem(
    sqlite_built: tuple[str, Ledger, Network, BuildResult], engine: DecisionEngine
) -> None:
    _, ledger, net, result = sqlite_built
    (result.path / "members.parquet").unlink()
    assert codes(prove(ledger, engine, result.snapshot_id, net.ids["eea_adult"])) == ["lineage_missing"]
    (result.path / "manifest.json").unlink()
    assert codes(prove(ledger, engine, result.snapshot_id, net.ids["eea_adult"])) == [
        "manifest_missing",
        "lineage_missing",
    ]


def test_an_edited_evidence_event_is_found(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """The event a "no" rests on, edited in the database: its recomputed digest no longer matches."""
    net = make_network(ledger)
    result = build(ledger, engine, net.root, tmp_path / "out")
    member = net.ids["row_optout_before"]
    [event] = [
        e
        for e in ledger.member_events(member)
        if e.kind == EventKind.setting_changed and e.key == "genai_improvement"
    ]
    tamper(ledger, f"UPDATE events SET actor = 'someone else' WHERE seq = {event.seq}")
    proof = prove(ledger, engine, result.snapshot_id, member)
    assert codes(proof) == ["evidence_changed"]
    assert f"seq {event.seq}" in proof.problems[0].message
    [item] = [e for e in proof.to_dict()["evidence"] if e["seq"] == event.seq]
    assert item["digest_ok"] is False and item["actor"] == "someone else"


# -- the command ------------------------------------------------------------------------------------


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--db", url, *args], catch_exceptions=True)


def test_cli_prove_json_and_human_output(
    sqlite_built: tuple[str, Ledger, Network, BuildResult], engine: DecisionEngine
) -> None:
    url, ledger, net, result = sqlite_built
    member = net.ids["eea_adult"]
    done = cli(url, "snapshot", "prove", result.snapshot_id, "--member", str(member), "--json")
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert set(body) == KEYS
    assert body == prove(ledger, engine, result.snapshot_id, member).to_dict()
    assert body["included"] is True and body["ok"] is True

    human = cli(url, "snapshot", "prove", result.snapshot_id, "--member", str(member))
    assert human.exit_code == 0, human.output
    assert f"member {member}: INCLUDED in {result.snapshot_id}" in human.stdout
    assert "profile.skills" in human.stdout and "setting_default_on" in human.stdout
    assert "not used" in human.stdout and "category_never_used" in human.stdout
    assert "ok: every check passed" in human.stdout

    excluded = cli(
        url, "snapshot", "prove", result.snapshot_id, "--member", str(net.ids["row_optout_before"])
    )
    assert excluded.exit_code == 0
    assert "NOT INCLUDED" in excluded.stdout and "setting_off(seq=" in excluded.stdout


def test_cli_prove_exits_2_when_the_proof_does_not_check_out(
    sqlite_built: tuple[str, Ledger, Network, BuildResult],
) -> None:
    url, _, net, result = sqlite_built
    path = result.path / "manifest.json"
    path.write_bytes(path.read_bytes() + b" ")
    member = str(net.ids["eea_adult"])
    failed = cli(url, "snapshot", "prove", result.snapshot_id, "--member", member, "--json")
    assert failed.exit_code == 2
    body = json.loads(failed.stdout)  # the proof is printed first, in full
    assert body["ok"] is False and [p["code"] for p in body["problems"]] == ["manifest_changed"]
    assert "does not check out" in failed.stderr and "manifest_changed" in failed.stderr
    human = cli(url, "snapshot", "prove", result.snapshot_id, "--member", member)
    assert human.exit_code == 2 and "PROBLEM manifest_changed" in human.stdout
    missing = cli(url, "snapshot", "prove", "nope", "--member", member)
    assert isinstance(missing.exception, NotFoundError)
