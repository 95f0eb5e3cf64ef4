"""Random networks and histories for the engine and refresh tests (seeded, or drawn by Hypothesis)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.commands import fact_draft
from consentgate.ledger.events import Source
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, file_objection
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.refresh import RefreshResult
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.verify import verify_snapshot
from consentgate.taxonomy import load_taxonomy
from tests.conftest import at, register, set_setting

T = "2025-11-04T00:00:00Z"
T_OCT = "2025-10-01T00:00:00Z"
IMPORT = Source.import_
SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("member_id", pa.int64()),
        ("category", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("payload", pa.string()),
        ("score", pa.float64()),
        ("flag", pa.bool_()),
        ("n", pa.int64()),
        ("seen_at", pa.timestamp("us", tz="UTC")),
    ]
)


def random_network(ledger: Ledger, root: Path, seed: int, purpose: str) -> None:
    """A seeded random network: members, settings (ties included), objections, records in two files."""
    rng = random.Random(seed)
    taxonomy = load_taxonomy()
    instants = [at(x) for x in (T_OCT, T, "2025-09-01", "2026-02-28", "2026-03-01", "2025-11-10")]
    birthdays = [None, "1980-01-01", "2007-11-04", "2007-11-05", "2008-02-29", "2008-02-28", "2008-03-01"]
    countries = ["DE", "FR", "IT", "GB", "US", "BR", "CN", "CA", "HK", "CH", "IN"]
    keys = ["genai_improvement", "ads_affiliate_sharing", "ads_connections", "ads_interests_traits"]
    member_ids = list(range(1, 41))
    for member_id in member_ids:
        birth = rng.choice(birthdays)
        register(
            ledger,
            member_id,
            rng.choice(countries),
            birth_date=birth,
            believed_minor=rng.choice([None, True, False]) if birth is None else None,
        )
        for _ in range(rng.randrange(3)):
            change = rng.choice(instants).isoformat()
            set_setting(ledger, member_id, rng.choice(keys), rng.random() < 0.5, change)
        if rng.random() < 0.2:
            [status] = file_objection(
                ledger, taxonomy, member_id=member_id, purposes=[purpose], at=at("2025-09-15"), source=IMPORT
            )
            if status.decision is None and rng.random() < 0.7:  # direct marketing: upheld at once
                when = rng.choice([instants[0], instants[1], instants[5]])
                decide_objection(
                    ledger, reference=status.reference, uphold=rng.random() < 0.5, reason="r", at=when
                )
    categories = [*sorted(taxonomy.categories), "x.unknown", None]
    string_ids = seed % 2 == 0
    rows = []
    for i in range(300):
        created = rng.choice(instants) + timedelta(microseconds=rng.choice([0, 0, -1, 1]))
        rows.append(
            {
                "record_id": f"r{i:04d}" if string_ids else i * 13 % 1000,
                "member_id": rng.choice([*member_ids, 777, 778]),
                "category": rng.choice(categories),
                "created_at": created,
                "payload": f"p{rng.random()}",
                "score": rng.random(),
                "flag": rng.random() < 0.5,
                "n": rng.randrange(-(2**62), 2**62),
                "seen_at": created,
                "day": date(2000, 1, 1) + timedelta(days=rng.randrange(9000)),
            }
        )
    schema = SCHEMA.set(0, pa.field("record_id", pa.string() if string_ids else pa.int64()))
    schema = schema.append(pa.field("day", pa.date32()))
    (root / "records").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:170], schema=schema), root / "records" / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[170:], schema=schema), root / "records" / "b.parquet")


# -- what happens after a snapshot ----------------------------------------------------------------

LATER_KEYS = ["genai_improvement", "ads_affiliate_sharing", "ads_connections"]
LATER_EVENT = st.tuples(
    st.sampled_from(["on", "off", "object", "uphold", "minor", "move", "backdate_off"]),
    st.integers(1, 40),
    st.sampled_from(LATER_KEYS),
    st.sampled_from(["2025-11-10T00:00:00Z", "2025-12-24T00:00:00Z", "2026-03-01T00:00:00Z"]),
)
"""(change, member, setting, effective): opt-ins and opt-outs, objections (pending or upheld),
"believed minor" signals, moves to an excluded region, opt-outs recorded later but back-dated."""
REFRESH_AT = st.sampled_from(["2025-11-04T00:00:00Z", "2025-12-24T00:00:00Z", "2026-03-01T00:00:00Z"])


def apply_later(
    ledger: Ledger, events: list[tuple[str, int, str, str]], purpose: str = "genai.training"
) -> None:
    taxonomy = load_taxonomy()
    for kind, member, key, when in events:
        if kind in ("on", "off"):
            set_setting(ledger, member, key, kind == "on", when)
        elif kind == "backdate_off":  # recorded after the snapshot, effective before its as-of
            set_setting(ledger, member, key, False, "2025-10-20T00:00:00Z")
        elif kind in ("object", "uphold"):
            [status, *_] = file_objection(
                ledger, taxonomy, member_id=member, purposes=[purpose], at=at(when), source=IMPORT
            )
            if kind == "uphold" and status.decision is None:
                decide_objection(ledger, reference=status.reference, uphold=True, reason="r", at=at(when))
        else:
            key, value = ("believed_minor", "true") if kind == "minor" else ("country", "CN")
            ledger.append(
                [fact_draft(member_id=member, key=key, value=value, at=at(when), source=IMPORT, actor="t")]
            )


def rows(path: Path) -> pa.Table:
    """A snapshot's record files, concatenated in file order."""
    return pa.concat_tables(pq.read_table(p) for p in sorted((path / "records").glob("*.parquet")))


def record_ids(path: Path) -> set[object]:
    return set(rows(path)["record_id"].to_pylist())


def check_refresh_matches_build(
    ledger: Ledger, engine: DecisionEngine, data: Path, stale: BuildResult, fresh: RefreshResult, out: Path
) -> None:
    """refresh(S, T) == build(T) restricted to S's records, value for value; nothing in debt survives."""
    full = build_snapshot(
        BuildRequest(
            data=data,
            purpose=stale.manifest["purpose"],
            as_of=at(fresh.build.manifest["as_of"]),
            out=out,
            events_dir=out.parent / "events",
        ),
        ledger=ledger,
        engine=engine,
    )
    in_stale = record_ids(stale.path)
    assert record_ids(fresh.build.path) == {r for r in record_ids(full.path) if r in in_stale}
    by_id = {r["record_id"]: r for r in rows(full.path).to_pylist()}
    kept = rows(fresh.build.path).to_pylist()
    for row in kept:
        assert row == by_id[row["record_id"]]
    removed = {(m.member_id, c) for m in fresh.removed for c in m.categories}
    assert not removed & {(r["member_id"], r["category"]) for r in kept}
    assert verify_snapshot(Registry(ledger).require(fresh.snapshot_id)).ok
