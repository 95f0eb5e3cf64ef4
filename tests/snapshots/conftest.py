"""A small network dataset with every case a snapshot must handle, loaded into a test ledger.

``make_network(ledger)`` writes ``tmp_path/net/{members.parquet,records/*.parquet}`` and appends the
members, their settings and objections to the ledger. The events come in two phases: ``early`` ones
(seq <= ``Network.watermark_early``) and ``late`` ones (recorded after that watermark, some of them
back-dated), so a build with the older watermark sees another state than one at the head.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.commands import fact_draft
from consentgate.ledger.events import Source
from consentgate.ledger.imports import import_members
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, file_objection
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.registry import Registry
from consentgate.taxonomy import Taxonomy
from tests.conftest import FixedClock, at, register, set_setting

CHANGE = "2025-11-03T00:00:00Z"
"""The day the 2025-11 policy comes into force (genai training by default in the EEA and the UK)."""
T_NEXT_DAY = "2025-11-04T00:00:00Z"
UNKNOWN_CATEGORIES = ("x.unknown", "profile.shoe_size")
UNKNOWN_MEMBERS = (900_001, 900_002)
CREATED = (
    "2024-01-01T00:00:00Z",
    "2025-10-02T08:00:00Z",
    CHANGE,
    "2025-11-03T00:00:00.000001Z",
    "2025-11-05T12:00:00Z",
)
"""Record creation times: long before, between the as-of times, exactly at and just after 3 Nov."""

RECORD_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("member_id", pa.int64()),
        ("category", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("payload", pa.string()),
        ("score", pa.float64()),
    ]
)
MEMBER_SCHEMA = pa.schema(
    [
        ("member_id", pa.int64()),
        ("country", pa.string()),
        ("birth_date", pa.date32()),
        ("believed_minor", pa.bool_()),
    ]
)

# name: (member_id, country, birth_date, believed_minor)
MEMBERS: dict[str, tuple[int, str, str | None, bool | None]] = {
    "eea_adult": (1, "DE", "1990-05-17", None),
    "row_adult": (2, "US", "1985-01-01", False),
    "uk_adult": (3, "GB", "1979-03-03", None),
    "cn_adult": (4, "CN", "1970-07-07", None),
    "ca_adult": (5, "CA", "1992-02-02", None),
    "eea_minor": (6, "DE", "2012-01-01", None),
    "row_believed_minor": (7, "US", None, True),
    "row_unknown_age": (8, "US", None, None),
    "eea_turns_18_on_change": (9, "FR", "2007-11-03", None),
    "row_leap_minor": (10, "US", "2008-02-29", None),
    "row_optout_before": (11, "US", "1980-01-01", None),
    "eea_optout_after": (12, "DE", "1980-01-01", None),
    "uk_optout_at_change": (13, "GB", "1980-01-01", None),
    "row_objection_pending": (14, "US", "1980-01-01", None),
    "eea_objection_upheld": (15, "IT", "1980-01-01", None),
    "row_objection_rejected": (16, "US", "1980-01-01", None),
    "row_ads_off": (17, "US", "1980-01-01", None),
    "ca_ads_connections_off": (18, "CA", "1980-01-01", None),
    "eea_inferred_consent": (19, "FR", "1980-01-01", None),
    "eea_marketing_objection": (20, "DE", "1980-01-01", None),
    "eea_moves_to_row": (21, "DE", "1980-01-01", None),
    "row_optout_then_on": (22, "US", "1980-01-01", None),
    "uk_believed_adult": (23, "GB", None, False),
    "row_backdated_optout": (24, "US", "1980-01-01", None),
    "uk_late_objection": (25, "GB", "1980-01-01", None),
    "hk_adult": (26, "HK", "1988-08-08", None),
    "ch_adult": (27, "CH", "1988-08-08", None),
}
LATE_REGISTERED = ("row_registered_after_change", 30, "US", "2025-11-03T12:00:00Z")
"""A member who joins after 3 November (not in members.parquet; registered with its own date)."""


@dataclass
class Network:
    root: Path
    members_file: Path
    record_files: list[Path]
    ids: dict[str, int]
    records: pa.Table
    watermark_early: int
    head: int
    unknown_members: tuple[int, ...] = UNKNOWN_MEMBERS
    unknown_categories: tuple[str, ...] = UNKNOWN_CATEGORIES
    objections: dict[str, str] = field(default_factory=dict)
    """name → objection reference."""

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def rows(self) -> list[dict[str, object]]:
        return list(self.records.to_pylist())


def write_members(path: Path) -> None:
    table = pa.table(
        {
            "member_id": [m[0] for m in MEMBERS.values()],
            "country": [m[1] for m in MEMBERS.values()],
            "birth_date": [None if m[2] is None else date.fromisoformat(m[2]) for m in MEMBERS.values()],
            "believed_minor": [m[3] for m in MEMBERS.values()],
        },
        schema=MEMBER_SCHEMA,
    )
    pq.write_table(table, path)


def record_table(categories: list[str], first_id: int = 1) -> pa.Table:
    """Every member (known, late and unknown) × every category, creation times in rotation."""
    member_ids = [m[0] for m in MEMBERS.values()] + [LATE_REGISTERED[1], *UNKNOWN_MEMBERS]
    rows: dict[str, list[object]] = {name: [] for name in RECORD_SCHEMA.names}
    record_id = first_id
    for i, member_id in enumerate(member_ids):
        for j, category in enumerate(categories):
            created = at(CREATED[(i + j) % len(CREATED)])
            rows["record_id"].append(record_id)
            rows["member_id"].append(member_id)
            rows["category"].append(category)
            rows["created_at"].append(created)
            rows["payload"].append(f"m{member_id}:{category}:{record_id}")
            rows["score"].append(record_id / 7)
            record_id += 1
    return pa.table(rows, schema=RECORD_SCHEMA)


def _load(ledger: Ledger, taxonomy: Taxonomy, members_file: Path) -> tuple[int, dict[str, str]]:
    """Append the network's events; returns (the watermark between the two phases, objections)."""
    ids = {name: m[0] for name, m in MEMBERS.items()}
    import_members(ledger, taxonomy, members_file)
    refs: dict[str, str] = {}

    def obj(name: str, purposes: list[str], when: str) -> str:
        [status, *_] = file_objection(
            ledger, taxonomy, member_id=ids[name], purposes=purposes, at=at(when), source=Source.import_
        )
        refs[name] = status.reference
        return status.reference

    # Phase 1 (seq <= watermark_early).
    set_setting(ledger, ids["row_optout_before"], "genai_improvement", False, "2025-10-15T00:00:00Z")
    set_setting(ledger, ids["eea_optout_after"], "genai_improvement", False, "2025-11-10T00:00:00Z")
    set_setting(ledger, ids["uk_optout_at_change"], "genai_improvement", False, CHANGE)
    obj("row_objection_pending", ["genai.training"], "2025-10-20T00:00:00Z")
    upheld = obj("eea_objection_upheld", ["genai.training", "ml.non_generative"], "2025-09-01T00:00:00Z")
    decide_objection(
        ledger, reference=upheld, uphold=True, reason="no compelling grounds", at=at("2025-10-01")
    )
    rejected = obj("row_objection_rejected", ["genai.training"], "2025-09-01T00:00:00Z")
    decide_objection(
        ledger, reference=rejected, uphold=False, reason="compelling grounds", at=at("2025-11-03T12:00:00Z")
    )
    set_setting(ledger, ids["row_ads_off"], "ads_affiliate_sharing", False, "2025-10-01T00:00:00Z")
    set_setting(ledger, ids["row_ads_off"], "ads_connections", False, "2025-10-01T00:00:00Z")
    set_setting(ledger, ids["ca_ads_connections_off"], "ads_connections", False, "2025-06-01T00:00:00Z")
    set_setting(ledger, ids["eea_inferred_consent"], "ads_interests_traits", True, "2025-01-01T00:00:00Z")
    set_setting(ledger, ids["eea_inferred_consent"], "ads_age_range", True, "2025-01-01T00:00:00Z")
    obj("eea_marketing_objection", ["ads.personalization"], "2025-10-10T00:00:00Z")
    ledger.append(
        [
            fact_draft(
                member_id=ids["eea_moves_to_row"],
                key="country",
                value="US",
                at=at("2025-10-15T00:00:00Z"),
                source=Source.import_,
                actor="test",
            )
        ]
    )
    # Two changes at the same instant: the later seq holds.
    set_setting(ledger, ids["row_optout_then_on"], "genai_improvement", False, "2025-09-01T00:00:00Z")
    set_setting(ledger, ids["row_optout_then_on"], "genai_improvement", True, "2025-09-01T00:00:00Z")
    watermark_early, _ = ledger.head()

    # Phase 2: recorded after watermark_early.
    set_setting(ledger, ids["row_backdated_optout"], "genai_improvement", False, "2025-09-15T00:00:00Z")
    set_setting(ledger, ids["row_optout_then_on"], "genai_improvement", False, "2025-10-25T00:00:00Z")
    obj("uk_late_objection", ["genai.training"], "2025-11-01T00:00:00Z")
    set_setting(ledger, ids["ca_adult"], "ads_affiliate_sharing", False, "2025-10-01T00:00:00Z")
    _, member_id, country, registered_at = LATE_REGISTERED
    register(ledger, member_id, country, birth_date="1990-01-01", registered_at=registered_at)
    return watermark_early, refs


