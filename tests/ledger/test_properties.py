"""Invariants of the ledger, checked on random histories (Hypothesis), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from consentgate.ledger.events import EventDraft, EventKind, LedgerEvent, Source
from consentgate.ledger.exports import state_table
from consentgate.ledger.state import resolve_member
from consentgate.ledger.store import Ledger
from consentgate.timeutil import from_micros, to_micros
from tests.conftest import _pg_schema_url, at
from tests.helpers import lift_guards as disable_guards

BASE = to_micros(at("2025-11-01"))
HOUR = 3_600_000_000
KEYS = ("genai_improvement", "promotions", "ads_gender")
_members = itertools.count(1)

# Effective times drawn from a few hours so that ties are common.
event_strategy = st.tuples(st.sampled_from(KEYS), st.booleans(), st.integers(0, 6))
history_strategy = st.lists(event_strategy, min_size=1, max_size=14)


def _append_history(ledger: Ledger, member: int, history: list[tuple[str, bool, int]]) -> list[LedgerEvent]:
    drafts = [
        EventDraft(
            member,
            EventKind.setting_changed,
            key,
            "true" if value else "false",
            BASE + hour * HOUR,
            Source.import_,
            "hypothesis",
            f"h:{uuid.uuid4().hex}",
        )
        for key, value, hour in history
    ]
    return ledger.append(drafts)


def _brute_force(events: list[LedgerEvent], t: int, w: int) -> dict[str, str]:
    """The definition, written as plainly as possible: latest (effective_at, seq) per key."""
    out: dict[str, tuple[int, int, str]] = {}
    for e in events:
        if (
            e.effective_at <= t
            and e.seq <= w
            and (e.key not in out or (e.effective_at, e.seq) > out[e.key][:2])
        ):
            out[e.key] = (e.effective_at, e.seq, e.value)
    return {k: v[2] for k, v in out.items()}


@given(history=history_strategy, t_hour=st.integers(-1, 7), w_back=st.integers(0, 14))
@settings(max_examples=40)
def test_as_of_state_equals_a_brute_force_replay(
    ledger: Ledger, history: list[tuple[str, bool, int]], t_hour: int, w_back: int
) -> None:
    """Per-member replay and the bulk SQL state both equal the definition, for any (T, W)."""
    member = next(_members)
    events = _append_history(ledger, member, history)
    t = BASE + t_hour * HOUR
    w = max(events[-1].seq - w_back, 0)
    expected = _brute_force(events, t, w)

    read = ledger.member_events(member, at=t, watermark=w)
    state = resolve_member(member, read, at=from_micros(t), watermark=w)
    assert {k: e.value for k, e in state.settings.items()} == expected

    unfiltered = resolve_member(member, ledger.member_events(member), at=from_micros(t), watermark=w)
    assert {k: e.value for k, e in unfiltered.settings.items()} == expected

    table = state_table(ledger, at=from_micros(t), watermark=w).to_pylist()
    bulk = {
        r["key"]: r["value"] for r in table if r["member_id"] == member and r["kind"] == "setting_changed"
    }
    assert bulk == expected


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_ledgers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """A factory of empty ledgers (one per Hypothesis example, since tampering is destructive)."""
    opened: list[Ledger] = []
    cleanups: list[Iterator[str]] = []

    def make() -> Ledger:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('chain') / 'ledger.db'}"
        else:
            gen = _pg_schema_url()
            url = next(gen)
            cleanups.append(gen)
        ledger = Ledger.open(url, initialise=True)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()
    for gen in cleanups:
        next(gen, None)


TAMPERS = st.one_of(
    st.tuples(
        st.just("edit"), st.sampled_from(["value", "key", "member_id", "effective_at", "actor", "source"])
    ),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("swap"), st.none()),
)


@given(size=st.integers(2, 10), victim=st.integers(0, 9), other=st.integers(0, 9), tamper=TAMPERS)
@settings(max_examples=25)
def test_the_hash_chain_catches_any_single_edit_deletion_or_swap(
    fresh_ledgers, size: int, victim: int, other: int, tamper: tuple[str, str | None]
) -> None:
    """Whatever one row an attacker changes, removes or swaps, verify() fails at the first affected seq."""
    ledger: Ledger = fresh_ledgers()
    _append_history(ledger, 1, [(KEYS[i % 3], i % 2 == 0, i) for i in range(size)])
    i = victim % size + 1
    j = other % size + 1
    kind, field = tamper
    disable_guards(ledger)
    with ledger.engine.begin() as conn:
        if kind == "edit":
            change = {
                "value": "value = value || 'x'",
                "key": "key = key || 'x'",
                "member_id": "member_id = member_id + 1",
                "effective_at": "effective_at = effective_at + 1",
                "actor": "actor = 'mallory'",
                "source": "source = 'dpo'",
            }[str(field)]
            conn.execute(text(f"UPDATE events SET {change} WHERE seq = {i}"))
            first_bad = i
        elif kind == "delete":
            conn.execute(text(f"DELETE FROM events WHERE seq = {i}"))
            first_bad = i
        else:
            if i == j:
                j = i % size + 1
            low, high = min(i, j), max(i, j)
            conn.execute(text(f"UPDATE events SET seq = -1 WHERE seq = {low}"))
            conn.execute(text(f"UPDATE events SET seq = {low} WHERE seq = {high}"))
            conn.execute(text(f"UPDATE events SET seq = {high} WHERE seq = -1"))
            first_bad = low
    report = ledger.verify()
    assert not report.ok
    assert report.bad_seq == first_bad, report.problem


def test_time_helpers_round_trip() -> None:
    """Microsecond storage is exact for any instant the ledger holds."""
    instant = at("2025-11-03T00:00:00.000001Z") + timedelta(days=400)
    assert from_micros(to_micros(instant)) == instant
