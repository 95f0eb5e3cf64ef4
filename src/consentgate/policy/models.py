"""The policy schema: what a policy file may say, validated by pydantic.

A policy states, for each purpose and region, whether the purpose applies, on what legal basis,
which settings control it, which categories are in scope and which are never used, whether minors
are excluded and how an objection acts. Field descriptions here are reused in the JSON schema.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from consentgate.taxonomy.models import CategoryKey, PurposeKey, RegionKey, SettingKey
from consentgate.timeutil import EARLIEST, LATEST, ensure_utc, out_of_range


class LegalBasis(StrEnum):
    consent = "consent"
    """GDPR Art. 6(1)(a): nothing is used until the member says yes."""
    legitimate_interest = "legitimate_interest"
    """GDPR Art. 6(1)(f): used unless the member objects or switches it off (Art. 21)."""
    contract = "contract"
    """GDPR Art. 6(1)(b): needed to provide the service the member asked for."""
    notice = "notice"
    """Outside the GDPR: used after notice, with an opt-out."""


class ObjectionMode(StrEnum):
    restrict_on_receipt = "restrict_on_receipt"
    """Processing stops when the objection arrives (Art. 18(1)(d)) until the DPO decides."""
    continue_until_decided = "continue_until_decided"
    """Processing goes on while the objection is weighed (not recommended; for comparison)."""


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no UTC offset (expected e.g. 2025-11-03T00:00:00Z)")
    try:
        utc = ensure_utc(value, field="effective_from")
    except OverflowError:  # 9999-12-31T23:59-01:00 is year 10000 in UTC, which datetime cannot hold
        raise ValueError(out_of_range(value.isoformat())) from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(out_of_range(value.isoformat()))
    return utc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionRule(_Strict):
    """How a purpose applies in one region. A region without a rule is excluded."""

    legal_basis: LegalBasis = Field(description="The legal basis for the purpose in this region")
    controlled_by: tuple[SettingKey, ...] = Field(
        default=(), description="Settings that must be on (explicitly or by default) for use"
    )
    categories: tuple[CategoryKey, ...] | None = Field(
        default=None, description="Narrows the purpose's categories in this region"
    )
    category_basis: dict[CategoryKey, LegalBasis] = Field(
        default_factory=dict,
        description="A different legal basis for some categories (e.g. inferred data on consent)",
    )
    note: str | None = Field(
        default=None, max_length=2000, description="Why the rule is as it is (source, doubt)"
    )

    def basis_for(self, category: str) -> LegalBasis:
        return self.category_basis.get(category, self.legal_basis)


class PurposeRule(_Strict):
    """One purpose of the policy."""

    categories: tuple[CategoryKey, ...] = Field(description="Categories in scope for the purpose")
    never_used: tuple[CategoryKey, ...] = Field(
        default=(), description="Categories never used for the purpose, whatever the settings"
    )
    exclude_minors: bool = Field(default=True, description="Members under 18 are excluded")
    objection: ObjectionMode = Field(
        default=ObjectionMode.restrict_on_receipt, description="How a pending objection acts"
    )
    gpc: bool = Field(default=False, description="A Global Privacy Control signal opts out of this purpose")
    regions: dict[RegionKey, RegionRule] = Field(
        description="Per-region rules; a region not listed is excluded from the purpose"
    )


class PolicyOptions(_Strict):
    exclude_unknown_age: bool = Field(
        default=False, description="Treat members with no birth date and no minor flag as minors"
    )


class Policy(_Strict):
    """A versioned policy. The version in force at T decides for T."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100, description="Policy id")]
    version: Annotated[
        int, Field(ge=1, le=1_000_000, strict=True, description="Version number, increasing (1 to 1,000,000)")
    ]
    title: str = Field(
        min_length=1, max_length=200, description="Human-readable title (up to 200 characters)"
    )
    effective_from: Annotated[datetime, AfterValidator(_aware)] = Field(
        description="Instant (with offset) from which this version is in force"
    )
    summary: str = Field(
        default="", max_length=5000, description="What the regime is, in plain words (up to 5,000 characters)"
    )
    changes: tuple[Annotated[str, Field(min_length=1, max_length=1000)], ...] = Field(
        default=(),
        max_length=50,
        description="What changed against the previous version, for the member notice (up to 50 points"
        " of up to 1,000 characters)",
    )
    options: PolicyOptions = Field(default_factory=PolicyOptions)
    setting_defaults: dict[SettingKey, dict[RegionKey, bool]] = Field(
        default_factory=dict,
        description="Overrides of the taxonomy's regional defaults while this policy is in force",
    )
    purposes: dict[PurposeKey, PurposeRule] = Field(description="The purposes this policy governs")

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON form; recorded in snapshot manifests."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
