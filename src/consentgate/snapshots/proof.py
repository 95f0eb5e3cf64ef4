"""``prove_member``: whether, and why, one member's data is in a snapshot, with evidence to check.

A proof decides every category for the member exactly as the build did (``decide()`` for the
snapshot's purpose, as of its T, reading the ledger up to its W) and sets the decisions beside the
member's rows in ``members.parquet``. It carries what a reader needs to check it without trusting
this code: the manifest's sha256 (held by the registry), the ledger's hash at W (which ``audit
checkpoint`` signs), and every ledger event the decisions rest on with all the fields its hash
covers, its hash recomputed. What does not check out is listed under ``problems``, never repaired:
a proof with problems is not ``ok``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import pyarrow.parquet as pq

from consentgate.decisions.engine import DecisionEngine, member_state
from consentgate.decisions.reasons import Decision, Reason
from consentgate.ledger.events import LedgerEvent, digest_of
from consentgate.ledger.mirror import file_sha256
from consentgate.ledger.store import Ledger
from consentgate.snapshots.registry import Registry, SnapshotEntry, readable
from consentgate.snapshots.stores import NotPublished, StoreError
from consentgate.timeutil import format_instant

FORMAT = "consentgate.member-proof/1"


class ProblemCode(StrEnum):
    manifest_missing = "manifest_missing"
    manifest_changed = "manifest_changed"
    """manifest.json's sha256 is not the one registered."""
    manifest_disagrees = "manifest_disagrees"
    """A field of the manifest is missing or differs from the registry."""
    lineage_missing = "lineage_missing"
    lineage_changed = "lineage_changed"
    """members.parquet's sha256 is not the one in the manifest."""
    ledger_changed = "ledger_changed"
    """The ledger's hash at W is not the one in the manifest."""
    policy_changed = "policy_changed"
    """The policy in force at T (id, version, hash) is not the one in the manifest."""
    evidence_changed = "evidence_changed"
    """A ledger event's recomputed digest differs from its stored hash."""
    evidence_missing = "evidence_missing"
    """A reason cites a seq that is not among the decision's evidence."""
    records_not_allowed = "records_not_allowed"
    """The snapshot holds records of a category whose decision is "not allowed"."""


@dataclass(frozen=True)
class Problem:
    code: ProblemCode
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message}


@dataclass(frozen=True)
class Evidence:
    """A ledger event a decision rests on, with its digest recomputed from its fields."""

    event: LedgerEvent
    digest: str

    @property
    def ok(self) -> bool:
        return self.digest == self.event.hash

    def to_dict(self) -> dict[str, Any]:
        e = self.event
        return {
            "seq": e.seq,
            "member_id": e.member_id,
            "kind": e.kind,
            "key": e.key,
            "value": e.value,
            "effective_at": format_instant(e.effective),
            "effective_at_us": e.effective_at,
            "recorded_at": format_instant(e.recorded),
            "recorded_at_us": e.recorded_at,
            "source": e.source,
            "actor": e.actor,
            "idempotency_key": e.idempotency_key,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
            "digest": self.digest,
            "digest_ok": self.ok,
        }


def _reasons(decision: Decision) -> list[dict[str, Any]]:
    return [r.to_dict() for r in decision.reasons]


def _seqs(decision: Decision) -> list[int]:
    return [e.seq for e in decision.evidence]


@dataclass(frozen=True)
class CategoryProof:
    """A category that is allowed or has records in the snapshot: its count and its decision."""

    category: str
    records: int
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "records": self.records,
            "allowed": self.decision.allowed,
            "legal_basis": self.decision.legal_basis,
            "reasons": _reasons(self.decision),
            "evidence": _seqs(self.decision),
        }


PLACEHOLDER = "{category}"


@dataclass(frozen=True)
class DeniedGroup:
    """Categories not allowed and not in the snapshot whose decisions give the same reasons.

    A reason's text that names the category (``jobs.salary is never used for …``) names it as
    ``{category}`` here; putting each category of the group in its place gives that category's
    decision's text exactly.
    """

    categories: tuple[str, ...]
    reasons: tuple[Reason, ...]
    legal_basis: str | None
    evidence: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "legal_basis": self.legal_basis,
            "reasons": [r.to_dict() for r in self.reasons],
            "evidence": list(self.evidence),
        }


def _generic(decision: Decision) -> tuple[Reason, ...]:
    """The decision's reasons with its category written as ``{category}`` where that is exact."""
    category = decision.category
    out: list[Reason] = []
    for reason in decision.reasons:
        text = reason.message.replace(category, PLACEHOLDER) if category else reason.message
        if text.replace(PLACEHOLDER, category) != reason.message:
            text = reason.message  # the text holds "{category}" itself: keep it as it is
        out.append(replace(reason, message=text))
    return tuple(out)


