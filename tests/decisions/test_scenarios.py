"""Scenarios from DOMAIN.md, decided through the ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from consentgate.decisions import Decision, DecisionEngine, decide
from consentgate.ledger.commands import fact_draft
from consentgate.ledger.events import Source
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, file_objection
from consentgate.policy import Timeline, builtin_policies
from tests.conftest import at, register, set_setting

GENAI = "genai.training"


def run(
    engine: DecisionEngine,
    ledger: Ledger,
    member: int,
    category: str,
    purpose: str,
    when: str,
    **kwargs: object,
) -> Decision:
    return decide(engine, ledger, member, category, purpose, at(when), **kwargs)  # type: ignore[arg-type]


def codes(decision: Decision) -> list[str]:
    return [str(r.code) for r in decision.denials]


# -- regions and dates (DOMAIN §2) -------------------------------------------------------------

REGION_CASES = [
    # country, instant, allowed, first denial
    ("US", "2024-09-17T23:59:59Z", False, "policy_not_in_force"),
    ("US", "2024-09-18T00:00:00Z", True, None),
    ("IN", "2025-06-01", True, None),
    ("BR", "2025-11-04", True, None),
    ("DE", "2024-10-01", False, "region_excluded"),
    ("DE", "2025-11-02T23:59:59Z", False, "region_excluded"),
    ("DE", "2025-11-03T00:00:00Z", True, None),
    ("IS", "2025-11-04", True, None),
    ("LI", "2025-10-01", False, "region_excluded"),
    ("NO", "2025-11-04", True, None),
    ("CH", "2025-10-01", False, "region_excluded"),
    ("CH", "2025-11-04", True, None),
    ("GB", "2025-10-01", False, "region_excluded"),
    ("GB", "2025-11-04", True, None),
    ("CA", "2025-10-01", False, "region_excluded"),
    ("CA", "2025-11-04", True, None),
    ("HK", "2025-10-01", False, "region_excluded"),
    ("HK", "2025-11-04", True, None),
    ("CN", "2025-10-01", False, "region_excluded"),
    ("CN", "2026-06-01", False, "region_excluded"),
]


@pytest.mark.parametrize(("country", "when", "allowed", "denial"), REGION_CASES)
def test_genai_training_by_region_and_date(
    ledger: Ledger, engine: DecisionEngine, country: str, when: str, allowed: bool, denial: str | None
) -> None:
    """Gen-AI training applies by region from 2024-09-18 (rest of world) and 2025-11-03 (others)."""
    register(ledger, 1, country)
    decision = run(engine, ledger, 1, "profile.skills", GENAI, when)
    assert decision.allowed is allowed
    assert codes(decision)[:1] == ([] if denial is None else [denial])


def test_eea_basis_is_legitimate_interest_and_rest_of_world_notice(
    ledger: Ledger, engine: DecisionEngine
) -> None:
    """From 2025-11-03 the EEA rests on legitimate interest; the rest of the world on notice and opt-out."""
    register(ledger, 1, "FR")
    register(ledger, 2, "US")
    eea = run(engine, ledger, 1, "content.posts", GENAI, "2025-11-04")
    row = run(engine, ledger, 2, "content.posts", GENAI, "2025-11-04")
    assert (eea.legal_basis, eea.policy_id, eea.policy_version) == (
        "legitimate_interest",
        "linkedin-2025-11",
        2,
    )
    assert row.legal_basis == "notice"
    assert [str(r.code) for r in eea.reasons][:3] == ["policy_in_force", "legal_basis", "setting_default_on"]


# -- categories (DOMAIN §3) --------------------------------------------------------------------

NEVER_USED = [
    "messages.private",
    "messages.inmail",
    "account.credentials",
    "payment.methods",
    "payment.transactions",
    "jobs.salary",
    "jobs.applications",
]


@pytest.mark.parametrize("category", NEVER_USED)
def test_never_used_categories_are_never_trained_on(
    ledger: Ledger, engine: DecisionEngine, category: str
) -> None:
    """Private messages, credentials, payment, salary, job applications: never, whatever the setting."""
    register(ledger, 1, "US")
    set_setting(ledger, 1, "genai_improvement", True, "2025-01-01")
    decision = run(engine, ledger, 1, category, GENAI, "2025-11-04")
    assert not decision.allowed
    assert codes(decision) == ["category_never_used"]


@pytest.mark.parametrize(
    "category",
    [
        "profile.name",
        "profile.skills",
        "profile.positions",
        "profile.education",
        "content.posts",
        "content.comments",
        "groups.messages",
        "ai.interactions",
        "jobs.resumes",
    ],
)
def test_used_categories_are_in_scope(ledger: Ledger, engine: DecisionEngine, category: str) -> None:
    """Profile, content, group messages, AI prompts and saved resumes are used by default."""
    register(ledger, 1, "DE")
    assert run(engine, ledger, 1, category, GENAI, "2025-11-04").allowed


def test_a_category_outside_the_purpose_is_out_of_scope(ledger: Ledger, engine: DecisionEngine) -> None:
    """Ad engagement is not gen-AI training data."""
    register(ledger, 1, "US")
    assert codes(run(engine, ledger, 1, "activity.ad_engagement", GENAI, "2025-11-04")) == [
        "category_out_of_scope"
    ]


# -- minors ------------------------------------------------------------------------------------


def test_a_member_becomes_eligible_on_their_18th_birthday(ledger: Ledger, engine: DecisionEngine) -> None:
    """The day before the 18th birthday: excluded; on the birthday: used."""
    register(ledger, 1, "US", birth_date="2008-03-15")
    before = run(engine, ledger, 1, "profile.skills", GENAI, "2026-03-14T23:59:59Z")
    on = run(engine, ledger, 1, "profile.skills", GENAI, "2026-03-15T00:00:00Z")
    assert codes(before) == ["member_minor"] and before.denials[0].seq is not None
    assert on.allowed


def test_a_leap_day_birth_turns_18_on_the_first_of_march(ledger: Ledger, engine: DecisionEngine) -> None:
    """Born 29 Feb 2008: still a minor on 28 Feb 2026, an adult on 1 Mar 2026."""
    register(ledger, 1, "US", birth_date="2008-02-29")
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2026-02-28T12:00:00Z")) == ["member_minor"]
    assert run(engine, ledger, 1, "profile.skills", GENAI, "2026-03-01").allowed


def test_a_believed_minor_is_excluded_whatever_the_birth_date(ledger: Ledger, engine: DecisionEngine) -> None:
    """The "believed minor" signal excludes a member with no birth date."""
    register(ledger, 1, "IN", believed_minor=True)
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04")) == ["member_minor"]


def test_unknown_age_is_adult_by_default_and_excluded_when_the_policy_says(ledger: Ledger, taxonomy) -> None:
    """No birth date, no flag: adult by default; a policy option can exclude unknown ages."""
    register(ledger, 1, "US")
    strict = [
        p.model_copy(update={"options": p.options.model_copy(update={"exclude_unknown_age": True})})
        for p in builtin_policies()
    ]
    default_engine = DecisionEngine(taxonomy, Timeline(builtin_policies()))
    strict_engine = DecisionEngine(taxonomy, Timeline(strict))
    assert run(default_engine, ledger, 1, "profile.skills", GENAI, "2025-11-04").allowed
    assert codes(run(strict_engine, ledger, 1, "profile.skills", GENAI, "2025-11-04")) == ["age_unknown"]


# -- settings act from their effective time ----------------------------------------------------


def test_an_opt_out_acts_only_from_its_effective_time(ledger: Ledger, engine: DecisionEngine) -> None:
    """Before the opt-out: used; from the opt-out on: not used, with the event as evidence."""
    register(ledger, 1, "DE")
    event = set_setting(ledger, 1, "genai_improvement", False, "2025-11-10T12:00:00Z")
    assert run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-10T11:59:59Z").allowed
    after = run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-10T12:00:00Z")
    assert codes(after) == ["setting_off"]
    assert after.denials[0].seq == event.seq
    assert event.seq in [e.seq for e in after.evidence]


def test_an_opt_out_before_the_change_holds_after_it(ledger: Ledger, engine: DecisionEngine) -> None:
    """Regulators' advice: object before 3 Nov 2025 and nothing is used from then on."""
    register(ledger, 1, "DE")
    set_setting(ledger, 1, "genai_improvement", False, "2025-10-20")
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04")) == ["setting_off"]