MakeNetwork = Callable[..., Network]


@pytest.fixture
def make_network(tmp_path: Path, taxonomy: Taxonomy) -> MakeNetwork:
    """``make_network(ledger, files=2, load=True)``: write the network (and load it into ``ledger``)."""

    def make(
        ledger: Ledger | None, *, files: int = 2, root: Path | None = None, load: bool = True
    ) -> Network:
        folder = root or tmp_path / "net"
        (folder / "records").mkdir(parents=True, exist_ok=True)
        members_file = folder / "members.parquet"
        write_members(members_file)
        categories = [*sorted(taxonomy.categories), *UNKNOWN_CATEGORIES]
        table = record_table(categories)
        paths: list[Path] = []
        step = -(-table.num_rows // files)
        for index in range(files):
            path = folder / "records" / f"part-{index}.parquet"
            pq.write_table(table.slice(index * step, step), path, row_group_size=500)
            paths.append(path)
        watermark, head = 0, 0
        refs: dict[str, str] = {}
        if ledger is not None and load:
            watermark, refs = _load(ledger, taxonomy, members_file)
            head, _ = ledger.head()
        ids = {name: m[0] for name, m in MEMBERS.items()}
        ids[LATE_REGISTERED[0]] = LATE_REGISTERED[1]
        return Network(folder, members_file, paths, ids, table, watermark, head, objections=refs)

    return make


# -- building snapshots in tests -------------------------------------------------------------------


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", clock=FixedClock(), initialise=True)
    yield opened
    opened.close()


def build(
    ledger: Ledger,
    engine: DecisionEngine,
    data: Path,
    out: Path,
    *,
    purpose: str = "genai.training",
    as_of: str = T_NEXT_DAY,
    watermark: int | None = None,
) -> BuildResult:
    request = BuildRequest(
        data=data,
        purpose=purpose,
        as_of=at(as_of),
        out=out,
        watermark=watermark,
        events_dir=out.parent / "events",  # one mirror per ledger, shared by its builds
    )
    return build_snapshot(request, ledger=ledger, engine=engine)


def visible(out: Path) -> list[str]:
    """What a reader of OUT sees: everything but hidden names and the OpenLineage log."""
    if not out.exists():
        return []
    return sorted(
        p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != "openlineage.jsonl"
    )


def hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.exists() else []


def assert_nothing_published(out: Path, ledger: Ledger) -> None:
    assert visible(out) == []
    assert hidden(out) == []
    assert Registry(ledger).snapshots() == []


def openlineage_events(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "openlineage.jsonl").read_text().splitlines() if line.strip()]
