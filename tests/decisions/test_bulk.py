"""``decide_many`` answers ``Verdict.of(decide(...))`` for every question, on random networks.

Bulk speed comes from sharing one decision among the members of a class; these tests make classes
collide on purpose (few countries, settings, birthdays) while every member's events differ in their
seqs, times and sources, so a key that missed an input of ``decide_state`` shows up as a mismatch.
"""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.decisions import (
    DecisionEngine,
    Question,
    Verdict,
    decide,
    decide_many,
    member_state,
    member_states,
)
from consentgate.ledger.events import EventKind, LedgerEvent, Source, event_digest
from consentgate.ledger.state import MemberState, resolve_member
from consentgate.ledger.store import Ledger
from consentgate.policy import load_timeline
from consentgate.taxonomy import load_taxonomy
from consentgate.timeutil import to_micros
from tests.conftest import at, register, set_setting

TAXONOMY = load_taxonomy()
ENGINE = DecisionEngine(TAXONOMY, load_timeline())
PURPOSES = sorted(TAXONOMY.purposes)
CATEGORIES = ["profile.skills", "content.posts", "messages.private", "activity.feed", "no.such"]
KEYS = ["genai_improvement", "ads_affiliate_sharing", "ads_connections", "ads_interests_traits"]
INSTANTS = [at(x) for x in ("2024-06-01", "2025-11-02T23:59:59.999999Z", "2025-11-03", "2026-03-01")]


@st.composite
def member_events(draw: st.DrawFn, member_id: int) -> list[LedgerEvent]:
    """One member from a small space of choices, so that classes of members collide."""
    seq = itertools.count(1)
    jitter = draw(st.integers(0, 10**9))  # every member's events at their own instants
    rows: list[tuple[str, str, str, int]] = []
    if draw(st.integers(0, 9)):
        rows.append(
            ("member_registered", "registered", draw(st.sampled_from(["true", "true", "false"])), jitter)
        )
    rows.append(
        ("member_fact", "country", draw(st.sampled_from(["DE", "de ", "GB", "US", "CH", "XX"])), jitter)
    )
    birth = draw(st.sampled_from([None, "1980-01-01", "2007-11-03", "2008-03-01", "2008-02-29"]))
    if birth is not None:
        rows.append(("member_fact", "birth_date", birth, jitter))
    minor = draw(st.sampled_from([None, "true", "false"]))
    if minor is not None:
        rows.append(("member_fact", "believed_minor", minor, jitter))
    for _ in range(draw(st.integers(0, 4))):
        when = to_micros(draw(st.sampled_from(INSTANTS))) + draw(st.sampled_from([-1, 0, 1]))
        rows.append(
            ("setting_changed", draw(st.sampled_from(KEYS)), draw(st.sampled_from(["true", "false"])), when)
        )
    for n in range(draw(st.integers(0, 2))):
        purposes = draw(st.lists(st.sampled_from(PURPOSES[:4]), min_size=1, max_size=2, unique=True))
        received = to_micros(draw(st.sampled_from(INSTANTS))) - 1 - jitter % 1000
        body = '{"grounds": "", "purposes": ' + str(sorted(purposes)).replace("'", '"') + "}"
        rows.append(("objection_received", f"OBJ-{member_id}-{n}", body, received))
        if draw(st.booleans()):
            outcome = draw(st.sampled_from(["upheld", "rejected"]))
            decided = '{"automatic": false, "outcome": "' + outcome + '", "reason": "r"}'
            rows.append(("objection_decided", f"OBJ-{member_id}-{n}", decided, received + 1))
    events, prev = [], "0" * 64
    source = draw(st.sampled_from([Source.import_, Source.member]))
    for kind, key, value, effective in rows:
        s = next(seq)
        digest = event_digest(
            s, member_id, kind, key, value, effective, effective, str(source), "h", f"k{s}", prev
        )
        events.append(
            LedgerEvent(
                s, member_id, kind, key, value, effective, effective, str(source), "h", f"k{s}", prev, digest
            )
        )
        prev = digest
    assert {e.kind for e in events} <= {k.value for k in EventKind}
    return events


@st.composite
def networks(draw: st.DrawFn) -> dict[int, list[LedgerEvent]]:
    count = draw(st.integers(1, 12))
    return {member_id: draw(member_events(member_id)) for member_id in range(1, count + 1)}


questions = st.builds(
    Question,
    member_id=st.integers(1, 12),
    category=st.sampled_from(CATEGORIES),
    purpose=st.sampled_from([*PURPOSES, "no.such"]),
    at=st.sampled_from([None, *INSTANTS]),
    created_at=st.sampled_from([None, INSTANTS[1], INSTANTS[2] + timedelta(microseconds=1)]),
)


