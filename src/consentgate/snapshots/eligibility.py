"""Eligibility as of (T, W): the relation member → allowed categories, computed once per build.

The bulk path must never drift from ``decide()``. So it does not re-implement the rules in SQL:
DuckDB only sorts members into *classes* of identical decision inputs (known, region, age status,
the purpose's governing settings, the outcomes of objections covering the purpose), and the one
policy engine decides every (class, category) pair on the real ledger state of a representative
member of the class. Every member of a class gets exactly the decision its representative got, and
a test compares the bulk result with ``decide()`` record by record.

Class 0 is the unknown member (not registered as of T); the category ``?`` stands for every
category the taxonomy does not know.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from consentgate.decisions.engine import DecisionEngine
from consentgate.decisions.reasons import ReasonCode
from consentgate.ledger.events import EventKind, LedgerEvent
from consentgate.ledger.mirror import events_of_members, parquet_source, read_events
from consentgate.ledger.schema import OBJECTION_KINDS_SQL
from consentgate.ledger.state import MemberState, objections_from, resolve_member
from consentgate.policy.models import Policy
from consentgate.timeutil import to_micros

UNKNOWN_CATEGORY = "?"
UNKNOWN_MEMBER_CLASS = 0
RULES_SCHEMA = pa.schema(
    [
        ("class_id", pa.int32()),
        ("category", pa.string()),
        ("allowed", pa.bool_()),
        ("reason", pa.string()),
        ("late_reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class MemberClass:
    class_id: int
    signature: str
    region: str | None
    members: int
    representative: int | None


@dataclass
class Eligibility:
    """The relation, held as two tables in the build's DuckDB connection.

    ``member_class(member_id BIGINT, class_id INTEGER)`` and ``rules`` (see RULES_SCHEMA): a record
    is eligible iff its member's class allows its category and it was created by T.
    """

    purpose: str
    at: datetime
    watermark: int
    policy: Policy | None
    governing: tuple[str, ...]
    classes: list[MemberClass]

    def region_of_class(self) -> dict[int, str | None]:
        return {c.class_id: c.region for c in self.classes}


def governing_settings(policy: Policy | None, purpose: str) -> tuple[str, ...]:
    """Every setting that controls ``purpose`` in some region of ``policy``, sorted."""
    if policy is None or purpose not in policy.purposes:
        return ()
    keys = {key for rule in policy.purposes[purpose].regions.values() for key in rule.controlled_by}
    return tuple(sorted(keys))


def _parts(member_class: MemberClass) -> tuple[str | None, str, list[str], str]:
    """(region, age status, governing setting values, objection outcomes) from the signature."""
    if member_class.representative is None:
        return None, "", [], ""
    region, age, settings, objections = member_class.signature.split("/")
    return (None if region == "?" else region), age, settings.split("|"), objections


def _objection_signatures(events: list[Path], purpose: str, at: datetime, watermark: int) -> pa.Table:
    """member_id → the outcomes (as of T) of that member's objections covering ``purpose``."""
    by_member: dict[int, list[LedgerEvent]] = defaultdict(list)
    for event in read_events(
        events, f"{OBJECTION_KINDS_SQL} AND seq <= ? AND effective_at <= ?", [watermark, to_micros(at)]
    ):
        by_member[event.member_id].append(event)
    members: list[int] = []
    outcomes: list[str] = []
    for member_id, own in sorted(by_member.items()):
        covering = sorted(str(s.outcome) for s in objections_from(own).values() if s.covers(purpose))
        if covering:
            members.append(member_id)
            outcomes.append(",".join(covering))
    return pa.table(
        {"member_id": pa.array(members, pa.int64()), "objections": pa.array(outcomes, pa.string())}
    )