@dataclass(frozen=True)
class MemberProof:
    """The proof for one member and one snapshot; ``to_dict()`` is the documented JSON."""

    entry: SnapshotEntry
    member_id: int
    hash_at_watermark: str | None
    manifest_sha256: str | None
    policy: dict[str, Any] | None
    region: str | None
    categories: tuple[CategoryProof, ...]
    denied: tuple[DeniedGroup, ...]
    evidence: tuple[Evidence, ...]
    problems: tuple[Problem, ...]

    @property
    def snapshot_id(self) -> str:
        return self.entry.snapshot_id

    @property
    def purpose(self) -> str:
        return self.entry.purpose

    @property
    def included(self) -> bool:
        return any(c.records > 0 for c in self.categories)

    @property
    def records(self) -> int:
        return sum(c.records for c in self.categories)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "ok": self.ok,
            "problems": [p.to_dict() for p in self.problems],
            "snapshot_id": self.entry.snapshot_id,
            "kind": self.entry.kind,
            "purpose": self.entry.purpose,
            "as_of": format_instant(self.entry.as_of),
            "watermark": self.entry.watermark,
            "hash_at_watermark": self.hash_at_watermark,
            "manifest_sha256": self.manifest_sha256,
            "registered_manifest_sha256": self.entry.manifest_sha256,
            "policy": self.policy,
            "member_id": self.member_id,
            "region": self.region,
            "included": self.included,
            "records": self.records,
            "categories": [c.to_dict() for c in self.categories],
            "denied": [g.to_dict() for g in self.denied],
            "evidence": [e.to_dict() for e in self.evidence],
        }


def prove_member(
    *, registry: Registry, ledger: Ledger, engine: DecisionEngine, snapshot_id: str, member_id: int
) -> MemberProof:
    """The proof of whether ``member_id``'s data is in ``snapshot_id`` and why (NotFoundError if unknown)."""
    entry = registry.require(snapshot_id)
    problems: list[Problem] = []
    manifest, manifest_sha = _manifest(entry, problems)
    if manifest is not None:
        _check_manifest(entry, manifest, ledger, problems)
    counts = _lineage(entry, manifest, member_id, problems)

    # decide() is member_state() then decide_state(): the state is read once, not once per category.
    state = member_state(ledger, member_id, entry.as_of, entry.watermark)
    known = list(engine.taxonomy.categories)
    wanted = known + sorted(set(counts) - set(known))
    decisions = {c: engine.decide_state(state, c, entry.purpose) for c in wanted}
    policy = _check_policy(engine, entry, manifest, problems)
    listed, denied = _arrange(decisions, counts, member_id, problems)
    hash_at_w = _get(manifest, "ledger", "hash_at_watermark")
    return MemberProof(
        entry=entry,
        member_id=member_id,
        hash_at_watermark=hash_at_w if isinstance(hash_at_w, str) else None,
        manifest_sha256=manifest_sha,
        policy=policy,
        region=next((d.region for d in decisions.values() if d.region is not None), None),
        categories=listed,
        denied=denied,
        evidence=_evidence(decisions.values(), problems),
        problems=tuple(problems),
    )


def _arrange(
    decisions: dict[str, Decision], counts: dict[str, int], member_id: int, problems: list[Problem]
) -> tuple[tuple[CategoryProof, ...], tuple[DeniedGroup, ...]]:
    """Allowed or present categories one by one; the others grouped; records of a "no" are a problem."""
    listed: list[CategoryProof] = []
    groups: dict[tuple[tuple[Reason, ...], str | None, tuple[int, ...]], list[str]] = {}
    for category, decision in decisions.items():
        records = counts.get(category, 0)
        if decision.allowed or records:
            listed.append(CategoryProof(category, records, decision))
        else:
            key = (_generic(decision), decision.legal_basis, tuple(_seqs(decision)))
            groups.setdefault(key, []).append(category)
        if records and not decision.allowed:
            denial = ", ".join(r.label() for r in decision.denials)
            problems.append(
                Problem(
                    ProblemCode.records_not_allowed,
                    f"the snapshot holds {records} {category} records of member {member_id},"
                    f" but the decision is not allowed: {denial}",
                )
            )
    return tuple(listed), tuple(DeniedGroup(tuple(cats), *key) for key, cats in groups.items())


def _check_policy(
    engine: DecisionEngine, entry: SnapshotEntry, manifest: dict[str, Any] | None, problems: list[Problem]
) -> dict[str, Any] | None:
    """The policy that decides at T (id, version, hash); it must be the one the manifest records."""
    policy = engine.timeline.in_force(entry.as_of)
    used = (
        None
        if policy is None
        else {"id": policy.id, "version": policy.version, "hash": policy.content_hash()}
    )
    recorded = None if manifest is None else manifest.get("policy")
    if isinstance(recorded, dict):
        recorded = {key: recorded.get(key) for key in ("id", "version", "hash")}
    if manifest is not None and used != recorded:
        problems.append(
            Problem(
                ProblemCode.policy_changed,
                f"the policy in force at {format_instant(entry.as_of)} is now {_ref(used)},"
                f" the manifest records {_ref(recorded)}",
            )
        )
    return used


