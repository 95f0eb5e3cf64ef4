"""The JSON API's request and response models; their descriptions become the OpenAPI document.

Instants are ISO 8601 with an offset (``Z`` or ``+01:00``); a bare date means 00:00 UTC. A date-time
without an offset is refused (422), because guessing a time zone would move consent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from consentgate.ledger.events import MAX_MEMBER_ID
from consentgate.names import NAME_PATTERN
from consentgate.snapshots.training_runs import MAX_REASON
from consentgate.timeutil import BOUNDS_TEXT, check_bounds, parse_instant

MAX_BATCH = 10_000
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Text without control characters (tabs and line breaks are allowed)."""
SNAPSHOT_ID = r"^[A-Za-z0-9._:-]+$"
MODEL_NAME = NAME_PATTERN
"""A model name as the API takes it: it appears in console addresses, so no spaces or slashes."""


def _instant(value: Any) -> Any:
    """Parse text with :func:`parse_instant`; the error names the problem (pydantic adds the field)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("an offset is required (e.g. 2025-11-03T00:00:00Z)")
        try:
            return check_bounds(value.astimezone(UTC), field="at")
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is out of range ({BOUNDS_TEXT})") from None
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 timestamp string, e.g. 2025-11-03T00:00:00Z")
    try:
        return parse_instant(value, field="at")
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None


Instant = Annotated[datetime, BeforeValidator(_instant)]
MemberId = Annotated[int, Field(ge=1, le=MAX_MEMBER_ID, description="Member id (a positive int64).")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------------------


class ErrorPublic(_Model):
    """Every error: one sentence saying what is wrong and, where it helps, what to do."""

    detail: str = Field(description="What went wrong, naming the field or value at fault.")


class ConflictPublic(_Model):
    """A request the ledger's state refuses (409)."""

    detail: str = Field(description="Why, and what to do instead.")
    count: int | None = Field(
        default=None,
        description="For a training run refused because of debt: how many members of its snapshots "
        "had opted out, objected or otherwise left the purpose by the training time.",
    )


class ValidationProblem(_Model):
    field: str = Field(description="Where the problem is, e.g. body.requests.3.at or query.member_id.")
    problem: str = Field(description="What is wrong with it.")


class ValidationErrorPublic(_Model):
    """A request that does not have the documented form (422)."""

    detail: list[ValidationProblem] = Field(description="One entry per problem found.")


# --- settings -----------------------------------------------------------------------------------


class TextPublic(_Model):
    en: str = Field(description="English text.")
    de: str = Field(description="German text.")


class LastChange(_Model):
    seq: int = Field(description="Ledger sequence number of the member's last change of this setting.")
    effective_at: datetime = Field(description="When the change took effect (UTC).")
    source: str = Field(description="Who caused it: member, import, gpc, dpo or system.")


class PurposeUsePublic(_Model):
    purpose: str = Field(description="Purpose key, e.g. genai.training.")
    name: str = Field(description="The purpose in plain words.")
    legal_basis: str | None = Field(
        description="Legal basis in the member's region under the policy in force; null: not used there."
    )


class SettingPublic(_Model):
    key: str = Field(description="Setting key, e.g. genai_improvement.")
    label: TextPublic = Field(description="The setting's name as shown on the settings page.")
    group: str = Field(description="advertising or privacy.")
    section: str = Field(description="Section of the settings page, e.g. 'Profile data'.")
    kind: str = Field(description="toggle (holds a value) or action (a page or request, no value).")
    value: bool | None = Field(description="Current value (explicit or default); null for action entries.")
    explicit: bool = Field(description="Whether the member ever set it (otherwise the default applies).")
    default: bool | None = Field(description="Value when the member never chose; null for action entries.")
    last_change: LastChange | None = Field(description="The member's last change, if any.")
    purposes: list[PurposeUsePublic] = Field(description="The purposes this setting governs.")


class SettingsPublic(_Model):
    member_id: int = Field(description="The member.")
    at: datetime = Field(description="The instant the values are as of (UTC).")
    region: str | None = Field(description="The member's region, e.g. EEA; null if the country is unknown.")
    policy: PolicyRef | None = Field(description="The policy in force at that instant.")
    settings: list[SettingPublic] = Field(description="Every setting of the taxonomy, in page order.")


