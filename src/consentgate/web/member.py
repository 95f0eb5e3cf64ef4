"""What the portal shows a member and what it records for them, independent of HTTP.

Every change is a ledger event appended through ``Ledger.append``; the receipt is the stored event
(sequence number and hash), so a member can later prove what they chose and when.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consentgate.decisions.engine import member_state
from consentgate.exceptions import InputError, NotFoundError
from consentgate.ledger.events import EventDraft, EventKind, LedgerEvent, Source
from consentgate.ledger.state import MemberState
from consentgate.policy.models import LegalBasis, Policy
from consentgate.policy.timeline import diff_policies
from consentgate.taxonomy.models import Setting, SettingKind
from consentgate.web.state import Portal

USE_PREFIXES = ("genai.", "ml.", "ads.", "marketing.")
"""Purposes that count as "AI training or advertising" for the one action that stops them all."""


@dataclass(frozen=True)
class PurposeUse:
    purpose: str
    name: str
    basis: LegalBasis | None
    """Legal basis in the member's region under the policy in force; None: not used there."""


@dataclass(frozen=True)
class SettingRow:
    setting: Setting
    value: bool | None
    """Current value (explicit or default); None for action entries that hold no value."""
    explicit: LedgerEvent | None
    """The member's last change, if they ever made one."""
    default: bool | None
    uses: tuple[PurposeUse, ...]

    @property
    def key(self) -> str:
        return self.setting.key

    @property
    def is_toggle(self) -> bool:
        return self.setting.kind is SettingKind.toggle

    @property
    def active_uses(self) -> tuple[PurposeUse, ...]:
        """The uses that apply in the member's region under the policy in force."""
        return tuple(u for u in self.uses if u.basis is not None)

    @property
    def controls_use(self) -> bool:
        """Whether switching it off stops some AI training or advertising use."""
        return self.is_toggle and any(u.purpose.startswith(USE_PREFIXES) for u in self.uses)


@dataclass(frozen=True)
class Section:
    group: str
    name: str
    rows: tuple[SettingRow, ...]


@dataclass(frozen=True)
class SettingsView:
    state: MemberState
    region: str | None
    policy: Policy | None
    sections: tuple[Section, ...]

    def rows(self) -> list[SettingRow]:
        return [row for section in self.sections for row in section.rows]

    def row(self, key: str) -> SettingRow:
        for row in self.rows():
            if row.key == key:
                return row
        raise NotFoundError(f"unknown setting {key!r}")


@dataclass(frozen=True)
class Notice:
    policy: Policy
    previous: Policy | None
    changes: tuple[str, ...]
    """The policy's own description of what changed, for members."""
    rule_changes: tuple[str, ...]
    """The rule-level differences derived from the two policy files."""


def _state(portal: Portal, member_id: int, at: datetime) -> MemberState:
    state = member_state(portal.ledger, member_id, at)
    if not state.known:
        raise NotFoundError(f"member {member_id} is not in the ledger")
    return state


def settings_view(portal: Portal, member_id: int, at: datetime) -> SettingsView:
    """Every setting of the taxonomy for this member at ``at``, grouped as on the operator's pages."""
    state = _state(portal, member_id, at)
    region = portal.taxonomy.region_of(state.country) if state.country else None
    policy = portal.timeline.in_force(at)
    grouped: dict[tuple[str, str], list[SettingRow]] = {}
    for setting in portal.taxonomy.settings.values():
        uses = tuple(_uses(portal, policy, setting, region))
        default: bool | None = None
        value: bool | None = None
        explicit = state.settings.get(setting.key)
        if setting.kind is SettingKind.toggle:
            default = portal.engine.default_for(policy, setting.key, region) if policy and region else False
            value = (explicit.value == "true") if explicit is not None else default
        row = SettingRow(setting, value, explicit, default, uses)
        grouped.setdefault((str(setting.group), setting.section), []).append(row)
    sections = tuple(Section(group, name, tuple(rows)) for (group, name), rows in grouped.items())
    return SettingsView(state, region, policy, sections)


def _uses(portal: Portal, policy: Policy | None, setting: Setting, region: str | None) -> list[PurposeUse]:
    out: list[PurposeUse] = []
    seen: set[str] = set()
    for control in setting.controls:
        if control.purpose in seen:
            continue
        seen.add(control.purpose)
        basis = None
        if policy is not None and region is not None:
            rule = policy.purposes.get(control.purpose)
            region_rule = None if rule is None else rule.regions.get(region)
            basis = None if region_rule is None else region_rule.legal_basis
        out.append(PurposeUse(control.purpose, portal.taxonomy.purposes[control.purpose].name, basis))
    return out


def _draft(
    member_id: int, key: str, value: bool, source: Source, actor: str, idempotency_key: str
) -> EventDraft:
    return EventDraft(
        member_id,
        EventKind.setting_changed,
        key,
        "true" if value else "false",
        None,
        source,
        actor,
        idempotency_key,
    )