def _ref(policy: object) -> str:
    if not isinstance(policy, dict):
        return "no policy"
    return f"{policy.get('id')}@{policy.get('version')} (sha256 {str(policy.get('hash'))[:12]}…)"


def _get(manifest: dict[str, Any] | None, *path: str) -> Any:
    value: Any = manifest
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _manifest(entry: SnapshotEntry, problems: list[Problem]) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest as read, and the sha256 of its bytes; a changed one is read but reported."""
    try:
        path = readable(entry) / "manifest.json"
    except (NotPublished, StoreError) as exc:
        problems.append(Problem(ProblemCode.manifest_missing, str(exc)))
        return None, None
    if not path.is_file():
        problems.append(Problem(ProblemCode.manifest_missing, f"{path}: missing"))
        return None, None
    body = path.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    if sha != entry.manifest_sha256:
        problems.append(
            Problem(
                ProblemCode.manifest_changed,
                f"{path}: sha256 {sha} is not the registered {entry.manifest_sha256}",
            )
        )
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        problems.append(Problem(ProblemCode.manifest_disagrees, f"{path}: not JSON ({exc})"))
        return None, sha
    if not isinstance(manifest, dict):
        problems.append(Problem(ProblemCode.manifest_disagrees, f"{path}: not a JSON object"))
        return None, sha
    return manifest, sha


def _check_manifest(
    entry: SnapshotEntry, manifest: dict[str, Any], ledger: Ledger, problems: list[Problem]
) -> None:
    """The manifest must describe the registered snapshot (id, kind, purpose, T, W) and the ledger at W."""
    expected: dict[tuple[str, ...], object] = {
        ("snapshot_id",): entry.snapshot_id,
        ("kind",): entry.kind,
        ("purpose",): entry.purpose,
        ("as_of",): format_instant(entry.as_of),
        ("ledger", "watermark"): entry.watermark,
    }
    for path, value in expected.items():
        found = _get(manifest, *path)
        if found != value:
            problems.append(
                Problem(
                    ProblemCode.manifest_disagrees,
                    f"manifest.json: {'.'.join(path)} is {found!r}, the registry has {value!r}",
                )
            )
    recorded = _get(manifest, "ledger", "hash_at_watermark")
    if ledger.hash_at(entry.watermark) != recorded:
        problems.append(
            Problem(
                ProblemCode.ledger_changed,
                f"the ledger's hash at seq {entry.watermark} is not the manifest's {recorded}",
            )
        )


def _lineage(
    entry: SnapshotEntry, manifest: dict[str, Any] | None, member_id: int, problems: list[Problem]
) -> dict[str, int]:
    """The member's records per category in members.parquet (checked against the manifest's sha256)."""
    path = entry.path / "members.parquet"
    if not path.is_file():
        problems.append(Problem(ProblemCode.lineage_missing, f"{path}: missing"))
        return {}
    listed = _get(manifest, "outputs", "members", "sha256")
    sha = file_sha256(path)
    if manifest is not None and sha != listed:
        problems.append(
            Problem(ProblemCode.lineage_changed, f"{path}: sha256 {sha} is not the manifest's {listed}")
        )
    try:
        table = pq.read_table(path, columns=["category", "records"], filters=[("member_id", "==", member_id)])
    except Exception as exc:  # any unreadable or reshaped file: the proof says so and goes on
        problems.append(Problem(ProblemCode.lineage_changed, f"{path}: unreadable ({exc})"))
        return {}
    counts: dict[str, int] = {}
    for row in table.to_pylist():
        counts[str(row["category"])] = counts.get(str(row["category"]), 0) + int(row["records"])
    return counts


def _evidence(decisions: Iterable[Decision], problems: list[Problem]) -> tuple[Evidence, ...]:
    events: dict[int, LedgerEvent] = {}
    cited: set[int] = set()
    for decision in decisions:
        events.update((e.seq, e) for e in decision.evidence)
        cited.update(r.seq for r in decision.reasons if r.seq is not None)
    for seq in sorted(cited - set(events)):
        problems.append(Problem(ProblemCode.evidence_missing, f"seq {seq} is cited but not in the evidence"))
    out = tuple(Evidence(e, digest_of(e)) for _, e in sorted(events.items()))
    for item in out:
        if not item.ok:
            problems.append(
                Problem(
                    ProblemCode.evidence_changed,
                    f"ledger event seq {item.event.seq}: its fields hash to {item.digest},"
                    f" the ledger stores {item.event.hash}",
                )
            )
    return out
