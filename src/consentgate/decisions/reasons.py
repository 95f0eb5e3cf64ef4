"""Decisions and their reasons: every "no" says why, every "yes" says on what basis."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from consentgate.ledger.events import LedgerEvent
from consentgate.timeutil import format_instant


class ReasonCode(StrEnum):
    # Why not (in the order they are checked).
    unknown_purpose = "unknown_purpose"
    unknown_category = "unknown_category"
    policy_not_in_force = "policy_not_in_force"
    purpose_not_in_policy = "purpose_not_in_policy"
    unknown_member = "unknown_member"
    record_after_as_of = "record_after_as_of"
    region_unknown = "region_unknown"
    region_excluded = "region_excluded"
    category_never_used = "category_never_used"
    category_out_of_scope = "category_out_of_scope"
    member_minor = "member_minor"
    age_unknown = "age_unknown"
    setting_off = "setting_off"
    setting_default_off = "setting_default_off"
    consent_not_given = "consent_not_given"
    objection_pending = "objection_pending"
    objection_upheld = "objection_upheld"
    # On what basis.
    policy_in_force = "policy_in_force"
    legal_basis = "legal_basis"
    setting_on = "setting_on"
    setting_default_on = "setting_default_on"
    objection_rejected = "objection_rejected"
    objection_pending_not_restricting = "objection_pending_not_restricting"


DENIALS = frozenset(
    {
        ReasonCode.unknown_purpose,
        ReasonCode.unknown_category,
        ReasonCode.policy_not_in_force,
        ReasonCode.purpose_not_in_policy,
        ReasonCode.unknown_member,
        ReasonCode.record_after_as_of,
        ReasonCode.region_unknown,
        ReasonCode.region_excluded,
        ReasonCode.category_never_used,
        ReasonCode.category_out_of_scope,
        ReasonCode.member_minor,
        ReasonCode.age_unknown,
        ReasonCode.setting_off,
        ReasonCode.setting_default_off,
        ReasonCode.consent_not_given,
        ReasonCode.objection_pending,
        ReasonCode.objection_upheld,
    }
)


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    message: str
    seq: int | None = None
    """The ledger event that is evidence for this reason, if any."""
    setting: str | None = None
    reference: str | None = None

    @property
    def denies(self) -> bool:
        return self.code in DENIALS

    def label(self) -> str:
        """``setting_off(seq=12)``: the compact form used in tables and summaries."""
        return f"{self.code}(seq={self.seq})" if self.seq is not None else str(self.code)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.setting is not None:
            out["setting"] = self.setting
        if self.reference is not None:
            out["reference"] = self.reference
        return out


@dataclass(frozen=True)
class Decision:
    """Whether ``member`` may have ``category`` used for ``purpose`` at ``at``, and why."""

    allowed: bool
    member_id: int
    category: str
    purpose: str
    at: datetime
    reasons: tuple[Reason, ...]
    policy_id: str | None = None
    policy_version: int | None = None
    legal_basis: str | None = None
    region: str | None = None
    watermark: int | None = None
    evidence: tuple[LedgerEvent, ...] = field(default=())

    @property
    def denials(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.denies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "member_id": self.member_id,
            "category": self.category,
            "purpose": self.purpose,
            "at": format_instant(self.at),
            "watermark": self.watermark,
            "policy": None
            if self.policy_id is None
            else {"id": self.policy_id, "version": self.policy_version},
            "legal_basis": self.legal_basis,
            "region": self.region,
            "reasons": [r.to_dict() for r in self.reasons],
            "evidence": [
                {
                    "seq": e.seq,
                    "kind": e.kind,
                    "key": e.key,
                    "value": e.value,
                    "effective_at": format_instant(e.effective),
                    "recorded_at": format_instant(e.recorded),
                    "source": e.source,
                    "actor": e.actor,
                }
                for e in self.evidence
            ],
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision without what only its member has (evidence, seqs, times, references, wording).

    What an ad server asks of a consent check: allowed or not, by which codes, under which policy,
    basis and region. Every member whose decision inputs are the same shares one verdict, so
    :func:`~consentgate.decisions.engine.decide_many` decides once per class of members and
    (category, purpose), and ``Verdict.of(decide(...))`` is what it answers for each question.
    """

    allowed: bool
    reasons: tuple[tuple[ReasonCode, str | None], ...]
    """(code, setting) in the decision's order; the setting is None where the reason names none."""
    policy_id: str | None
    policy_version: int | None
    legal_basis: str | None
    region: str | None

    @classmethod
    def of(cls, decision: Decision) -> Verdict:
        return cls(
            allowed=decision.allowed,
            reasons=tuple((r.code, r.setting) for r in decision.reasons),
            policy_id=decision.policy_id,
            policy_version=decision.policy_version,
            legal_basis=decision.legal_basis,
            region=decision.region,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "policy": None
            if self.policy_id is None
            else {"id": self.policy_id, "version": self.policy_version},
            "legal_basis": self.legal_basis,
            "region": self.region,
            "reasons": [
                {"code": str(code)} if setting is None else {"code": str(code), "setting": setting}
                for code, setting in self.reasons
            ],
        }