def _signature_sql(
    events: list[Path], governing: tuple[str, ...], at: datetime, watermark: int, only: str | None = None
) -> str:
    setting_list = ", ".join(f"'{key}'" for key in governing) or "NULL"
    source = parquet_source(events)
    # One aggregation per member: the latest value of each key is arg_max over (effective_at, seq),
    # packed into one HUGEINT (seq < 2^48) so the comparison is a single integer compare.
    order = "effective_at::HUGEINT * 281474976710656 + seq"

    def latest(kind: str, key: str | None = None) -> str:
        where = f"kind = '{kind}'" + ("" if key is None else f" AND key = '{key}'")
        return f"arg_max(value, {order}) FILTER (WHERE {where})"

    settings = (
        "concat_ws('|', "
        + ", ".join(f"coalesce({latest(EventKind.setting_changed, key)}, '-')" for key in governing)
        + ")"
        if governing
        else "''"
    )
    restrict = "" if only is None else f" AND member_id IN (SELECT member_id FROM {only})"
    # The age test mirrors ledger.state.is_minor_on: 29 February births turn 18 on 1 March.
    return f"""
    WITH facts AS (
      SELECT member_id,
        {latest(EventKind.member_registered)} AS registered,
        upper(trim({latest(EventKind.member_fact, "country")})) AS country,
        TRY_CAST(nullif({latest(EventKind.member_fact, "birth_date")}, '') AS DATE) AS birth,
        nullif({latest(EventKind.member_fact, "believed_minor")}, '') AS believed_minor,
        {settings} AS settings_sig
      FROM {source}
      WHERE seq <= {int(watermark)} AND effective_at <= {to_micros(at)}{restrict}
        AND (kind IN ('{EventKind.member_registered}', '{EventKind.member_fact}')
             OR (kind = '{EventKind.setting_changed}' AND key IN ({setting_list})))
      GROUP BY member_id
    )
    SELECT f.member_id, r.region,
      CASE
        WHEN birth IS NOT NULL AND DATE '{at.date().isoformat()}' < (
          CASE WHEN month(birth) = 2 AND day(birth) = 29 AND NOT ((year(birth) + 18) % 4 = 0
                 AND ((year(birth) + 18) % 100 <> 0 OR (year(birth) + 18) % 400 = 0))
               THEN make_date(year(birth) + 18, 3, 1)
               ELSE make_date(year(birth) + 18, month(birth), day(birth)) END) THEN 'minor'
        WHEN believed_minor = 'true' THEN 'believed_minor'
        WHEN birth IS NULL AND believed_minor IS NULL THEN 'age_unknown'
        ELSE 'adult' END AS age,
      coalesce(settings_sig, '') AS settings_sig
    FROM facts f LEFT JOIN country_region r ON r.country = f.country
    WHERE f.registered = 'true'
    """


def compute_eligibility(
    con: duckdb.DuckDBPyConnection,
    *,
    engine: DecisionEngine,
    events: list[Path],
    purpose: str,
    at: datetime,
    watermark: int,
    only: str | None = None,
) -> Eligibility:
    """Create ``member_class`` and ``rules`` in ``con`` for ``purpose`` as of (``at``, ``watermark``).

    Everything is read from ``events``, the verified mirror segments: the classes, the objections and
    the representatives' states, so no unverified database row can decide a class. ``only`` names a
    table in ``con`` with a ``member_id`` column: then only those members are classified (the debt
    of a snapshot re-decides only the members whose events changed since it).
    """
    taxonomy = engine.taxonomy
    policy = engine.timeline.in_force(at)
    governing = governing_settings(policy, purpose)
    countries = sorted(taxonomy.assigned_countries)
    con.register(
        "country_region_src",
        pa.table({"country": countries, "region": [taxonomy.region_of(c) for c in countries]}),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE country_region AS SELECT * FROM country_region_src")
    con.register("objections_src", _objection_signatures(events, purpose, at, watermark))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE member_sig AS
        SELECT s.member_id, s.region,
               concat_ws('/', coalesce(s.region, '?'), s.age, s.settings_sig, coalesce(o.objections, ''))
                 AS sig
        FROM ({_signature_sql(events, governing, at, watermark, only)}) s
        LEFT JOIN objections_src o USING (member_id)"""
    )
    rows = con.execute(
        "SELECT sig, any_value(region), min(member_id), count(*) FROM member_sig GROUP BY sig ORDER BY sig"
    ).fetchall()
    classes = [MemberClass(UNKNOWN_MEMBER_CLASS, "unknown member", None, 0, None)]
    classes += [
        MemberClass(i, str(sig), region, int(n), int(rep))
        for i, (sig, region, rep, n) in enumerate(rows, start=1)
    ]
    con.register(
        "classes_src",
        pa.table(
            {
                "sig": pa.array([c.signature for c in classes[1:]], pa.string()),
                "class_id": pa.array([c.class_id for c in classes[1:]], pa.int32()),
            }
        ),
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE member_class AS
        SELECT m.member_id, c.class_id FROM member_sig m JOIN classes_src c USING (sig)"""
    )
    states = events_of_members(
        events,
        [c.representative for c in classes if c.representative is not None],
        at_us=to_micros(at),
        watermark=watermark,
    )
    con.register("rules_src", _rules(states, engine, classes, purpose, at, watermark, governing))
    con.execute("CREATE OR REPLACE TEMP TABLE rules AS SELECT * FROM rules_src")
    for name in ("country_region_src", "objections_src", "classes_src", "rules_src"):
        con.unregister(name)
    con.execute("DROP TABLE member_sig")
    return Eligibility(purpose, at, watermark, policy, governing, classes)