def change_setting(
    portal: Portal,
    *,
    member_id: int,
    key: str,
    value: bool,
    actor: str,
    idempotency_key: str | None = None,
    source: Source = Source.member,
) -> LedgerEvent:
    """Record the member's choice; the stored event is the receipt. Retries with the same key are safe."""
    portal.taxonomy.toggle(key)
    if not portal.known_member(member_id):
        raise NotFoundError(f"member {member_id} is not in the ledger")
    key_ = idempotency_key or f"setting:{uuid.uuid4().hex}"
    [event] = portal.append([_draft(member_id, key, value, source, actor, key_)])
    return event


def use_none_plan(view: SettingsView) -> list[SettingRow]:
    """The settings the one action would switch off: those now on that allow AI training or ads."""
    return [row for row in view.rows() if row.controls_use and row.value]


def use_none(
    portal: Portal, *, member_id: int, actor: str, keys: Sequence[str] | None = None
) -> list[LedgerEvent]:
    """Switch off every setting that allows AI training or advertising, in one atomic append.

    ``keys`` is what the confirmation page listed; the action switches off exactly those that are
    still on, so a member is never surprised by a change they were not shown.
    """
    view = settings_view(portal, member_id, portal.now())
    plan = use_none_plan(view)
    if keys is not None:
        listed = set(keys)
        plan = [row for row in plan if row.key in listed]
    if not plan:
        return []
    batch = uuid.uuid4().hex
    drafts = [
        _draft(member_id, row.key, False, Source.member, actor, f"use-none:{batch}:{row.key}") for row in plan
    ]
    return portal.append(drafts)


def pending_notice(portal: Portal, state: MemberState, at: datetime) -> Notice | None:
    """The notice to show: the policy in force has a predecessor and the member has not acknowledged it."""
    policy = portal.timeline.in_force(at)
    if policy is None or policy.ref in state.notices:
        return None
    previous = portal.timeline.previous(policy)
    if previous is None:
        return None
    registered = state.registered
    if registered is not None and registered.effective >= policy.effective_from:
        return None  # joined under this policy: they agreed to it when they signed up
    rule_changes = tuple(c.describe() for c in diff_policies(previous, policy))
    return Notice(policy, previous, policy.changes, rule_changes)


def acknowledge_notice(portal: Portal, *, member_id: int, policy_ref: str, actor: str) -> LedgerEvent:
    """Record that the member read the notice. It records nothing else: no choice is implied."""
    portal.timeline.get(policy_ref)
    [event] = portal.append(
        [
            EventDraft(
                member_id,
                EventKind.notice_acknowledged,
                policy_ref,
                "acknowledged",
                None,
                Source.member,
                actor,
                f"notice:{member_id}:{policy_ref}",
            )
        ]
    )
    return event


def apply_gpc(portal: Portal, *, member_id: int, at: datetime) -> list[LedgerEvent]:
    """A ``Sec-GPC: 1`` request: opt out of GPC-governed purposes where the member never chose.

    Only settings the member never set explicitly are touched (an explicit choice, either way, wins
    over the browser signal). The idempotency key makes repeated signals record the opt-out once.
    """
    policy = portal.timeline.in_force(at)
    state = _state(portal, member_id, at)
    region = portal.taxonomy.region_of(state.country) if state.country else None
    if policy is None or region is None:
        return []
    keys: list[str] = []
    for rule in policy.purposes.values():
        region_rule = rule.regions.get(region)
        if not rule.gpc or region_rule is None:
            continue
        for key in region_rule.controlled_by:
            if key not in keys and key not in state.settings:
                keys.append(key)
    drafts = [_draft(member_id, key, False, Source.gpc, "gpc", f"gpc:{member_id}:{key}") for key in keys]
    return portal.append(drafts) if drafts else []


def objectionable_purposes(portal: Portal, member_id: int, at: datetime) -> list[tuple[str, str, bool]]:
    """Purposes the member may object to (Art. 21): legitimate-interest ones in their region.

    Returns (purpose, name, direct_marketing). Direct-marketing objections are always honoured.
    """
    state = _state(portal, member_id, at)
    policy = portal.timeline.in_force(at)
    region = portal.taxonomy.region_of(state.country) if state.country else None
    if policy is None or region is None:
        return []
    out: list[tuple[str, str, bool]] = []
    for key, rule in policy.purposes.items():
        region_rule = rule.regions.get(region)
        if region_rule is None:
            continue
        bases = {region_rule.legal_basis, *region_rule.category_basis.values()}
        if LegalBasis.legitimate_interest in bases:
            purpose = portal.taxonomy.purposes[key]
            out.append((key, purpose.name, purpose.direct_marketing))
    return out


def parse_bool(value: str, field: str) -> bool:
    if value in ("true", "on", "1"):
        return True
    if value in ("false", "off", "0"):
        return False
    raise InputError(f"{field}: expected true or false, not {value!r}")