@given(network=networks(), asked=st.lists(questions, min_size=1, max_size=60))
@settings(max_examples=300, deadline=None)
def test_verdicts_are_the_verdicts_of_decide_state(
    network: dict[int, list[LedgerEvent]], asked: list[Question]
) -> None:
    now = INSTANTS[2]
    states = {
        (member_id, when): resolve_member(member_id, events, at=when, watermark=None)
        for member_id, events in network.items()
        for when in INSTANTS
    }
    for member_id in range(len(network) + 1, 13):  # asked about, never registered
        for when in INSTANTS:
            states[(member_id, when)] = resolve_member(member_id, [], at=when, watermark=None)
    got = ENGINE.verdicts(asked, states, now)
    for question, verdict in zip(asked, got, strict=True):
        state = states[(question.member_id, question.at or now)]
        expected = ENGINE.decide_state(
            state, question.category, question.purpose, created_at=question.created_at
        )
        assert verdict == Verdict.of(expected), question


def test_members_sharing_a_class_share_one_verdict_object() -> None:
    """The point of classes: two members alike in every input get the same verdict, decided once."""
    a = member_state_of(1, "DE", seq=1)
    b = member_state_of(2, "DE", seq=40)
    c = member_state_of(3, "FR", seq=7)
    now = INSTANTS[2]
    asked = [Question(m, "profile.skills", "genai.training") for m in (1, 2, 3)]
    first, second, third = ENGINE.verdicts(asked, {(1, now): a, (2, now): b, (3, now): c}, now)
    assert first is second
    assert third is not first
    assert first.allowed and third.allowed
    assert ENGINE.decide_state(a, "profile.skills", "genai.training") != ENGINE.decide_state(
        b, "profile.skills", "genai.training"
    )  # the full decisions differ: member, seqs and evidence


def member_state_of(member_id: int, country: str, *, seq: int) -> MemberState:
    events = [
        LedgerEvent(
            seq,
            member_id,
            "member_registered",
            "registered",
            "true",
            seq,
            seq,
            "import",
            "h",
            f"r{seq}",
            "",
            "",
        ),
        LedgerEvent(
            seq + 1, member_id, "member_fact", "country", country, seq, seq, "import", "h", f"c{seq}", "", ""
        ),
        LedgerEvent(
            seq + 2,
            member_id,
            "member_fact",
            "birth_date",
            "1980-01-01",
            seq,
            seq,
            "import",
            "h",
            f"b{seq}",
            "",
            "",
        ),
    ]
    return resolve_member(member_id, events, at=INSTANTS[2], watermark=None)


def test_decide_many_agrees_with_decide_on_a_stored_network(ledger: Ledger, engine: DecisionEngine) -> None:
    """On SQLite and PostgreSQL: every member, category and purpose of a random network, at four instants."""
    _stored_network(ledger)
    rng = random.Random(3)
    categories = [*sorted(engine.taxonomy.categories)[:12], "x.unknown"]
    asked = [
        Question(member_id, category, purpose, at=rng.choice([None, *INSTANTS]))
        for member_id in range(44)
        for category in categories
        for purpose in [*sorted(engine.taxonomy.purposes), "x.none"]
    ]
    now = INSTANTS[2]
    watermark = ledger.watermark() - 5
    got = decide_many(engine, ledger, asked, now=now, watermark=watermark)
    assert len(got) == len(asked)
    expected = [
        Verdict.of(
            decide(engine, ledger, q.member_id, q.category, q.purpose, q.at or now, watermark=watermark)
        )
        for q in asked
    ]
    assert got == expected
    assert {v.allowed for v in got} == {True, False}


def _stored_network(ledger: Ledger) -> None:
    """40 members with the seeded random network's mix of facts, settings and objections."""
    rng = random.Random(11)
    for member_id in range(1, 41):
        birth = rng.choice([None, "1980-01-01", "2007-11-04", "2008-02-29"])
        register(
            ledger,
            member_id,
            rng.choice(["DE", "FR", "GB", "US", "CH", "BR"]),
            birth_date=birth,
            believed_minor=rng.choice([None, True, False]) if birth is None else None,
        )
        for _ in range(rng.randrange(4)):
            when = rng.choice(INSTANTS).isoformat()
            set_setting(ledger, member_id, rng.choice(KEYS), rng.random() < 0.5, when)


def test_members_events_is_member_events_for_each_member(ledger: Ledger) -> None:
    _stored_network(ledger)
    when = to_micros(INSTANTS[2])
    wanted = [3, 1, 3, 99, 40]
    watermark = ledger.watermark() - 10
    many = ledger.members_events(wanted, at=when, watermark=watermark)
    assert sorted(many) == [1, 3, 40, 99]
    for member_id, events in many.items():
        assert events == ledger.member_events(member_id, at=when, watermark=watermark)
    assert many[99] == []
    assert ledger.members_events([], at=when) == {}
    chunked = ledger.members_events(range(1, 1200), at=when)  # more than one query's worth of ids
    assert sum(len(e) for e in chunked.values()) == sum(
        len(ledger.member_events(m, at=when)) for m in range(1, 41)
    )
    states = member_states(ledger, [1, 2], INSTANTS[2])
    assert states[2] == member_state(ledger, 2, INSTANTS[2])
