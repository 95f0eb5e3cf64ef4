"""What the member can do about what the inspection found: the switches, the objection, in facts.

Language-neutral: ``render.py`` words it in English or German. Every fact here comes from the one
policy engine or from the policy and taxonomy data:

- a switch *stops* a use when the engine, asked again with only that switch off, no longer allows a
  category of a file it allowed (so a switch that governs a purpose on paper but is not what lets
  this member's data be used is not listed);
- a use that no switch stops rests on a basis with no switch in the member's region: only an
  objection (Art. 21) reaches it;
- the purposes for the objection letter are those whose rule in the member's region rests on
  legitimate interest for some category found in the archive (``RegionRule.basis_for``); the
  direct-marketing paragraph names the purposes the taxonomy marks as direct marketing that use
  data found in the archive (an Art. 21(2) objection needs no grounds and is always honoured).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from consentgate.decisions.engine import DecisionEngine
from consentgate.decisions.reasons import ReasonCode
from consentgate.inspect.inspector import FileReport, Inspection, member_state
from consentgate.policy.models import LegalBasis
from consentgate.taxonomy import Controller, Operator, Setting, SettingKind, Text, load_operator

SWITCH_OFF_CODES = frozenset(
    {ReasonCode.setting_off, ReasonCode.setting_default_off, ReasonCode.consent_not_given}
)


@dataclass(frozen=True)
class Use:
    """One purpose's use of one file's data, as the inspection found it."""

    purpose: str
    path: str
    kind: str
    label: dict[str, str]
    records: int


@dataclass
class Switch:
    """A setting that is on for the member and would stop uses found in the archive."""

    setting: Setting
    menu: tuple[Text, ...]
    """Settings → group → section → label, as the operator's pages name them."""
    uses: list[Use] = field(default_factory=list)

    def purposes(self) -> list[str]:
        return sorted({u.purpose for u in self.uses}, key=purpose_order)


@dataclass(frozen=True)
class DataKind:
    """A kind of data found in the archive, with its rows (for the letter)."""

    kind: str
    label: dict[str, str]
    files: tuple[str, ...]
    records: int


@dataclass
class Advice:
    switches: list[Switch]
    """In the order of the operator's settings pages (the taxonomy's order)."""
    unswitchable: dict[str, list[Use]]
    """purpose → uses that no switch stops (only an objection reaches them), with the legal basis."""
    bases: dict[str, str]
    """purpose → the legal basis (in the member's region) of the uses found."""
    legitimate_interest: list[str]
    """Purposes resting on legitimate interest in the member's region, for the data found."""
    direct_marketing: list[str]
    """Purposes of direct marketing that apply in the member's region and use data found."""
    kinds: list[DataKind]
    controller: Controller
    operator: Operator
    used: dict[str, list[Use]]
    """purpose → every use found (``used`` treatment), for the report's summary."""


def menu_path(setting: Setting, operator: Operator) -> tuple[Text, ...]:
    section = operator.menu.sections.get(setting.section)
    return (
        operator.menu.settings,
        operator.menu.groups[setting.group],
        section if section is not None else Text(en=setting.section, de=setting.section),
        setting.label,
    )


def _uses(result: Inspection) -> dict[str, list[Use]]:
    used: dict[str, list[Use]] = defaultdict(list)
    for f in result.files:
        if f.kind is None:
            continue
        for purpose, verdict in f.purposes.items():
            if verdict.treatment == "used":
                used[purpose].append(Use(purpose, f.path, f.kind, f.label, f.records))
    return dict(used)


def _file(result: Inspection, path: str) -> FileReport:
    return next(f for f in result.files if f.path == path)