def test_opting_in_again_resumes_use_from_then(ledger: Ledger, engine: DecisionEngine) -> None:
    """Off then on again: used again from the second change."""
    register(ledger, 1, "BR")
    set_setting(ledger, 1, "genai_improvement", False, "2024-10-05")
    set_setting(ledger, 1, "genai_improvement", True, "2025-06-01")
    assert not run(engine, ledger, 1, "profile.skills", GENAI, "2025-05-31").allowed
    decision = run(engine, ledger, 1, "profile.skills", GENAI, "2025-06-01")
    assert decision.allowed and "setting_on" in [str(r.code) for r in decision.reasons]


def test_with_equal_effective_times_the_later_event_wins(ledger: Ledger, engine: DecisionEngine) -> None:
    """Ties in effective time are broken by seq: the event recorded last holds."""
    register(ledger, 1, "US")
    set_setting(ledger, 1, "genai_improvement", True, "2025-05-01")
    set_setting(ledger, 1, "genai_improvement", False, "2025-05-01")
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-05-01")) == ["setting_off"]


def test_a_watermark_hides_events_recorded_after_it(ledger: Ledger, engine: DecisionEngine) -> None:
    """Decisions as of (T, W) ignore events with seq > W, even if they are effective before T."""
    register(ledger, 1, "US")
    mark = ledger.watermark()
    set_setting(ledger, 1, "genai_improvement", False, "2025-01-01")
    assert run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04", watermark=mark).allowed
    assert not run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04").allowed


