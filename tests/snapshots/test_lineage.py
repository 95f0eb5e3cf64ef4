"""The lineage registry: ``snapshot list|show|verify``, ``model register``, ``lineage member|debt``."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from consentgate.cli import app
from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import ConflictError, NotFoundError
from consentgate.ledger.events import Source
from consentgate.ledger.store import Ledger
from consentgate.objections import file_objection
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.lineage import member_lineage, model_debt, objection_debt
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.verify import verify_snapshot
from consentgate.taxonomy import Taxonomy
from tests.conftest import FixedClock, at, set_setting
from tests.snapshots.conftest import MakeNetwork, Network

T = "2025-11-04T00:00:00Z"
TRAINED = ("--trained-at", "2025-11-05T00:00:00Z")  # before every opt-out the networks plan


def build(ledger: Ledger, engine: DecisionEngine, net: Network, out: Path, purpose: str) -> BuildResult:
    request = BuildRequest(
        data=net.root, purpose=purpose, as_of=at(T), out=out, events_dir=out.parent / "events"
    )
    return build_snapshot(request, ledger=ledger, engine=engine)


@dataclass
class Built:
    url: str
    ledger: Ledger
    net: Network
    genai: BuildResult
    ads: BuildResult


@pytest.fixture
def built(tmp_path: Path, engine: DecisionEngine, make_network: MakeNetwork) -> Iterator[Built]:
    """A SQLite ledger with the network and two snapshots (genai.training and ads.personalization)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url, clock=FixedClock(), initialise=True)
    net = make_network(ledger)
    genai = build(ledger, engine, net, tmp_path / "out", "genai.training")
    ads = build(ledger, engine, net, tmp_path / "out", "ads.personalization")
    yield Built(url, ledger, net, genai, ads)
    ledger.close()


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--db", url, *args], catch_exceptions=True)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def snapshot_counts(path: Path, member_id: int) -> dict[str, int]:
    rows = pq.read_table(path / "records", columns=["member_id", "category"]).to_pylist()
    return dict(sorted(Counter(r["category"] for r in rows if r["member_id"] == member_id).items()))


# -- snapshot list / show / verify ----------------------------------------------------------------


def test_snapshot_list_and_show(built: Built) -> None:
    listed = json.loads(ok(cli(built.url, "snapshot", "list", "--json")))
    assert sorted(e["snapshot_id"] for e in listed) == sorted(
        [built.genai.snapshot_id, built.ads.snapshot_id]
    )
    [genai] = [e for e in listed if e["purpose"] == "genai.training"]
    counts = built.genai.manifest["counts"]
    assert genai["records"] == counts["records_included"]
    assert genai["members"] == counts["members_included"]
    assert genai["watermark"] == built.net.head
    assert genai["path"] == str(built.genai.path.resolve())
    only_ads = json.loads(
        ok(cli(built.url, "snapshot", "list", "--purpose", "ads.personalization", "--json"))
    )
    assert [e["snapshot_id"] for e in only_ads] == [built.ads.snapshot_id]

    shown = json.loads(ok(cli(built.url, "snapshot", "show", built.genai.snapshot_id)))
    assert shown["manifest"] == built.genai.manifest
    assert shown["registered"]["snapshot_id"] == built.genai.snapshot_id
    missing = cli(built.url, "snapshot", "show", "nope")
    assert isinstance(missing.exception, NotFoundError)


def test_snapshot_verify_detects_every_change(built: Built) -> None:
    """A changed byte in a records file, a removed file, an added file and an edited manifest all fail."""
    entry = Registry(built.ledger).require(built.genai.snapshot_id)
    assert verify_snapshot(entry).ok
    assert "files match the manifest" in ok(cli(built.url, "snapshot", "verify", entry.snapshot_id))
    path = entry.path
    part = path / "records" / "part-00000.parquet"
    original = part.read_bytes()

    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    part.write_bytes(bytes(changed))
    assert verify_snapshot(entry).problems == [f"hash: {part} differs from the manifest (sha256)"]
    failed = cli(built.url, "snapshot", "verify", entry.snapshot_id)
    assert failed.exit_code == 1
    assert "differs from the manifest" in failed.stdout
    part.write_bytes(original)
    assert verify_snapshot(entry).ok

    lineage = path / "members.parquet"
    kept = lineage.read_bytes()
    lineage.unlink()
    assert verify_snapshot(entry).problems == [f"hash: {lineage} is missing"]
    lineage.write_bytes(kept)

    extra = path / "records" / "part-00099.parquet"
    shutil.copy(part, extra)
    assert verify_snapshot(entry).problems == [f"hash: {extra} is not listed in the manifest"]
    extra.unlink()

    manifest = path / "manifest.json"
    body = manifest.read_text()
    data = json.loads(body)
    data["counts"]["records_included"] += 1
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    problems = verify_snapshot(entry).problems
    assert problems[0] == f"manifest: {manifest} changed since the snapshot was registered"
    # The edited count is also re-derived from the files, the lineage and the registry.
    assert any(p.startswith("counts: the record files hold") for p in problems[1:])
    assert any(p.startswith("counts: the registry records") for p in problems[1:])
    manifest.write_text(body)
    assert verify_snapshot(entry).ok


