"""Decisions that always say why: ``decide(member, category, purpose, at)``; ``decide_many`` in bulk."""

from consentgate.decisions.engine import (
    DecisionEngine,
    Question,
    decide,
    decide_many,
    member_state,
    member_states,
)
from consentgate.decisions.reasons import Decision, Reason, ReasonCode, Verdict

__all__ = [
    "Decision",
    "DecisionEngine",
    "Question",
    "Reason",
    "ReasonCode",
    "Verdict",
    "decide",
    "decide_many",
    "member_state",
    "member_states",
]