def advise(result: Inspection, engine: DecisionEngine) -> Advice:
    operator = load_operator()
    used = _uses(result)
    policy = engine.timeline.in_force(result.at)
    toggles = [s for s in engine.taxonomy.settings.values() if s.kind is SettingKind.toggle]
    switches: list[Switch] = []
    stopped: set[tuple[str, str]] = set()
    for setting in toggles:
        governed = [
            (u, c)
            for purpose, uses in used.items()
            for u in uses
            for c in result_file_allowed(result, u)
            if setting.governs(purpose, c)
        ]
        if not governed:
            continue
        off = member_state(
            country=result.country,
            birth_date=result.birth_date,
            settings={**result.settings, setting.key: False},
            at=result.at,
        )
        switch = Switch(setting, menu_path(setting, operator))
        for use, category in governed:
            decision = engine.decide_state(off, category, use.purpose)
            if not decision.allowed and any(r.code in SWITCH_OFF_CODES for r in decision.denials):
                if use not in switch.uses:
                    switch.uses.append(use)
                stopped.add((use.purpose, use.path))
        if switch.uses:
            switches.append(switch)
    unswitchable: dict[str, list[Use]] = {}
    for purpose, uses in used.items():
        rest = [u for u in uses if (purpose, u.path) not in stopped]
        if rest:
            unswitchable[purpose] = rest
    bases: dict[str, str] = {}
    legitimate: list[str] = []
    marketing: list[str] = []
    region = result.region
    if policy is not None and region is not None:
        found = {c for f in result.files for c in f.categories}
        for purpose, rule in policy.purposes.items():
            region_rule = rule.regions.get(region)
            if region_rule is None:
                continue
            in_scope = [c for c in found if c in rule.categories and c not in rule.never_used]
            if region_rule.categories is not None:
                in_scope = [c for c in in_scope if c in region_rule.categories]
            basis = sorted({str(region_rule.basis_for(c)) for c in in_scope})
            if basis:
                bases[purpose] = ", ".join(basis)
            if any(region_rule.basis_for(c) is LegalBasis.legitimate_interest for c in in_scope):
                legitimate.append(purpose)
            if engine.taxonomy.purposes[purpose].direct_marketing and purpose in used:
                marketing.append(purpose)
    order = purpose_order
    return Advice(
        switches=switches,
        unswitchable={p: unswitchable[p] for p in sorted(unswitchable, key=order)},
        bases=bases,
        legitimate_interest=sorted(legitimate, key=order),
        direct_marketing=sorted(marketing, key=order),
        kinds=_kinds(result, legitimate or list(used)),
        controller=operator.controller_for(region),
        operator=operator,
        used={p: used[p] for p in sorted(used, key=order)},
    )


HEADLINE_PURPOSES = (
    "genai.training",
    "genai.affiliate_training",
    "ads.personalization",
    "ads.offsite",
    "ads.affiliate_sharing",
)
"""The purposes the seeds are about, shown first (DESIGN §8); the others follow by key."""


def purpose_order(purpose: str) -> tuple[int, str]:
    """The order of purposes in every report: the headline purposes first, then by key."""
    if purpose in HEADLINE_PURPOSES:
        return (HEADLINE_PURPOSES.index(purpose), "")
    return (len(HEADLINE_PURPOSES), purpose)


def result_file_allowed(result: Inspection, use: Use) -> tuple[str, ...]:
    """The categories of ``use``'s file that the engine allowed for its purpose."""
    return _file(result, use.path).purposes[use.purpose].allowed


def _kinds(result: Inspection, purposes: list[str]) -> list[DataKind]:
    """The kinds of data found that ``purposes`` use (the objection is about those), largest first."""
    files: dict[str, list[FileReport]] = defaultdict(list)
    for f in result.files:
        if f.kind is None or not f.records:
            continue
        if any(f.purposes[p].treatment == "used" for p in purposes if p in f.purposes):
            files[f.kind].append(f)
    return [
        DataKind(kind, group[0].label, tuple(f.path for f in group), sum(f.records for f in group))
        for kind, group in sorted(files.items(), key=lambda item: -sum(f.records for f in item[1]))
    ]
