"""The demo's second half: a synthetic network, two gen-AI snapshots, a model and its objection debt.

The named members get a few records of their own, so their stories (Sophie's opt-out after the
change, Emma's upheld objection) show up in the snapshots and in the model's debt.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from consentgate.decisions import DecisionEngine
from consentgate.demo import PERSONAS
from consentgate.exceptions import DebtOutstanding
from consentgate.ledger.store import Ledger
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.lineage import Debt, model_debt
from consentgate.snapshots.refresh import RefreshRequest, RefreshResult, refresh_snapshot
from consentgate.snapshots.synth import RECORDS, SynthResult, synthesize
from consentgate.snapshots.training_runs import Registration, register_trained_model
from consentgate.timeutil import parse_instant

AS_OF = ("2025-10-01", "2025-11-04")
MODEL = "genai-2025-11"
NEXT_MODEL = "genai-2026-01"
NEXT_TRAINING = "2026-01-15"
"""The next training run: on the stale snapshot it is refused; on the refreshed one it registers."""
FIRST_SYNTH_MEMBER = 200_001
PERSONA_CATEGORIES = (
    "profile.skills",
    "content.posts",
    "messages.private",
    "groups.messages",
    "ai.interactions",
)


def persona_records(path: Path, *, first_record_id: int) -> int:
    """Records of the named members: some in categories used for training, one never used."""
    ids: list[int] = []
    members: list[int] = []
    categories: list[str] = []
    created: list[datetime] = []
    for persona in PERSONAS:
        for day, category in zip(
            ("2021-03-01", "2023-06-15", "2024-11-20", "2025-08-01", "2025-09-30"),
            PERSONA_CATEGORIES,
            strict=True,
        ):
            ids.append(first_record_id + len(ids))
            members.append(persona.member_id)
            categories.append(category)
            created.append(parse_instant(day))
    table = pa.table(
        {
            "record_id": ids,
            "member_id": members,
            "category": categories,
            "created_at": created,
            "payload": [f"{c} of member {m}" for c, m in zip(categories, members, strict=True)],
        },
        schema=RECORDS,
    )
    pq.write_table(table, path)
    return int(table.num_rows)


@dataclass
class Tour:
    network: SynthResult
    snapshots: list[BuildResult]
    debts: list[Debt]
    refused: DebtOutstanding | None = None
    """Registering NEXT_MODEL on the stale snapshot at NEXT_TRAINING (refused: its debt then)."""
    refreshed: RefreshResult | None = None
    next_model: Registration | None = None

    def by_region(self) -> list[tuple[str, list[int]]]:
        """Included records per region in each snapshot."""
        regions = sorted({r for s in self.snapshots for r in s.manifest["counts"]["by_region"]} - {"?"})
        return [
            (
                r,
                [
                    int(s.manifest["counts"]["by_region"].get(r, {}).get("included", 0))
                    for s in self.snapshots
                ],
            )
            for r in regions
        ]

    def by_reason(self) -> list[tuple[str, list[int]]]:
        reasons = sorted({k for s in self.snapshots for k in s.manifest["counts"]["excluded_by_reason"]})
        return [
            (k, [int(s.manifest["counts"]["excluded_by_reason"].get(k, 0)) for s in self.snapshots])
            for k in reasons
        ]

    def debt_kinds(self) -> Counter[str]:
        return Counter(d.what for d in self.debts)


def run_tour(
    ledger: Ledger,
    engine: DecisionEngine,
    folder: Path,
    *,
    members: int,
    records: int,
) -> Tour:
    network = folder / "network"
    result = synthesize(
        network,
        engine.taxonomy,
        members=members,
        records=records,
        seed=7,
        ledger=ledger,
        first_member_id=FIRST_SYNTH_MEMBER,
    )
    persona_records(network / "records" / "part-personas.parquet", first_record_id=result.records + 1)
    built = [
        build_snapshot(
            BuildRequest(
                data=network,
                purpose="genai.training",
                as_of=parse_instant(day),
                out=folder / "snapshots",
            ),
            ledger=ledger,
            engine=engine,
        )
        for day in AS_OF
    ]
    stale = built[-1]
    # Trained on the day of its snapshot: nothing owed then. Members opt out afterwards.
    register_trained_model(
        ledger, engine, MODEL, [stale.snapshot_id], trained_at=stale_as_of(stale), actor="demo", note="demo"
    )
    tour = Tour(result, built, model_debt(ledger, engine, MODEL))
    when = parse_instant(NEXT_TRAINING)
    try:
        register_trained_model(ledger, engine, NEXT_MODEL, [stale.snapshot_id], trained_at=when, actor="demo")
    except DebtOutstanding as refused:
        tour.refused = refused
    tour.refreshed = refresh_snapshot(
        RefreshRequest(stale.snapshot_id, as_of=when), ledger=ledger, engine=engine
    )
    tour.next_model = register_trained_model(
        ledger, engine, NEXT_MODEL, [tour.refreshed.snapshot_id], trained_at=when, actor="demo", note="demo"
    )
    return tour


def stale_as_of(result: BuildResult) -> datetime:
    return parse_instant(str(result.manifest["as_of"]))