# -- models -------------------------------------------------------------------------------------


def test_model_register_is_idempotent_and_refuses_conflicts_and_unknown_snapshots(built: Built) -> None:
    genai, ads = built.genai.snapshot_id, built.ads.snapshot_id
    first = ok(
        cli(built.url, "model", "register", "assistant-v1", "--snapshot", genai, "--note", "run 1", *TRAINED)
    )
    assert f"model assistant-v1 registered: trained on {genai}" in first
    again = ok(cli(built.url, "model", "register", "assistant-v1", "--snapshot", genai, *TRAINED))
    assert "already registered" in again
    registry = Registry(built.ledger)
    model, created = registry.register_model("assistant-v1", [genai, genai], at=at(T))
    assert not created and model.snapshot_ids == (genai,) and model.note == "run 1"

    with pytest.raises(ConflictError, match="already registered with snapshots"):
        registry.register_model("assistant-v1", [genai, ads], at=at(T))
    conflict = cli(built.url, "model", "register", "assistant-v1", "--snapshot", ads, *TRAINED)
    assert isinstance(conflict.exception, ConflictError)
    with pytest.raises(NotFoundError, match="no snapshot 'nope' is registered"):
        registry.register_model("assistant-v2", [genai, "nope"], at=at(T))
    assert registry.get_model("assistant-v2") is None
    assert [(m.name, m.snapshot_ids) for m in registry.models()] == [("assistant-v1", (genai,))]


def test_lineage_member_lists_snapshots_models_and_category_counts(built: Built) -> None:
    registry = Registry(built.ledger)
    registry.register_model("assistant-v1", [built.genai.snapshot_id], at=at(T))
    registry.register_model("ads-v1", [built.ads.snapshot_id, built.genai.snapshot_id], at=at(T))
    member = built.net.ids["uk_adult"]
    found = json.loads(ok(cli(built.url, "lineage", "member", str(member), "--json")))
    assert found["member_id"] == member
    by_id = {s["snapshot_id"]: s for s in found["snapshots"]}
    assert set(by_id) == {built.genai.snapshot_id, built.ads.snapshot_id}
    for result in (built.genai, built.ads):
        expected = snapshot_counts(result.path, member)
        assert expected  # the member has data in both
        assert by_id[result.snapshot_id]["categories"] == expected
        assert by_id[result.snapshot_id]["records"] == sum(expected.values())
    assert by_id[built.genai.snapshot_id]["models"] == ["ads-v1", "assistant-v1"]
    assert by_id[built.ads.snapshot_id]["models"] == ["ads-v1"]
    assert found["models"] == ["ads-v1", "assistant-v1"]

    minor = built.net.ids["eea_minor"]
    assert member_lineage(registry, minor).snapshots == []
    assert "no registered snapshot holds their data" in ok(cli(built.url, "lineage", "member", str(minor)))


# -- objection debt -----------------------------------------------------------------------------


