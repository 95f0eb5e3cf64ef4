"""Decisions that always say why: ``decide(member, category, purpose, at)``."""

from consentgate.decisions.engine import DecisionEngine, decide, member_state
from consentgate.decisions.reasons import Decision, Reason, ReasonCode

__all__ = ["Decision", "DecisionEngine", "Reason", "ReasonCode", "decide", "member_state"]