class SettingChange(_Model):
    value: bool = Field(description="The new value: true (on) or false (off).")


class Receipt(_Model):
    """The stored ledger event: proof of what was chosen and when."""

    seq: int = Field(description="Ledger sequence number.")
    hash: str = Field(description="SHA-256 of the event, chained to the previous event's hash.")
    prev_hash: str = Field(description="Hash of the event before it in the ledger.")
    member_id: int = Field(description="The member.")
    key: str = Field(description="The setting key.")
    value: bool = Field(description="The value recorded.")
    effective_at: datetime = Field(description="When the change takes effect (UTC).")
    recorded_at: datetime = Field(description="When the ledger recorded it (UTC).")
    source: str = Field(description="member (the member themself), dpo or system (a service token).")
    actor: str = Field(description="Who made the request, e.g. member:anna or token:<id>.")
    idempotency_key: str = Field(description="The event's idempotency key in the ledger.")


class ReceiptPublic(_Model):
    receipt: Receipt = Field(description="The receipt for the recorded change.")


# --- decisions ----------------------------------------------------------------------------------


class PolicyRef(_Model):
    id: str = Field(description="Policy id, e.g. linkedin-2025-11.")
    version: int | None = Field(description="Policy version.")


class ReasonPublic(_Model):
    code: str = Field(description="Reason code, e.g. setting_off, objection_pending, legal_basis.")
    message: str = Field(description="The reason in plain words.")
    seq: int | None = Field(default=None, description="The ledger event that is evidence for it, if any.")
    setting: str | None = Field(default=None, description="The setting it is about, if any.")
    reference: str | None = Field(default=None, description="The objection it is about, if any.")


class EvidencePublic(_Model):
    seq: int = Field(description="Ledger sequence number.")
    kind: str = Field(description="Event kind, e.g. setting_changed.")
    key: str = Field(description="Event key, e.g. a setting key or an objection reference.")
    value: str = Field(description="Event value as stored.")
    effective_at: datetime = Field(description="When it took effect (UTC).")
    recorded_at: datetime = Field(description="When it was recorded (UTC).")
    source: str = Field(description="member, import, gpc, dpo or system.")
    actor: str = Field(description="Who caused it.")


class DecisionRequest(_Model):
    member_id: MemberId
    category: str = Field(min_length=1, max_length=200, description="Category key, e.g. profile.skills.")
    purpose: str = Field(min_length=1, max_length=200, description="Purpose key, e.g. genai.training.")
    at: Instant | None = Field(
        default=None, description="ISO 8601 instant with offset (a bare date = 00:00Z); default: now."
    )


class DecisionPublic(_Model):
    """A decision and its reasons: every "no" says why, every "yes" says on what basis."""

    allowed: bool = Field(description="Whether the data may be used for the purpose at that instant.")
    member_id: int = Field(description="The member.")
    category: str = Field(description="The category asked about.")
    purpose: str = Field(description="The purpose asked about.")
    at: datetime = Field(description="The instant decided for (UTC).")
    watermark: int | None = Field(description="Only ledger events up to this seq were read; null: all.")
    policy: PolicyRef | None = Field(description="The policy in force; null if none is.")
    legal_basis: str | None = Field(description="Legal basis in the member's region, if any.")
    region: str | None = Field(description="The member's region, if known.")
    reasons: list[ReasonPublic] = Field(description="The reasons, in the order they were checked.")
    evidence: list[EvidencePublic] = Field(description="The ledger events the reasons rest on.")


class BatchDetail(StrEnum):
    full = "full"
    verdict = "verdict"


class DecisionBatchRequest(_Model):
    requests: list[DecisionRequest] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"Up to {MAX_BATCH:,} questions; answered in the same order.",
    )
    detail: BatchDetail = Field(
        default=BatchDetail.full,
        description="full: each decision with its reasons' wording and its evidence, as GET /decisions"
        " gives it. verdict: allowed, policy, basis, region and the reason codes (with the setting each"
        " names), no evidence: the same answer, decided once per class of members, for ad servers.",
    )


class DecisionBatch(_Model):
    decisions: list[DecisionPublic] = Field(description="One decision per request, in request order.")


