"""Art. 21 objections with Art. 12(3) deadlines, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re

import pytest

from consentgate.exceptions import InputError, NotFoundError, ObjectionStateError
from consentgate.ledger.events import Source
from consentgate.ledger.state import ObjectionStatus
from consentgate.ledger.store import Ledger
from consentgate.objections import (
    decide_objection,
    extend_objection,
    file_objection,
    get_objection,
    list_objections,
)
from consentgate.taxonomy import Taxonomy
from tests.conftest import at, register


def _file(ledger: Ledger, taxonomy: Taxonomy, when: str, member: int = 1) -> ObjectionStatus:
    [status] = file_objection(
        ledger, taxonomy, member_id=member, purposes=["genai.training"], at=at(when), source=Source.dpo
    )
    return status


@pytest.fixture
def member(ledger: Ledger) -> int:
    register(ledger, 1, "DE")
    register(ledger, 2, "FR")
    return 1


def test_the_answer_is_due_one_calendar_month_after_receipt(
    ledger: Ledger, taxonomy: Taxonomy, member: int
) -> None:
    """Received 31 Jan: due 28 Feb (the month's last day), not 3 March."""
    status = _file(ledger, taxonomy, "2026-01-31T10:00:00Z")
    assert status.due == at("2026-02-28T10:00:00Z")
    assert str(status.outcome) == "pending"


def test_an_extension_within_the_first_month_moves_the_due_date(
    ledger: Ledger, taxonomy: Taxonomy, member: int
) -> None:
    """Extended by two months within the first month: due three months after receipt."""
    status = _file(ledger, taxonomy, "2025-11-05")
    extended = extend_objection(
        ledger, reference=status.reference, months=2, reason="many requests", at=at("2025-11-20")
    )
    assert extended.due == at("2026-02-05")
    assert extended.extension_months == 2


def test_an_extension_after_the_first_month_is_refused(
    ledger: Ledger, taxonomy: Taxonomy, member: int
) -> None:
    """The member must be told of an extension within the first month (Art. 12(3))."""
    status = _file(ledger, taxonomy, "2025-11-05")
    with pytest.raises(ObjectionStateError, match="within one month"):
        extend_objection(
            ledger, reference=status.reference, months=1, reason="late", at=at("2025-12-05T00:00:01Z")
        )
    assert get_objection(ledger, status.reference).extension is None


@pytest.mark.parametrize("months", [0, 3])
def test_an_extension_beyond_two_months_is_refused(
    ledger: Ledger, taxonomy: Taxonomy, member: int, months: int
) -> None:
    """Only one or two further months are allowed."""
    status = _file(ledger, taxonomy, "2025-11-05")
    with pytest.raises(InputError, match="1 or 2 months"):
        extend_objection(ledger, reference=status.reference, months=months, reason="x", at=at("2025-11-06"))


def test_only_one_extension_is_allowed(ledger: Ledger, taxonomy: Taxonomy, member: int) -> None:
    """Two one-month extensions cannot be chained into more than Art. 12(3) allows."""
    status = _file(ledger, taxonomy, "2025-11-05")
    extend_objection(ledger, reference=status.reference, months=1, reason="complex", at=at("2025-11-06"))
    with pytest.raises(ObjectionStateError, match="already extended"):
        extend_objection(ledger, reference=status.reference, months=1, reason="again", at=at("2025-11-07"))


def test_a_decision_needs_reasons_and_is_final(ledger: Ledger, taxonomy: Taxonomy, member: int) -> None:
    """No decision without reasons; a decided objection cannot be decided again."""
    status = _file(ledger, taxonomy, "2025-11-05")
    with pytest.raises(InputError, match="reasons"):
        decide_objection(ledger, reference=status.reference, uphold=False, reason="  ", at=at("2025-11-06"))
    decide_objection(ledger, reference=status.reference, uphold=True, reason="ok", at=at("2025-11-06"))
    with pytest.raises(ObjectionStateError, match="already upheld"):
        decide_objection(
            ledger, reference=status.reference, uphold=False, reason="changed mind", at=at("2025-11-07")
        )


def test_a_rejection_points_to_the_right_to_complain(ledger: Ledger, taxonomy: Taxonomy, member: int) -> None:
    """A refusal tells the member they may complain to a supervisory authority (Art. 12(4))."""
    status = _file(ledger, taxonomy, "2025-11-05")
    decided = decide_objection(
        ledger, reference=status.reference, uphold=False, reason="grounds", at=at("2025-11-06")
    )
    assert decided.decision is not None
    assert "supervisory authority" in json.loads(decided.decision.value)["complaint"]


def test_a_decision_cannot_predate_the_objection(ledger: Ledger, taxonomy: Taxonomy, member: int) -> None:
    """A decision before receipt would rewrite history."""
    status = _file(ledger, taxonomy, "2025-11-05")
    with pytest.raises(InputError, match="before the objection was received"):
        decide_objection(ledger, reference=status.reference, uphold=True, reason="x", at=at("2025-11-01"))


def test_overdue_objections_are_listed_by_due_date(ledger: Ledger, taxonomy: Taxonomy, member: int) -> None:
    """Undecided past the due date: overdue; decided or extended ones are not."""
    late = _file(ledger, taxonomy, "2025-10-01", member=1)
    extended = _file(ledger, taxonomy, "2025-10-02", member=2)
    extend_objection(ledger, reference=extended.reference, months=2, reason="complex", at=at("2025-10-10"))
    decided = _file(ledger, taxonomy, "2025-10-03", member=1)
    decide_objection(ledger, reference=decided.reference, uphold=True, reason="ok", at=at("2025-10-20"))
    when = at("2025-11-15")
    everything = list_objections(ledger, at=when)
    assert [s.reference for s in everything] == [late.reference, decided.reference, extended.reference]
    assert [s.reference for s in list_objections(ledger, at=when, overdue_only=True)] == [late.reference]
    assert (
        list_objections(ledger, at=at("2025-10-01T12:00:00Z"), overdue_only=False)[0].reference
        == late.reference
    )
    assert len(list_objections(ledger, at=at("2025-10-01T12:00:00Z"))) == 1


def test_objections_need_a_known_member_and_known_purposes(
    ledger: Ledger, taxonomy: Taxonomy, member: int
) -> None:
    """Unknown members and purposes are refused, nothing recorded."""
    with pytest.raises(NotFoundError, match="member 99"):
        file_objection(ledger, taxonomy, member_id=99, purposes=["genai.training"], at=at("2025-11-05"))
    with pytest.raises(Exception, match="unknown purpose"):
        file_objection(ledger, taxonomy, member_id=1, purposes=["genai.nope"], at=at("2025-11-05"))
    with pytest.raises(NotFoundError, match="OBJ-NOPE"):
        get_objection(ledger, "OBJ-NOPE")
    assert list_objections(ledger) == []


def test_filing_the_same_objection_twice_records_it_once(
    ledger: Ledger, taxonomy: Taxonomy, member: int
) -> None:
    """A retried submission (same idempotency key) returns the same reference; nothing is lost or doubled."""
    first = file_objection(
        ledger,
        taxonomy,
        member_id=1,
        purposes=["genai.training"],
        at=at("2025-11-05"),
        source=Source.dpo,
        idempotency_key="form-123",
    )
    again = file_objection(
        ledger,
        taxonomy,
        member_id=1,
        purposes=["genai.training"],
        at=at("2025-11-05"),
        source=Source.dpo,
        idempotency_key="form-123",
    )
    assert [s.reference for s in first] == [s.reference for s in again]
    assert len(list_objections(ledger)) == 1


def test_a_decision_after_an_extension_keeps_the_extended_due_date(
    ledger: Ledger, taxonomy: Taxonomy, member: int
) -> None:
    """The status returned by a decision still knows the extension (and so whether it was late)."""
    status = _file(ledger, taxonomy, "2025-11-05")
    extend_objection(ledger, reference=status.reference, months=2, reason="complex", at=at("2025-11-10"))
    decided = decide_objection(
        ledger, reference=status.reference, uphold=True, reason="ok", at=at("2026-01-10")
    )
    assert decided.extension_months == 2
    assert decided.due == at("2026-02-05")
    assert decided.decision is not None and decided.decision.effective < decided.due


@pytest.mark.parametrize(
    ("grounds", "words"),
    [("I object\x00", "control character U+0000 at position 9"), ("x" * 5001, "at most 5,000 characters")],
)
def test_grounds_are_plain_text_on_every_path(
    ledger: Ledger, taxonomy: Taxonomy, member: int, grounds: str, words: str
) -> None:
    head = ledger.head()
    with pytest.raises(InputError, match=re.escape(words)):
        file_objection(
            ledger, taxonomy, member_id=member, purposes=["ml.non_generative"], at=None, grounds=grounds
        )
    assert ledger.head() == head  # nothing stored
    kept = file_objection(
        ledger,
        taxonomy,
        member_id=member,
        purposes=["ml.non_generative"],
        at=None,
        grounds="line one\n\tline two",
    )
    assert kept[0].grounds == "line one\n\tline two"
