"""Policies as versioned files with effective dates, and the timeline that picks one for an instant."""

from consentgate.policy.loader import builtin_policies, load_policy_file, parse_policy
from consentgate.policy.models import LegalBasis, ObjectionMode, Policy, PurposeRule, RegionRule
from consentgate.policy.timeline import Change, Timeline, diff_policies, load_timeline

__all__ = [
    "Change",
    "LegalBasis",
    "ObjectionMode",
    "Policy",
    "PurposeRule",
    "RegionRule",
    "Timeline",
    "builtin_policies",
    "diff_policies",
    "load_policy_file",
    "load_timeline",
    "parse_policy",
]