def _rules(
    states: dict[int, list[LedgerEvent]],
    engine: DecisionEngine,
    classes: list[MemberClass],
    purpose: str,
    at: datetime,
    watermark: int,
    governing: tuple[str, ...],
) -> pa.Table:
    """Decide every (class, category) pair on a representative's real state, on time and late.

    A category's decision reads only the settings that govern it in the member's region, so two
    classes that differ only in other settings share it: decisions are memoised on (region, age,
    objections, category, values of the settings governing that category). With 14 governing
    settings (affiliate sharing) this cut 117k decisions to a few thousand.
    """
    late = at + timedelta(microseconds=1)
    categories = [*sorted(engine.taxonomy.categories), UNKNOWN_CATEGORY]
    policy = engine.timeline.in_force(at)
    position = {key: i for i, key in enumerate(governing)}
    memo: dict[tuple[object, ...], tuple[bool, str, str]] = {}
    columns: dict[str, list[object]] = {name: [] for name in RULES_SCHEMA.names}
    for member_class in classes:
        state: MemberState | None = None
        region, age, values, objections = _parts(member_class)
        for category in categories:
            governed = (
                engine.governing(policy, purpose, region, category)
                if policy is not None and region is not None
                else ()
            )
            key = (
                member_class.representative is None,
                region,
                age,
                objections,
                category,
                tuple(values[position[g]] if g in position else None for g in governed),
            )
            decided = memo.get(key)
            if decided is None:
                if state is None:
                    state = (
                        MemberState(member_id=0, at=at, watermark=watermark)
                        if member_class.representative is None
                        else resolve_member(
                            member_class.representative,
                            states[member_class.representative],
                            at=at,
                            watermark=watermark,
                        )
                    )
                # One decision per pair: decided as for a record created after T, the reasons are
                # the on-time reasons plus record_after_as_of (structural failures return before
                # that check), so both outcomes come from the same call.
                denials = [
                    r.code
                    for r in engine.decide_state(state, category, purpose, created_at=late).reasons
                    if r.denies
                ]
                on_time = [code for code in denials if code is not ReasonCode.record_after_as_of]
                decided = (
                    not on_time,
                    str(on_time[0]) if on_time else "",
                    str(denials[0]) if denials else "",
                )
                memo[key] = decided
            columns["class_id"].append(member_class.class_id)
            columns["category"].append(category)
            columns["allowed"].append(decided[0])
            columns["reason"].append(decided[1])
            columns["late_reason"].append(decided[2])
    return pa.table(columns, schema=RULES_SCHEMA)


def rules_as_json(con: duckdb.DuckDBPyConnection) -> str:
    """The rules table as canonical JSON (for debugging and the build's work folder)."""
    rows = con.execute("SELECT * FROM rules ORDER BY class_id, category").fetchall()
    return json.dumps([list(r) for r in rows])