class VerdictReasonPublic(_Model):
    code: str = Field(description="Reason code, e.g. setting_off, objection_pending, legal_basis.")
    setting: str | None = Field(default=None, description="The setting it is about, if any.")


class VerdictPublic(_Model):
    """A decision without its evidence: what the reasons' codes say, not the member's events."""

    allowed: bool = Field(description="Whether the data may be used for the purpose at that instant.")
    member_id: int = Field(description="The member.")
    category: str = Field(description="The category asked about.")
    purpose: str = Field(description="The purpose asked about.")
    at: datetime = Field(description="The instant decided for (UTC).")
    policy: PolicyRef | None = Field(description="The policy in force; null if none is.")
    legal_basis: str | None = Field(description="Legal basis in the member's region, if any.")
    region: str | None = Field(description="The member's region, if known.")
    reasons: list[VerdictReasonPublic] = Field(
        description="The reasons' codes, in the order they were checked."
    )


class VerdictBatch(_Model):
    decisions: list[VerdictPublic] = Field(description="One verdict per request, in request order.")


# --- objections ---------------------------------------------------------------------------------


class ObjectionCreate(_Model):
    purposes: list[Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]] = Field(
        min_length=1, max_length=50, description="Purposes objected to, e.g. ['genai.training']."
    )
    grounds: str = Field(
        default="", max_length=5000, pattern=TEXT, description="The member's grounds (optional)."
    )


class ObjectionPublic(_Model):
    reference: str = Field(description="Objection reference, e.g. OBJ-1A2B3C4D5E.")
    member_id: int = Field(description="The member who objected.")
    purposes: list[str] = Field(description="The purposes objected to.")
    grounds: str = Field(description="The member's grounds.")
    received_at: datetime = Field(description="When it was received (UTC); processing is restricted since.")
    due: datetime = Field(description="When the answer is due (Art. 12(3)), including any extension.")
    extended_by_months: int = Field(description="Months the deadline was extended by (0, 1 or 2).")
    status: str = Field(description="pending, upheld or rejected.")
    automatic: bool = Field(description="Upheld automatically (direct marketing, Art. 21(3)).")
    reason: str | None = Field(description="The decision's reasons, once decided.")
    decided_at: datetime | None = Field(description="When it was decided, once decided.")
    overdue: bool = Field(description="Still pending after the due date.")


class ObjectionsPublic(_Model):
    objections: list[ObjectionPublic] = Field(description="Objections, by due date.")


class ObjectionReceipt(_Model):
    objections: list[ObjectionPublic] = Field(
        description="The recorded objection; two when a direct-marketing part is split off "
        "(it is upheld at once)."
    )


# --- snapshots and lineage ----------------------------------------------------------------------


class SnapshotPublic(_Model):
    snapshot_id: str = Field(description="Snapshot id.")
    kind: str = Field(description="What the snapshot is, e.g. training.")
    purpose: str = Field(description="The purpose it was built for.")
    as_of: datetime = Field(description="The instant T the eligibility was computed as of (UTC).")
    watermark: int = Field(description="The ledger watermark W: events up to this seq were read.")
    policy: str | None = Field(description="The policy in force at T (id@version).")
    engine: str = Field(description="duckdb or spark.")
    records: int = Field(description="Records included.")
    members: int = Field(description="Members whose records are included.")
    manifest_sha256: str = Field(description="SHA-256 of the manifest.")
    registered_at: datetime = Field(description="When it was registered (UTC).")


class SnapshotsPublic(_Model):
    snapshots: list[SnapshotPublic] = Field(description="Registered snapshots, by as-of time.")


class MemberSnapshotPublic(_Model):
    snapshot_id: str = Field(description="Snapshot id.")
    kind: str = Field(description="What the snapshot is.")
    purpose: str = Field(description="The purpose it was built for.")
    as_of: datetime = Field(description="Its as-of instant (UTC).")
    records: int = Field(description="How many of the member's records it holds.")
    categories: dict[str, int] = Field(description="Records per category.")
    models: list[str] = Field(description="Registered models trained on it.")


