"""The inspector and ``decide()`` agree: a member imported into a ledger with the archive's facts and
the same settings gets the same decision, with the same reason codes, for every (category, purpose, T)."""

from __future__ import annotations

import random

import pytest

from consentgate.decisions.engine import DecisionEngine, decide
from consentgate.inspect.inspector import member_state
from consentgate.ledger.store import Ledger
from consentgate.timeutil import parse_date
from tests.conftest import at, register, set_setting

INSTANTS = ["2024-06-01T00:00:00Z", "2025-11-02T23:59:59Z", "2025-11-03T00:00:00Z", "2026-03-15T00:00:00Z"]
COUNTRIES = ["DE", "FR", "CH", "GB", "US", "CN", "HK", "CA", "IN", "BR"]
BIRTHS = [None, "1980-01-01", "2008-03-15", "2010-07-07", "2007-11-03"]


@pytest.mark.parametrize("seed", range(6))
def test_every_category_purpose_and_instant_agrees_with_decide(
    ledger: Ledger, engine: DecisionEngine, seed: int
) -> None:
    rng = random.Random(seed)
    toggles = sorted(k for k, s in engine.taxonomy.settings.items() if s.kind == "toggle")
    country, birth = rng.choice(COUNTRIES), rng.choice(BIRTHS)
    choices = {key: rng.random() < 0.5 for key in rng.sample(toggles, rng.randrange(0, 6))}
    member = 700 + seed
    register(ledger, member, country, birth_date=birth)
    for key, value in choices.items():
        set_setting(ledger, member, key, value, "2020-01-01T00:00:00Z")
    compared = 0
    for instant in INSTANTS:
        when = at(instant)
        state = member_state(
            country=country,
            birth_date=None if birth is None else parse_date(birth),
            settings=choices,
            at=when,
        )
        policy = engine.timeline.in_force(when)
        purposes = sorted(policy.purposes) if policy is not None else ["genai.training"]
        for purpose in purposes:
            for category in sorted(engine.taxonomy.categories):
                ours = engine.decide_state(state, category, purpose)
                theirs = decide(engine, ledger, member, category, purpose, when)
                assert (ours.allowed, [r.code for r in ours.reasons]) == (
                    theirs.allowed,
                    [r.code for r in theirs.reasons],
                ), (country, birth, choices, instant, purpose, category)
                compared += 1
    assert compared > 500
