"""The policy timeline: which version is in force at an instant, and what changed between two."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from consentgate.exceptions import NotFoundError, PolicyValidationError
from consentgate.policy.loader import builtin_policies, policies_in
from consentgate.policy.models import Policy
from consentgate.timeutil import ensure_utc


class Timeline:
    """Policies ordered by ``effective_from``; the latest one not after T decides for T."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        ordered = sorted(policies, key=lambda p: p.effective_from)
        seen: dict[tuple[str, int], Policy] = {}
        for policy in ordered:
            if (policy.id, policy.version) in seen:
                raise PolicyValidationError(policy.ref, ["the same id and version is defined twice"])
            seen[(policy.id, policy.version)] = policy
        for earlier, later in pairwise(ordered):
            if earlier.effective_from == later.effective_from:
                raise PolicyValidationError(
                    later.ref,
                    [f"effective_from: same instant as {earlier.ref}; the timeline would be ambiguous"],
                )
        self.policies: tuple[Policy, ...] = tuple(ordered)
        self._starts = [p.effective_from for p in ordered]

    def in_force(self, at: datetime) -> Policy | None:
        """The policy deciding for instant ``at``, or None before the first one."""
        index = bisect.bisect_right(self._starts, ensure_utc(at)) - 1
        return self.policies[index] if index >= 0 else None

    def get(self, ref: str) -> Policy:
        """Find by ``id`` (latest version) or ``id@version``."""
        ident, _, version = ref.partition("@")
        matches = [p for p in self.policies if p.id == ident and (not version or str(p.version) == version)]
        if not matches:
            known = ", ".join(p.ref for p in self.policies)
            raise NotFoundError(f"no policy {ref!r} (known: {known})")
        return max(matches, key=lambda p: p.version)

    def previous(self, policy: Policy) -> Policy | None:
        index = self.policies.index(policy)
        return self.policies[index - 1] if index > 0 else None


def load_timeline(policy_dirs: Sequence[Path] = (), *, include_builtin: bool = True) -> Timeline:
    policies: list[Policy] = builtin_policies() if include_builtin else []
    for folder in policy_dirs:
        policies.extend(policies_in(folder))
    if not policies:
        raise PolicyValidationError("policy timeline", ["no policies loaded"])
    return Timeline(policies)


@dataclass(frozen=True)
class Change:
    """One difference between two policies, in a form a member notice can be written from."""

    path: str
    before: Any
    after: Any

    def describe(self) -> str:
        if self.before is None:
            return f"{self.path}: added {_show(self.after)}"
        if self.after is None:
            return f"{self.path}: removed (was {_show(self.before)})"
        return f"{self.path}: {_show(self.before)} → {_show(self.after)}"


def _show(value: Any) -> str:
    """A short rendering: lists inline, rules summarised by what matters to a reader."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        if "regions" in value:
            parts = [f"regions {', '.join(value['regions']) or 'none'}"]
            parts.append(f"{len(value.get('categories', []))} categories")
            return "; ".join(parts)
        if "legal_basis" in value:
            controlled = ", ".join(value.get("controlled_by") or []) or "no setting"
            return f"legal basis {value['legal_basis']}, controlled by {controlled}"
        shown = [f"{k}: {_show(v)}" for k, v in value.items() if v not in (None, [], {}, "")]
        return "{" + ", ".join(shown) + "}"
    return str(value)


def _walk(path: str, before: Any, after: Any, out: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            _walk(sub, before.get(key), after.get(key), out)
    elif before != after:
        out.append(Change(path, before, after))


_IGNORED = {"id", "version", "title", "summary", "changes", "effective_from"}


def diff_policies(a: Policy, b: Policy) -> list[Change]:
    """Rule-level differences from ``a`` to ``b`` (metadata such as titles left out)."""
    before = {k: v for k, v in a.model_dump(mode="json").items() if k not in _IGNORED}
    after = {k: v for k, v in b.model_dump(mode="json").items() if k not in _IGNORED}
    out: list[Change] = []
    _walk("", before, after, out)
    return out