class MemberLineagePublic(_Model):
    member_id: int = Field(description="The member.")
    snapshots: list[MemberSnapshotPublic] = Field(description="Snapshots that hold the member's data.")
    models: list[str] = Field(description="Models trained on any of them.")
    unreadable_snapshots: list[str] = Field(
        description="Registered snapshots whose files are gone, so they could not be searched."
    )
    trained_models: list[MemberModelPublic] = Field(
        description="Per model trained on one of those snapshots: when, and whether that was before "
        "the member's opt-out, after it under a recorded override, or while their data was allowed."
    )


class MemberModelPublic(_Model):
    """A model trained on a snapshot that holds the member's data, as the member sees it."""

    model: str = Field(description="Model name.")
    snapshot_id: str = Field(description="The snapshot it was trained on that holds the member's data.")
    purpose: str = Field(description="The snapshot's purpose.")
    trained_at: datetime = Field(description="When the training used the snapshot (UTC).")
    status: str = Field(
        description="allowed (the member's data was allowed then and still is), before_optout (allowed "
        "then; the member has opted out or objected since, so later models leave it out), "
        "after_optout_override (trained after the opt-out under an override; see override_reason) or "
        "after_optout (trained after the opt-out took effect and no override is recorded)."
    )
    since: datetime | None = Field(
        description="When the opt-out (or other change that ends the use) took effect; null if none "
        "or unknown."
    )
    reason: str | None = Field(description="Its reason code, e.g. setting_off or objection_upheld.")
    seq: int | None = Field(description="The ledger event it rests on, if any.")
    setting: str | None = Field(description="The setting switched off, if that is the reason.")
    reference: str | None = Field(description="The objection, if that is the reason.")
    override_reason: str | None = Field(
        description="For after_optout_override: the reason the operator recorded for the override."
    )


# --- models -------------------------------------------------------------------------------------