def test_a_move_changes_the_regime_from_the_move(ledger: Ledger, engine: DecisionEngine) -> None:
    """A member who moves from the US to Germany leaves gen-AI training until 2025-11-03."""
    register(ledger, 1, "US")
    ledger.append(
        [
            fact_draft(
                member_id=1,
                key="country",
                value="DE",
                at=at("2024-12-01"),
                source=Source.import_,
                actor="test",
            )
        ]
    )
    assert run(engine, ledger, 1, "profile.skills", GENAI, "2024-11-30").allowed
    decision = run(engine, ledger, 1, "profile.skills", GENAI, "2025-01-01")
    assert codes(decision) == ["region_excluded"] and decision.region == "EEA"


# -- objections (DOMAIN §4) --------------------------------------------------------------------


def test_a_pending_objection_restricts_at_once(ledger: Ledger, engine: DecisionEngine, taxonomy) -> None:
    """From receipt until the decision, processing for the purpose stops (Art. 18(1)(d))."""
    register(ledger, 1, "GB")
    [status] = file_objection(
        ledger, taxonomy, member_id=1, purposes=[GENAI], at=at("2025-10-15"), source=Source.dpo
    )
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04")) == ["objection_pending"]
    assert run(engine, ledger, 1, "profile.skills", "ml.non_generative", "2025-11-04").allowed
    assert status.due == at("2025-11-15")


def test_an_upheld_objection_keeps_the_purpose_excluded(
    ledger: Ledger, engine: DecisionEngine, taxonomy
) -> None:
    """After the DPO upholds, the data stays out."""
    register(ledger, 1, "CH")
    [status] = file_objection(
        ledger, taxonomy, member_id=1, purposes=[GENAI], at=at("2025-10-20"), source=Source.dpo
    )
    decide_objection(ledger, reference=status.reference, uphold=True, reason="fine", at=at("2025-11-10"))
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2026-01-01")) == ["objection_upheld"]


def test_a_rejected_objection_resumes_processing_from_the_decision(
    ledger: Ledger, engine: DecisionEngine, taxonomy
) -> None:
    """Rejected with reasons: restricted until the decision, used from it on, with the decision as basis."""
    register(ledger, 1, "NL")
    [status] = file_objection(
        ledger, taxonomy, member_id=1, purposes=[GENAI], at=at("2025-10-25"), source=Source.dpo
    )
    decide_objection(
        ledger, reference=status.reference, uphold=False, reason="compelling grounds", at=at("2025-11-20")
    )
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-19")) == ["objection_pending"]
    after = run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-20")
    assert after.allowed and "objection_rejected" in [str(r.code) for r in after.reasons]


