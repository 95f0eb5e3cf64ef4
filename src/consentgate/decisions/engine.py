"""``decide()``: one policy engine for every path (single decision, bulk, portal, inspector).

The checks run in a fixed order. Structural failures (unknown purpose, category, member, no policy)
stop evaluation; after them every applicable reason is collected, so an explanation lists all the
grounds for a "no", not only the first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from consentgate.decisions.reasons import Decision, Reason, ReasonCode, Verdict
from consentgate.ledger.events import LedgerEvent
from consentgate.ledger.state import MemberState, ObjectionOutcome, is_minor_on, resolve_member
from consentgate.ledger.store import Ledger
from consentgate.policy.models import LegalBasis, ObjectionMode, Policy, PurposeRule, RegionRule
from consentgate.policy.timeline import Timeline
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import ensure_utc, format_instant, to_micros


@dataclass(frozen=True, slots=True)
class Question:
    """One question of a bulk request: may ``member_id``'s ``category`` be used for ``purpose``?

    ``at`` defaults to the call's ``now``; ``created_at`` is the record's, when the caller knows it.
    """

    member_id: int
    category: str
    purpose: str
    at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Scope:
    """The compiled rule for (policy, purpose, region, category): computed once, then reused."""

    rule: PurposeRule
    region_rule: RegionRule | None
    basis: LegalBasis | None
    in_scope: bool
    never_used: bool
    governing: tuple[str, ...]


class DecisionEngine:
    """Decides from a member's as-of state, a taxonomy and a policy timeline. Pure: no I/O."""

    def __init__(self, taxonomy: Taxonomy, timeline: Timeline) -> None:
        self.taxonomy = taxonomy
        self.timeline = timeline
        self._scopes: dict[tuple[str, str, str, str], _Scope] = {}

    def _scope(self, policy: Policy, rule: PurposeRule, purpose: str, region: str, category: str) -> _Scope:
        cache_key = (policy.ref, purpose, region, category)
        scope = self._scopes.get(cache_key)
        if scope is None:
            region_rule = rule.regions.get(region)
            in_scope = category in rule.categories and (
                region_rule is None or region_rule.categories is None or category in region_rule.categories
            )
            governing: tuple[str, ...] = ()
            if region_rule is not None:
                governing = tuple(
                    key
                    for key in region_rule.controlled_by
                    if self.taxonomy.settings[key].governs(purpose, category)
                )
            scope = _Scope(
                rule=rule,
                region_rule=region_rule,
                basis=None if region_rule is None else region_rule.basis_for(category),
                in_scope=in_scope,
                never_used=category in rule.never_used,
                governing=governing,
            )
            self._scopes[cache_key] = scope
        return scope

    def governing(self, policy: Policy, purpose: str, region: str, category: str) -> tuple[str, ...]:
        """The settings whose values decide (purpose, category) for a member in ``region``.

        ``decide_state`` reads no other setting for this pair: bulk callers may share one decision
        among members who differ only in other settings.
        """
        rule = policy.purposes.get(purpose)
        if rule is None:
            return ()
        return self._scope(policy, rule, purpose, region, category).governing

    def default_for(self, policy: Policy, setting: str, region: str) -> bool:
        """A setting's value for a member who never chose: the policy's override, else the taxonomy's."""
        override = policy.setting_defaults.get(setting, {}).get(region)
        if override is not None:
            return override
        return self.taxonomy.settings[setting].defaults.get(region, False)

    def verdict_key(self, state: MemberState, category: str, purpose: str, *, late: bool) -> Hashable:
        """Everything :meth:`decide_state` reads to reach its verdict for this question, as one key.

        Two questions with equal keys get equal verdicts (``Verdict.of``), whatever else differs
        between the two members: their seqs, times, sources, references, other settings. The key
        holds, in the order the checks read them: the instant and watermark, the question, whether
        the record is later than the instant, registration, the country as stored, the age facts as
        the minors check reads them, the values of the settings governing (purpose, category) in the
        member's region, and the outcomes of the member's objections covering the purpose.
        """
        birth = state.birth_date
        country = state.country
        governing: tuple[str, ...] = ()
        policy = self.timeline.in_force(state.at)
        if policy is not None and country is not None:
            region = self.taxonomy.region_of(country)
            if region is not None:
                governing = self.governing(policy, purpose, region, category)
        settings = state.settings
        return (
            state.at,
            state.watermark,
            category,
            purpose,
            late,
            state.known,
            country,
            None if birth is None else is_minor_on(birth, state.at),
            state.believed_minor,
            tuple(None if (e := settings.get(k)) is None else e.value == "true" for k in governing),
            tuple(s.outcome for s in state.objections.values() if s.covers(purpose)),
        )

    def verdicts(
        self, questions: Sequence[Question], states: Mapping[tuple[int, datetime], MemberState], now: datetime
    ) -> list[Verdict]:
        """One verdict per question, in order; ``states`` holds each (member, instant) asked about.

        Each distinct :meth:`verdict_key` is decided once, by :meth:`decide_state` on the real state
        of the first member who has it; every other question with that key shares the answer.
        """
        now = ensure_utc(now, field="now")
        answers: dict[Hashable, Verdict] = {}
        out: list[Verdict] = []
        for question in questions:
            at = now if question.at is None else ensure_utc(question.at, field="at")
            state = states[(question.member_id, at)]
            created = question.created_at
            late = created is not None and ensure_utc(created) > at
            key = self.verdict_key(state, question.category, question.purpose, late=late)
            verdict = answers.get(key)
            if verdict is None:
                decision = self.decide_state(state, question.category, question.purpose, created_at=created)
                verdict = answers[key] = Verdict.of(decision)
            out.append(verdict)
        return out

    def decide_state(
        self,
        state: MemberState,
        category: str,
        purpose: str,
        *,
        created_at: datetime | None = None,
    ) -> Decision:
        """Decide for one member whose state as of (T, W) is ``state``; T is ``state.at``."""
        at = state.at
        reasons: list[Reason] = []
        evidence: list[LedgerEvent] = []

        def finish(
            policy: Policy | None = None, basis: LegalBasis | None = None, region: str | None = None
        ) -> Decision:
            allowed = not any(r.denies for r in reasons)
            return Decision(
                allowed=allowed,
                member_id=state.member_id,
                category=category,
                purpose=purpose,
                at=at,
                reasons=tuple(reasons),
                policy_id=None if policy is None else policy.id,
                policy_version=None if policy is None else policy.version,
                legal_basis=None if basis is None else str(basis),
                region=region,
                watermark=state.watermark,
                evidence=tuple(sorted({e.seq: e for e in evidence}.values(), key=lambda e: e.seq)),
            )

        # 1. Structure: the vocabulary, the policy, the member.
        if purpose not in self.taxonomy.purposes:
            reasons.append(Reason(ReasonCode.unknown_purpose, f"{purpose!r} is not a known purpose"))
        if category not in self.taxonomy.categories:
            reasons.append(Reason(ReasonCode.unknown_category, f"{category!r} is not a known category"))
        policy = self.timeline.in_force(at)
        if policy is None:
            reasons.append(
                Reason(ReasonCode.policy_not_in_force, f"no policy is in force at {format_instant(at)}")
            )
        if not state.known:
            reasons.append(
                Reason(
                    ReasonCode.unknown_member,
                    f"member {state.member_id} is not in the ledger as of this time",
                )
            )
        if reasons or policy is None:
            return finish(policy)
        rule = policy.purposes.get(purpose)
        if rule is None:
            reasons.append(
                Reason(ReasonCode.purpose_not_in_policy, f"{policy.ref} does not provide for {purpose}")
            )
            return finish(policy)
        if state.registered is not None:
            evidence.append(state.registered)

        # 2. The record itself.
        if created_at is not None and ensure_utc(created_at) > at:
            reasons.append(
                Reason(
                    ReasonCode.record_after_as_of,
                    f"the record was created at {format_instant(created_at)}, after the as-of time",
                )
            )

        # 3. Where the member is.
        country_event = state.facts.get("country")
        region = self.taxonomy.region_of(state.country) if state.country else None
        if country_event is not None:
            evidence.append(country_event)
        if region is None:
            reasons.append(
                Reason(
                    ReasonCode.region_unknown,
                    f"country {state.country!r} is not a known ISO 3166-1 code",
                    seq=None if country_event is None else country_event.seq,
                )
            )
            return finish(policy)
        scope = self._scope(policy, rule, purpose, region, category)
        if scope.region_rule is None:
            reasons.append(
                Reason(
                    ReasonCode.region_excluded,
                    f"{policy.ref} does not use data of members in {region} for {purpose}",
                    seq=None if country_event is None else country_event.seq,
                )
            )

        # 4. What the data is.
        if scope.never_used:
            reasons.append(Reason(ReasonCode.category_never_used, f"{category} is never used for {purpose}"))
        elif not scope.in_scope:
            reasons.append(
                Reason(ReasonCode.category_out_of_scope, f"{category} is not in scope of {purpose}")
            )

        # 5. Who the member is.
        if rule.exclude_minors:
            self._check_minor(state, policy, reasons, evidence)

        # 6. What the member chose.
        if scope.region_rule is not None and scope.basis is not None:
            self._check_settings(state, policy, scope, region, reasons, evidence)

        # 7. Objections (Art. 21) to this purpose.
        for status in state.objections.values():
            if not status.covers(purpose):
                continue
            evidence.append(status.received)
            outcome = status.outcome
            if outcome is ObjectionOutcome.pending:
                if rule.objection is ObjectionMode.restrict_on_receipt:
                    reasons.append(
                        Reason(
                            ReasonCode.objection_pending,
                            f"objection {status.reference} received {format_instant(status.received_at)}"
                            " is being weighed; processing is restricted meanwhile (Art. 18(1)(d))",
                            seq=status.received.seq,
                            reference=status.reference,
                        )
                    )
                else:
                    reasons.append(
                        Reason(
                            ReasonCode.objection_pending_not_restricting,
                            f"objection {status.reference} is pending; "
                            "this policy does not restrict processing meanwhile",
                            seq=status.received.seq,
                            reference=status.reference,
                        )
                    )
            else:
                assert status.decision is not None
                evidence.append(status.decision)
                code = (
                    ReasonCode.objection_upheld
                    if outcome is ObjectionOutcome.upheld
                    else ReasonCode.objection_rejected
                )
                verb = "upheld" if outcome is ObjectionOutcome.upheld else "rejected"
                reasons.append(
                    Reason(
                        code,
                        f"objection {status.reference} was {verb} on "
                        f"{format_instant(status.decision.effective)}: {status.decision_reason}",
                        seq=status.decision.seq,
                        reference=status.reference,
                    )
                )

        if not any(r.denies for r in reasons):
            reasons.insert(
                0, Reason(ReasonCode.policy_in_force, f"{policy.ref} is in force ({policy.title})")
            )
            reasons.insert(
                1,
                Reason(
                    ReasonCode.legal_basis,
                    f"legal basis in {region}: {scope.basis}",
                ),
            )
        return finish(policy, scope.basis, region)

    def _check_minor(
        self, state: MemberState, policy: Policy, reasons: list[Reason], evidence: list[LedgerEvent]
    ) -> None:
        birth_event = state.facts.get("birth_date")
        minor_event = state.facts.get("believed_minor")
        birth = state.birth_date
        if birth is not None and is_minor_on(birth, state.at):
            assert birth_event is not None
            evidence.append(birth_event)
            reasons.append(
                Reason(
                    ReasonCode.member_minor,
                    f"the member is under 18 (born {birth.isoformat()})",
                    seq=birth_event.seq,
                )
            )
        elif state.believed_minor:
            assert minor_event is not None
            evidence.append(minor_event)
            reasons.append(
                Reason(
                    ReasonCode.member_minor,
                    "the member is believed to be under 18",
                    seq=minor_event.seq,
                )
            )
        elif birth is None and state.believed_minor is None and policy.options.exclude_unknown_age:
            reasons.append(
                Reason(
                    ReasonCode.age_unknown,
                    "the member's age is unknown and the policy excludes unknown ages",
                )
            )

    def _check_settings(
        self,
        state: MemberState,
        policy: Policy,
        scope: _Scope,
        region: str,
        reasons: list[Reason],
        evidence: list[LedgerEvent],
    ) -> None:
        consent = scope.basis is LegalBasis.consent
        if consent and not scope.governing:
            reasons.append(
                Reason(ReasonCode.consent_not_given, "consent is needed and no setting can give it")
            )
            return
        for key in scope.governing:
            event = state.settings.get(key)
            if event is not None:
                evidence.append(event)
                if event.value == "true":
                    reasons.append(
                        Reason(
                            ReasonCode.setting_on,
                            f"{key} is on since {format_instant(event.effective)} ({event.source})",
                            seq=event.seq,
                            setting=key,
                        )
                    )
                else:
                    reasons.append(
                        Reason(
                            ReasonCode.setting_off,
                            f"{key} is off since {format_instant(event.effective)} ({event.source})",
                            seq=event.seq,
                            setting=key,
                        )
                    )
            elif consent:
                reasons.append(
                    Reason(
                        ReasonCode.consent_not_given,
                        f"{key} rests on consent in {region} and the member never switched it on",
                        setting=key,
                    )
                )
            elif self.default_for(policy, key, region):
                reasons.append(
                    Reason(
                        ReasonCode.setting_default_on,
                        f"{key} is on by default in {region}; the member never changed it",
                        setting=key,
                    )
                )
            else:
                reasons.append(
                    Reason(
                        ReasonCode.setting_default_off,
                        f"{key} is off by default in {region}; the member never changed it",
                        setting=key,
                    )
                )