class ModelCreate(_Model):
    """A training run to register: the model, the snapshots it used and when."""

    name: str = Field(
        min_length=1, max_length=200, pattern=MODEL_NAME, description="Model name, e.g. genai-2026-01."
    )
    snapshots: list[Annotated[str, Field(min_length=1, max_length=300, pattern=SNAPSHOT_ID)]] = Field(
        min_length=1, max_length=100, description="Ids of the snapshots the model was trained on."
    )
    trained_at: Instant | None = Field(
        default=None,
        description="When the training used the snapshots: ISO 8601 with offset; default: now. "
        "Not in the future, not before a snapshot's as-of.",
    )
    note: str = Field(default="", max_length=2000, pattern=TEXT, description="A note kept with the model.")
    accept_debt: str | None = Field(
        default=None,
        max_length=MAX_REASON,
        pattern=TEXT,
        description="Register although the snapshots hold members in debt at the training time: the "
        "override's reason, recorded with every member it covers and shown to them. DPO role only.",
    )

    @field_validator("accept_debt")
    @classmethod
    def _reason_given(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give the reason for the override (it is recorded and shown to the members)")
        return value


class OverridePublic(_Model):
    reason: str = Field(description="Why the model was registered despite the debt.")
    by: str = Field(description="Who decided it, e.g. dpo:erika.")
    members: int = Field(description="How many members in debt the override covers.")


class ModelPublic(_Model):
    name: str = Field(description="Model name.")
    snapshots: list[str] = Field(description="The snapshots it was trained on.")
    note: str = Field(description="The note kept with it.")
    registered_at: datetime = Field(description="When it was registered (UTC).")
    trained_at: datetime | None = Field(description="When the training used the snapshots (UTC).")
    watermark: int | None = Field(description="The ledger head the registration checked the debt against.")
    override: OverridePublic | None = Field(
        description="Set when it was registered despite members in debt: an exception to see."
    )


class ModelsPublic(_Model):
    models: list[ModelPublic] = Field(description="Registered models, by name.")


class ModelRegistrationPublic(_Model):
    created: bool = Field(description="False when the identical registration already existed.")
    model: ModelPublic = Field(description="The registered model.")


# --- member-level proofs ------------------------------------------------------------------------


class ProofProblemPublic(_Model):
    code: str = Field(
        description="What does not check out: manifest_missing, manifest_changed, manifest_disagrees, "
        "lineage_missing, lineage_changed, ledger_changed, policy_changed, evidence_changed, "
        "evidence_missing or records_not_allowed."
    )
    message: str = Field(description="The problem in words, naming the file, seq or category.")


class ProofPolicyPublic(_Model):
    id: str = Field(description="Policy id.")
    version: int = Field(description="Policy version.")
    hash: str = Field(description="SHA-256 of the policy's canonical form, as in the manifest.")


class ProofCategoryPublic(_Model):
    category: str = Field(description="Category key.")
    records: int = Field(description="The member's records of this category in the snapshot (0 if none).")
    allowed: bool = Field(description="The decision for (member, category, purpose) as of (T, W).")
    legal_basis: str | None = Field(description="Legal basis in the member's region, if any.")
    reasons: list[ReasonPublic] = Field(
        description="The decision's reasons, in order, as decide() gives them."
    )
    evidence: list[int] = Field(description="Seqs of the ledger events the decision rests on.")


class ProofDeniedPublic(_Model):
    categories: list[str] = Field(description="Categories not allowed and not in the snapshot.")
    legal_basis: str | None = Field(description="Legal basis in the member's region, if any.")
    reasons: list[ReasonPublic] = Field(
        description="The reasons they share; '{category}' in a text stands for each category listed."
    )
    evidence: list[int] = Field(description="Seqs of the ledger events the decisions rest on.")


class ProofEventPublic(_Model):
    """A ledger event with every field its hash covers, and the hash recomputed from them."""

    seq: int = Field(description="Ledger sequence number (at most the watermark).")
    member_id: int = Field(description="The member.")
    kind: str = Field(description="Event kind, e.g. setting_changed.")
    key: str = Field(description="Event key, e.g. a setting key or an objection reference.")
    value: str = Field(description="Event value as stored.")
    effective_at: datetime = Field(description="When it took effect (UTC).")
    effective_at_us: int = Field(description="The same, in microseconds since the epoch (hashed so).")
    recorded_at: datetime = Field(description="When it was recorded (UTC).")
    recorded_at_us: int = Field(description="The same, in microseconds since the epoch (hashed so).")
    source: str = Field(description="member, import, gpc, dpo or system.")
    actor: str = Field(description="Who caused it.")
    idempotency_key: str = Field(description="The event's idempotency key.")
    prev_hash: str = Field(description="Hash of the event before it.")
    hash: str = Field(description="The hash the ledger stores.")
    digest: str = Field(description="The hash recomputed from the fields above.")
    digest_ok: bool = Field(description="Whether digest equals hash.")


class MemberProofPublic(_Model):
    """Whether and why a member's data is in a snapshot (``consentgate snapshot prove --json``)."""

    format: str = Field(description="consentgate.member-proof/1")
    ok: bool = Field(description="True only when problems is empty.")
    problems: list[ProofProblemPublic] = Field(description="Everything that does not check out.")
    snapshot_id: str = Field(description="Snapshot id.")
    kind: str = Field(description="snapshot or gate.")
    purpose: str = Field(description="The purpose the snapshot was built for.")
    as_of: datetime = Field(description="The snapshot's as-of instant T (UTC).")
    watermark: int = Field(description="The snapshot's ledger watermark W.")
    hash_at_watermark: str | None = Field(description="The ledger's chain hash at W, from the manifest.")
    manifest_sha256: str | None = Field(description="SHA-256 of manifest.json as read; null if missing.")
    registered_manifest_sha256: str = Field(description="SHA-256 of the manifest the registry holds.")
    policy: ProofPolicyPublic | None = Field(description="The policy in force at T that decided.")
    member_id: int = Field(description="The member.")
    region: str | None = Field(description="The member's region as of (T, W); null if unknown.")
    included: bool = Field(description="Whether the snapshot's lineage holds records of the member.")
    records: int = Field(description="The member's records in the snapshot.")
    categories: list[ProofCategoryPublic] = Field(
        description="Every category allowed for the member or with records in the snapshot."
    )
    denied: list[ProofDeniedPublic] = Field(description="Every other category, grouped by reasons.")
    evidence: list[ProofEventPublic] = Field(description="The ledger events the decisions rest on.")


SettingsPublic.model_rebuild()
MemberLineagePublic.model_rebuild()