def test_a_direct_marketing_objection_is_upheld_at_once(
    ledger: Ledger, engine: DecisionEngine, taxonomy
) -> None:
    """Objecting to personalised ads is honoured immediately, split from the rest of the objection."""
    register(ledger, 1, "DE")
    statuses = file_objection(
        ledger,
        taxonomy,
        member_id=1,
        purposes=[GENAI, "ads.personalization"],
        at=at("2025-11-05"),
        source=Source.dpo,
    )
    by_purpose = {s.purposes: s for s in statuses}
    assert by_purpose[("ads.personalization",)].automatic
    assert str(by_purpose[(GENAI,)].outcome) == "pending"
    assert codes(run(engine, ledger, 1, "profile.skills", "ads.personalization", "2025-11-06")) == [
        "objection_upheld"
    ]


# -- advertising with the group (DOMAIN §1.4, §5) ----------------------------------------------

SHARING_CASES = [
    ("US", "2025-11-02", False, "purpose_not_in_policy"),
    ("US", "2025-11-04", True, None),
    ("GB", "2025-11-04", True, None),
    ("CA", "2025-11-04", True, None),
    ("DE", "2025-11-04", False, "region_excluded"),
    ("CH", "2025-11-04", False, "region_excluded"),
]


@pytest.mark.parametrize(("country", "when", "allowed", "denial"), SHARING_CASES)
def test_affiliate_ads_sharing_only_outside_eea_and_ch_from_2025_11_03(
    ledger: Ledger, engine: DecisionEngine, country: str, when: str, allowed: bool, denial: str | None
) -> None:
    """Feed activity goes to the group for its ads only outside the EEA and Switzerland, from 3 Nov 2025."""
    register(ledger, 1, country)
    decision = run(engine, ledger, 1, "activity.feed", "ads.affiliate_sharing", when)
    assert decision.allowed is allowed
    assert codes(decision)[:1] == ([] if denial is None else [denial])


def test_data_forbidden_for_ads_is_not_shared(ledger: Ledger, engine: DecisionEngine) -> None:
    """Switching off "Education and skills" for ads keeps skills out of the sharing, not feed activity."""
    register(ledger, 1, "US")
    set_setting(ledger, 1, "ads_education_skills", False, "2025-01-01")
    skills = run(engine, ledger, 1, "profile.skills", "ads.affiliate_sharing", "2025-11-04")
    assert codes(skills) == ["setting_off"] and skills.denials[0].setting == "ads_education_skills"
    assert run(engine, ledger, 1, "activity.feed", "ads.affiliate_sharing", "2025-11-04").allowed


def test_the_sharing_switch_stops_both_directions(ledger: Ledger, engine: DecisionEngine) -> None:
    """ "Share data with affiliates and partners" off: nothing goes out, nothing coming back is used."""
    register(ledger, 1, "US")
    set_setting(ledger, 1, "ads_affiliate_sharing", False, "2025-11-10")
    assert run(engine, ledger, 1, "affiliate.engagement", "ads.affiliate_data", "2025-11-09").allowed
    assert codes(run(engine, ledger, 1, "activity.feed", "ads.affiliate_sharing", "2025-11-11")) == [
        "setting_off"
    ]
    assert codes(run(engine, ledger, 1, "affiliate.engagement", "ads.affiliate_data", "2025-11-11")) == [
        "setting_off"
    ]


def test_inferred_data_for_ads_needs_consent_in_the_eea(ledger: Ledger, engine: DecisionEngine) -> None:
    """In the EEA profile rows rest on legitimate interest (on by default), inferred data on consent."""
    register(ledger, 1, "DE")
    assert run(engine, ledger, 1, "profile.skills", "ads.personalization", "2025-11-04").allowed
    inferred = run(engine, ledger, 1, "inferred.interests", "ads.personalization", "2025-11-04")
    assert codes(inferred) == ["consent_not_given"]
    set_setting(ledger, 1, "ads_interests_traits", True, "2025-11-05")
    given = run(engine, ledger, 1, "inferred.interests", "ads.personalization", "2025-11-06")
    assert given.allowed and given.legal_basis == "consent"


