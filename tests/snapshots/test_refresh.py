"""Going forward: a snapshot in debt cannot train a new model; ``snapshot refresh`` removes the debt.

The demo scenario (a model registered on a stale snapshot is refused with the count; the refresh
holds none of those members; the model registers on it; the override path records its reason), and
for random histories: refresh(S, T) holds exactly the rows of build(T) among the rows of S, and a
(member, category) in debt at T never appears in S′.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import DebtOutstanding, InputError, ProofError
from consentgate.ledger.events import Source
from consentgate.ledger.store import Ledger
from consentgate.objections import file_objection
from consentgate.policy import load_timeline
from consentgate.snapshots.build import BuildResult
from consentgate.snapshots.debt import snapshot_debt
from consentgate.snapshots.refresh import RefreshRequest, RefreshResult, refresh_snapshot
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.training_runs import register_trained_model
from consentgate.snapshots.verify import verify_snapshot
from consentgate.taxonomy import load_taxonomy
from tests.conftest import FixedClock, at, set_setting
from tests.helpers import cg, ok, one_error_line
from tests.snapshots.conftest import MakeNetwork, build, openlineage_events
from tests.snapshots.histories import (
    LATER_EVENT,
    REFRESH_AT,
    apply_later,
    check_refresh_matches_build,
    random_network,
    rows,
)
from tests.snapshots.histories import T as HISTORIES_T

LATER = "2025-12-01T00:00:00Z"


def refresh(ledger: Ledger, engine: DecisionEngine, snapshot_id: str, as_of: str, out: Path) -> RefreshResult:
    return refresh_snapshot(
        RefreshRequest(snapshot_id=snapshot_id, as_of=at(as_of), events_dir=out.parent / "events"),
        ledger=ledger,
        engine=engine,
    )


def test_the_demo_scenario_refused_refreshed_registered_and_overridden(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    ledger = sqlite_ledger
    net = make_network(ledger)
    out = tmp_path / "out"
    stale = build(ledger, engine, net.root, out)
    in_stale = set(pq.read_table(stale.path / "members.parquet")["member_id"].to_pylist())
    quitter, objector, adult = net.ids["eea_adult"], net.ids["row_adult"], net.ids["uk_adult"]
    planned = net.ids["eea_optout_after"]  # opted out effective 10 November, recorded before S
    assert {quitter, objector, adult, planned} <= in_stale
    set_setting(ledger, quitter, "genai_improvement", False, "2025-11-20T00:00:00Z")
    file_objection(
        ledger,
        engine.taxonomy,
        member_id=objector,
        purposes=["genai.training"],
        at=at("2025-11-21T00:00:00Z"),
        source=Source.import_,
    )

    # Registered on the stale snapshot after the opt-outs: refused, with the count and both ways out.
    with pytest.raises(DebtOutstanding) as refused:
        register_trained_model(
            ledger, engine, "genai-2026-01", [stale.snapshot_id], trained_at=at(LATER), actor="test"
        )
    assert refused.value.count == 3
    message = str(refused.value)
    assert "3 members" in message and f"member {planned} (setting_off since 2025-11-10" in message
    assert f"consentgate snapshot refresh {stale.snapshot_id} --as-of 2025-12-01T00:00:00Z" in message
    assert "--accept-debt REASON" in message
    assert Registry(ledger).get_model("genai-2026-01") is None
    # Trained before the opt-outs it owes nothing but the opt-out planned before the build.
    early = register_trained_model(
        ledger,
        engine,
        "genai-2025-11",
        [stale.snapshot_id],
        trained_at=at("2025-11-05T00:00:00Z"),
        actor="test",
    )
    assert early.created and early.model.override is None

    # The refresh: the same rows less the three members' records, derived from S.
    fresh = refresh(ledger, engine, stale.snapshot_id, LATER, out)
    manifest = fresh.build.manifest
    assert manifest["derived_from"]["snapshot_id"] == stale.snapshot_id
    assert manifest["derived_from"]["records_as_of"] == stale.manifest["as_of"]
    assert manifest["debt_removed"]["members"] == 3
    assert manifest["debt_removed"]["by_reason"] == {
        "objection_pending": {"members": 1, "records": fresh_records(stale, objector)},
        "setting_off": {"members": 2, "records": fresh_records(stale, quitter, planned)},
    }
    kept = rows(fresh.build.path)
    assert not {quitter, objector, planned} & set(kept["member_id"].to_pylist())
    before = rows(stale.path)
    same = before.filter(pc.invert(pc.is_in(before["member_id"], pa.array([quitter, objector, planned]))))
    assert kept.equals(same)  # every other row, in order, value for value
    assert verify_snapshot(Registry(ledger).require(fresh.snapshot_id)).ok
    assert Registry(ledger).require(fresh.snapshot_id).derived_from == stale.snapshot_id
    [complete] = [
        e for e in openlineage_events(out) if e["eventType"] == "COMPLETE" and "refresh" in str(e["job"])
    ]
    assert json.dumps(complete["inputs"]).count(stale.snapshot_id) == 1

    # Registration on S′ at the same time succeeds; its debt is empty.
    registered = register_trained_model(
        ledger, engine, "genai-2026-01", [fresh.snapshot_id], trained_at=at(LATER), actor="test"
    )
    assert registered.created and registered.model.override is None
    [debt] = snapshot_debt(ledger, engine, [Registry(ledger).require(fresh.snapshot_id)], at=at(LATER))
    assert debt.empty

    # The override: recorded with its reason, who, and every member it covers.
    forced = register_trained_model(
        ledger,
        engine,
        "genai-forced",
        [stale.snapshot_id],
        trained_at=at(LATER),
        accept_debt="legal hold: retraining ordered by case 12",
        actor="dpo:erika",
    )
    assert forced.model.override is not None
    assert (forced.model.override.reason, forced.model.override.by) == (
        "legal hold: retraining ordered by case 12",
        "dpo:erika",
    )
    assert forced.model.override.members == 3
    covered = Registry(ledger).overridden(model="genai-forced")
    assert sorted(m.member_id for _, m in covered) == sorted([quitter, objector, planned])
    assert {m.reason for _, m in covered} == {"setting_off", "objection_pending"}


def fresh_records(snapshot: BuildResult, *members: int) -> int:
    table = pq.read_table(snapshot.path / "members.parquet")
    return sum(r["records"] for r in table.to_pylist() if r["member_id"] in members)


def test_refresh_refuses_a_tampered_source_an_earlier_instant_and_publishes_nothing(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(sqlite_ledger)
    out = tmp_path / "out"
    stale = build(sqlite_ledger, engine, net.root, out)
    with pytest.raises(InputError, match=r"is before .* as-of"):
        refresh(sqlite_ledger, engine, stale.snapshot_id, "2025-11-01T00:00:00Z", out)
    part = stale.path / "records" / "part-00000.parquet"
    table = pq.read_table(part)
    pq.write_table(table.slice(1), part)
    with pytest.raises(ProofError, match="differs from its manifest"):
        refresh(sqlite_ledger, engine, stale.snapshot_id, LATER, out)
    assert [e.snapshot_id for e in Registry(sqlite_ledger).snapshots()] == [stale.snapshot_id]
    assert sorted(p.name for p in out.iterdir()) == sorted(["openlineage.jsonl", stale.snapshot_id])


def test_model_register_and_refresh_through_the_cli(tmp_path: Path, make_network: MakeNetwork) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url, clock=FixedClock(), initialise=True)
    try:
        net = make_network(ledger)
        engine = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))
        stale = build(ledger, engine, net.root, tmp_path / "out")
        set_setting(ledger, net.ids["eea_adult"], "genai_improvement", False, "2025-11-20T00:00:00Z")
    finally:
        ledger.close()
    refused = cg(
        url, "model", "register", "m1", "--snapshot", stale.snapshot_id, "--trained-at", LATER, cwd=tmp_path
    )
    assert refused.returncode == 2
    line = one_error_line(refused)
    assert "model m1 not registered" in line and "2 members" in line
    made = json.loads(
        ok(cg(url, "snapshot", "refresh", stale.snapshot_id, "--as-of", LATER, "--json", cwd=tmp_path))
    )
    assert made["debt_removed"]["members"] == 2
    assert "registered" in ok(
        cg(
            url,
            "model",
            "register",
            "m1",
            "--snapshot",
            made["snapshot_id"],
            "--trained-at",
            LATER,
            cwd=tmp_path,
        )
    )
    forced = ok(
        cg(
            url,
            "model",
            "register",
            "m2",
            "--snapshot",
            stale.snapshot_id,
            "--trained-at",
            LATER,
            "--accept-debt",
            "audit sample",
            cwd=tmp_path,
        )
    )
    assert "OVERRIDE recorded" in forced and "2 members" in forced and "audit sample" in forced
    listed = json.loads(ok(cg(url, "model", "list", "--json", cwd=tmp_path)))
    by_name = {m["name"]: m for m in listed}
    assert by_name["m1"]["override"] is None
    assert by_name["m2"]["override"]["reason"] == "audit sample"
    assert by_name["m2"]["trained_at"].startswith("2025-12-01")


# -- random histories -----------------------------------------------------------------------------

ENGINE = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), later=st.lists(LATER_EVENT, max_size=10), when=REFRESH_AT)
def test_refresh_equals_a_build_restricted_to_the_source_for_random_histories(
    seed: int, later: list[tuple[str, int, str, str]], when: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        ledger = Ledger.open(f"sqlite:///{root / 'ledger.db'}", clock=FixedClock(), initialise=True)
        try:
            random_network(ledger, root / "net", seed, "genai.training")
            stale = build(ledger, ENGINE, root / "net", root / "out", as_of=HISTORIES_T)
            apply_later(ledger, later)
            fresh = refresh(ledger, ENGINE, stale.snapshot_id, when, root / "out")
            check_refresh_matches_build(ledger, ENGINE, root / "net", stale, fresh, root / "full")
        finally:
            ledger.close()
