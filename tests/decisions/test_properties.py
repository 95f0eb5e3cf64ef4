"""Decision invariants on random histories: never-used data is never allowed, unknowns fail closed."""

from __future__ import annotations

import itertools
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.decisions import DecisionEngine
from consentgate.ledger.events import EventKind, LedgerEvent, Source, event_digest
from consentgate.ledger.state import resolve_member
from consentgate.policy import load_timeline
from consentgate.taxonomy import load_taxonomy
from consentgate.timeutil import from_micros, to_micros
from tests.conftest import at

TAXONOMY = load_taxonomy()
ENGINE = DecisionEngine(TAXONOMY, load_timeline())
TOGGLES = sorted(k for k, s in TAXONOMY.settings.items() if s.kind == "toggle")
PURPOSES = sorted(TAXONOMY.purposes)
COUNTRIES = ["DE", "FR", "IS", "NO", "CH", "GB", "CA", "HK", "CN", "US", "IN", "BR", "JP"]
START, END = to_micros(at("2024-01-01")), to_micros(at("2027-01-01"))

instants = st.integers(START, END)


@st.composite
def histories(draw: st.DrawFn) -> list[LedgerEvent]:
    """A member with random facts, setting changes and objections, as stored events."""
    seq = itertools.count(1)
    rows: list[tuple[str, str, str, int]] = [
        ("member_registered", "registered", "true", draw(st.integers(0, START))),
        ("member_fact", "country", draw(st.sampled_from(COUNTRIES)), draw(st.integers(0, START))),
    ]
    if draw(st.booleans()):
        year = draw(st.integers(1950, 2015))
        rows.append(("member_fact", "birth_date", f"{year}-06-15", 0))
    for _ in range(draw(st.integers(0, 25))):
        rows.append(
            (
                "setting_changed",
                draw(st.sampled_from(TOGGLES)),
                draw(st.sampled_from(["true", "false"])),
                draw(instants),
            )
        )
    for n in range(draw(st.integers(0, 2))):
        purposes = draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=3, unique=True))
        received = draw(instants)
        rows.append(
            (
                "objection_received",
                f"OBJ-{n}",
                '{"grounds": "", "purposes": ' + str(sorted(purposes)).replace("'", '"') + "}",
                received,
            )
        )
        if draw(st.booleans()):
            outcome = draw(st.sampled_from(["upheld", "rejected"]))
            rows.append(
                (
                    "objection_decided",
                    f"OBJ-{n}",
                    '{"automatic": false, "outcome": "' + outcome + '", "reason": "r"}',
                    received + 1,
                )
            )
    events, prev = [], "0" * 64
    for kind, key, value, effective in rows:
        s = next(seq)
        digest = event_digest(s, 7, kind, key, value, effective, effective, "import", "h", f"k{s}", prev)
        events.append(
            LedgerEvent(
                s, 7, kind, key, value, effective, effective, str(Source.import_), "h", f"k{s}", prev, digest
            )
        )
        prev = digest
    assert {e.kind for e in events} <= {k.value for k in EventKind}
    return events


@given(events=histories(), when=instants)
@settings(max_examples=300)
def test_no_never_used_category_is_ever_allowed(events: list[LedgerEvent], when: int) -> None:
    """Under any history and at any time, a policy's never-used categories stay out of its purposes."""
    t: datetime = from_micros(when)
    state = resolve_member(7, events, at=t, watermark=None)
    policy = ENGINE.timeline.in_force(t)
    never_train = [c.key for c in TAXONOMY.categories.values() if c.sensitivity == "never_train"]
    for category in never_train:
        assert not ENGINE.decide_state(state, category, "genai.training").allowed
    if policy is None:
        return
    for purpose, rule in policy.purposes.items():
        for category in rule.never_used:
            decision = ENGINE.decide_state(state, category, purpose)
            assert not decision.allowed
            assert "category_never_used" in [str(r.code) for r in decision.denials]


@given(events=histories(), when=instants, purpose=st.sampled_from(PURPOSES))
@settings(max_examples=200)
def test_every_no_has_a_reason_and_every_yes_a_basis(
    events: list[LedgerEvent], when: int, purpose: str
) -> None:
    """A denial always names at least one reason; an allowance always names the policy and legal basis."""
    state = resolve_member(7, events, at=from_micros(when), watermark=None)
    for category in ("profile.skills", "content.posts", "activity.feed", "inferred.gender"):
        decision = ENGINE.decide_state(state, category, purpose)
        if decision.allowed:
            assert decision.policy_id and decision.legal_basis
            assert [str(r.code) for r in decision.reasons][:2] == ["policy_in_force", "legal_basis"]
        else:
            assert decision.denials


@given(events=histories(), when=instants)
@settings(max_examples=100)
def test_an_unknown_category_or_purpose_is_never_allowed(events: list[LedgerEvent], when: int) -> None:
    """Fail closed: keys outside the taxonomy are refused with the reason that says so."""
    state = resolve_member(7, events, at=from_micros(when), watermark=None)
    unknown_category = ENGINE.decide_state(state, "profile.unknown", "genai.training")
    unknown_purpose = ENGINE.decide_state(state, "profile.skills", "genai.unknown")
    assert unknown_category.denials[0].code == "unknown_category"
    assert unknown_purpose.denials[0].code == "unknown_purpose"