def member_state(ledger: Ledger, member_id: int, at: datetime, watermark: int | None = None) -> MemberState:
    """The member's state as of (``at``, ``watermark``) read from the ledger."""
    at = ensure_utc(at, field="at")
    events = ledger.member_events(member_id, at=to_micros(at), watermark=watermark)
    return resolve_member(member_id, events, at=at, watermark=watermark)


def decide(
    engine: DecisionEngine,
    ledger: Ledger,
    member_id: int,
    category: str,
    purpose: str,
    at: datetime,
    *,
    watermark: int | None = None,
    created_at: datetime | None = None,
) -> Decision:
    """May ``member_id``'s ``category`` data be used for ``purpose`` at ``at``? With reasons."""
    state = member_state(ledger, member_id, at, watermark)
    return engine.decide_state(state, category, purpose, created_at=created_at)


def member_states(
    ledger: Ledger, member_ids: Sequence[int], at: datetime, watermark: int | None = None
) -> dict[int, MemberState]:
    """Many members' states as of (``at``, ``watermark``): the bulk form of :func:`member_state`."""
    at = ensure_utc(at, field="at")
    events = ledger.members_events(member_ids, at=to_micros(at), watermark=watermark)
    return {
        member_id: resolve_member(member_id, own, at=at, watermark=watermark)
        for member_id, own in events.items()
    }


def decide_many(
    engine: DecisionEngine,
    ledger: Ledger,
    questions: Sequence[Question],
    *,
    now: datetime,
    watermark: int | None = None,
) -> list[Verdict]:
    """``Verdict.of(decide(...))`` for every question, in order, at bulk speed.

    One state read per (member, instant) asked about, a few indexed queries for all of them, and one
    decision per class of members and (category, purpose): see :meth:`DecisionEngine.verdicts`.
    """
    now = ensure_utc(now, field="now")
    wanted: dict[datetime, set[int]] = {}
    for question in questions:
        at = now if question.at is None else ensure_utc(question.at, field="at")
        wanted.setdefault(at, set()).add(question.member_id)
    states: dict[tuple[int, datetime], MemberState] = {}
    for at, members in wanted.items():
        for member_id, state in member_states(ledger, sorted(members), at, watermark).items():
            states[(member_id, at)] = state
    return engine.verdicts(questions, states, now)