def test_uk_content_is_shared_with_the_parent_for_its_ai(ledger: Ledger, engine: DecisionEngine) -> None:
    """UK only, from 2025-11-03: posts go to the parent company's AI training; the gen-AI switch stops it."""
    register(ledger, 1, "GB")
    register(ledger, 2, "DE")
    assert run(engine, ledger, 1, "content.posts", "genai.affiliate_training", "2025-11-04").allowed
    assert codes(run(engine, ledger, 1, "content.posts", "genai.affiliate_training", "2025-10-01")) == [
        "purpose_not_in_policy"
    ]
    assert codes(run(engine, ledger, 2, "content.posts", "genai.affiliate_training", "2025-11-04")) == [
        "region_excluded"
    ]
    set_setting(ledger, 1, "genai_improvement", False, "2025-11-05")
    assert codes(run(engine, ledger, 1, "content.posts", "genai.affiliate_training", "2025-11-06")) == [
        "setting_off"
    ]


# -- failing closed (DESIGN §9) ----------------------------------------------------------------


def test_unknown_member_category_purpose_and_country_fail_closed(
    ledger: Ledger, engine: DecisionEngine
) -> None:
    """Anything unknown means "not allowed", with the reason."""
    register(ledger, 1, "US")
    assert codes(run(engine, ledger, 99, "profile.skills", GENAI, "2025-11-04")) == ["unknown_member"]
    assert codes(run(engine, ledger, 1, "profile.shoe_size", GENAI, "2025-11-04")) == ["unknown_category"]
    assert codes(run(engine, ledger, 1, "profile.skills", "mind.reading", "2025-11-04")) == [
        "unknown_purpose"
    ]
    ledger.append(
        [
            fact_draft(
                member_id=1,
                key="country",
                value="XX",
                at=at("2025-01-01"),
                source=Source.import_,
                actor="test",
            )
        ]
    )
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04")) == ["region_unknown"]


def test_a_member_registered_later_is_unknown_before(ledger: Ledger, engine: DecisionEngine) -> None:
    """Membership is read as of T like everything else."""
    register(ledger, 1, "US", registered_at="2025-06-01T00:00:00Z")
    assert codes(run(engine, ledger, 1, "profile.skills", GENAI, "2025-05-31")) == ["unknown_member"]
    assert run(engine, ledger, 1, "profile.skills", GENAI, "2025-06-01").allowed


def test_a_record_created_after_the_as_of_time_is_excluded(ledger: Ledger, engine: DecisionEngine) -> None:
    """A snapshot as of T never contains data that did not exist at T."""
    register(ledger, 1, "US")
    decision = run(engine, ledger, 1, "content.posts", GENAI, "2025-11-04", created_at=at("2025-12-01"))
    assert codes(decision) == ["record_after_as_of"]


def test_every_no_lists_all_its_grounds(ledger: Ledger, engine: DecisionEngine) -> None:
    """A minor in an excluded region who opted out: all three reasons, in the documented order."""
    register(ledger, 1, "DE", birth_date="2010-01-01")
    set_setting(ledger, 1, "genai_improvement", False, "2025-01-01")
    decision = run(engine, ledger, 1, "profile.skills", GENAI, "2025-10-01")
    assert codes(decision) == ["region_excluded", "member_minor"]
    later = run(engine, ledger, 1, "profile.skills", GENAI, "2025-11-04")
    assert codes(later) == ["member_minor", "setting_off"]


def test_decision_json_has_the_documented_shape(ledger: Ledger, engine: DecisionEngine) -> None:
    """allowed, policy {id, version}, and reasons as objects with a code (DESIGN §5)."""
    register(ledger, 1, "DE")
    data = run(engine, ledger, 1, "profile.skills", GENAI, "2025-10-01").to_dict()
    assert data["allowed"] is False
    assert data["policy"] == {"id": "linkedin-2024-09", "version": 1}
    assert data["reasons"][0]["code"] == "region_excluded"
    assert all("code" in r and "message" in r for r in data["reasons"])