def test_objection_debt_of_a_snapshot_and_of_a_model(
    ledger: Ledger,
    engine: DecisionEngine,
    taxonomy: Taxonomy,
    make_network: MakeNetwork,
    tmp_path: Path,
) -> None:
    """After the build: an opt-out effective after T and an objection by members in S are debt, with
    their effective times; so is a back-dated opt-out recorded after W (and an opt-out recorded before
    the build but effective after T); an opt-out of a member not in S and an ads setting (not governing
    genai) are not; neither is an objection rejected before T."""
    net = make_network(ledger)
    snapshot = build(ledger, engine, net, tmp_path / "out", "genai.training")
    ads = build(ledger, engine, net, tmp_path / "out", "ads.personalization")
    registry = Registry(ledger)
    in_s = set(pq.read_table(snapshot.path / "members.parquet")["member_id"].to_pylist())
    ids = net.ids
    opt_out, objector, backdated = ids["eea_adult"], ids["row_adult"], ids["ca_adult"]
    planned = ids["eea_optout_after"]  # its opt-out effective 10 November was recorded before the build
    outsider, ads_changer = ids["eea_minor"], ids["uk_adult"]
    assert {opt_out, objector, backdated, planned, ads_changer, ids["row_objection_rejected"]} <= in_s
    assert outsider not in in_s

    set_setting(ledger, opt_out, "genai_improvement", False, "2025-11-10T00:00:00Z")
    [objection] = file_objection(
        ledger,
        taxonomy,
        member_id=objector,
        purposes=["genai.training"],
        at=at("2025-11-12T00:00:00Z"),
        source=Source.import_,
    )
    set_setting(ledger, outsider, "genai_improvement", False, "2025-11-10T00:00:00Z")
    set_setting(ledger, ads_changer, "ads_connections", False, "2025-11-10T00:00:00Z")
    set_setting(ledger, backdated, "genai_improvement", False, "2025-11-01T00:00:00Z")  # after W, before T

    events = tmp_path / "events"
    debts = objection_debt(ledger, engine, [registry.require(snapshot.snapshot_id)], events_dir=events)
    got = [(d.member_id, d.what, d.detail, d.effective_at, d.snapshot_id) for d in debts]
    assert got == [
        (backdated, "setting_off", "genai_improvement", at("2025-11-01"), snapshot.snapshot_id),
        (opt_out, "setting_off", "genai_improvement", at("2025-11-10"), snapshot.snapshot_id),
        (planned, "setting_off", "genai_improvement", at("2025-11-10"), snapshot.snapshot_id),
        (objector, "objection_pending", objection.reference, at("2025-11-12"), snapshot.snapshot_id),
    ]

    registry.register_model("assistant-v1", [snapshot.snapshot_id], at=at(T))
    assert [
        (d.member_id, d.effective_at) for d in model_debt(ledger, engine, "assistant-v1", events_dir=events)
    ] == [(d[0], d[3]) for d in got]
    # A model trained on the ads snapshot too owes the ads opt-out of a member in that snapshot.
    assert ads_changer in set(pq.read_table(ads.path / "members.parquet")["member_id"].to_pylist())
    registry.register_model("both", [snapshot.snapshot_id, ads.snapshot_id], at=at(T))
    both = {
        d.member_id: (d.snapshot_id, d.detail) for d in model_debt(ledger, engine, "both", events_dir=events)
    }
    assert both[ads_changer] == (ads.snapshot_id, "ads_connections")
    assert {backdated, opt_out, planned, objector} <= set(both)
    assert outsider not in both
    with pytest.raises(NotFoundError):
        model_debt(ledger, engine, "nope", events_dir=events)


def test_lineage_debt_through_the_cli(built: Built) -> None:
    member, planned = built.net.ids["eea_adult"], built.net.ids["eea_optout_after"]
    set_setting(built.ledger, member, "genai_improvement", False, "2025-11-11T00:00:00Z")
    ok(cli(built.url, "model", "register", "assistant-v1", "--snapshot", built.genai.snapshot_id, *TRAINED))
    for option in (("--snapshot", built.genai.snapshot_id), ("--model", "assistant-v1")):
        debts = json.loads(ok(cli(built.url, "lineage", "debt", *option, "--json")))
        assert [(d["member_id"], d["what"], d["detail"], d["effective_at"]) for d in debts] == [
            (planned, "setting_off", "genai_improvement", "2025-11-10T00:00:00Z"),
            (member, "setting_off", "genai_improvement", "2025-11-11T00:00:00Z"),
        ]
    text = ok(cli(built.url, "lineage", "debt", "--snapshot", built.genai.snapshot_id))
    assert "2 members have since opted out or objected" in text
    both = cli(built.url, "lineage", "debt", "--snapshot", built.genai.snapshot_id, "--model", "assistant-v1")
    assert "exactly one of --snapshot S or --model NAME" in str(both.exception)
