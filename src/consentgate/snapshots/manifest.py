"""The manifest: what a snapshot holds and how it was made, as canonical JSON.

No build time, host or path inside: the same inputs, policy and watermark give the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consentgate.snapshots.eligibility import UNKNOWN_CATEGORY, Eligibility

FORMAT = "consentgate.snapshot/1"
MAX_LISTED_UNKNOWN = 50


def canonical_json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@dataclass
class Counts:
    """Record counts of one build: included per category, excluded per reason, both per region."""

    records_in: int = 0
    included: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)
    by_region: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unknown_categories: Counter[str] = field(default_factory=Counter)

    @property
    def records_included(self) -> int:
        return sum(self.included.values())

    @property
    def records_excluded(self) -> int:
        return sum(self.excluded.values())

    def to_dict(self) -> dict[str, Any]:
        unknown = sorted(self.unknown_categories.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "records_in": self.records_in,
            "records_included": self.records_included,
            "records_excluded": self.records_excluded,
            "included_by_category": dict(sorted(self.included.items())),
            "excluded_by_reason": dict(sorted(self.excluded.items())),
            "by_region": {
                region: dict(sorted(counts.items())) for region, counts in sorted(self.by_region.items())
            },
            "unknown_categories": dict(unknown[:MAX_LISTED_UNKNOWN]),
            "unknown_categories_not_listed": max(0, len(unknown) - MAX_LISTED_UNKNOWN),
        }


def tally(
    groups: list[tuple[int, str | None, bool, int]],
    rules: dict[tuple[int, str], tuple[bool, str, str]],
    eligibility: Eligibility,
    known_categories: frozenset[str],
) -> Counts:
    """Turn the engine's (class, category, late, n) groups into counts by reason and region.

    ``by_region`` counts ``included`` and every exclusion reason per region ("?" when unknown).
    """
    counts = Counts()
    regions = eligibility.region_of_class()
    for class_id, category, late, n in groups:
        known = category is not None and category in known_categories
        key = category if known and category is not None else UNKNOWN_CATEGORY
        allowed, reason, late_reason = rules[(class_id, key)]
        counts.records_in += n
        if not known:
            counts.unknown_categories["(null)" if category is None else category] += n
        region = regions.get(class_id) or "?"
        if allowed and not late:
            counts.included[key] += n
            counts.by_region[region]["included"] += n
        else:
            why = late_reason if late else reason
            counts.excluded[why] += n
            counts.by_region[region][why] += n
    return counts


def file_entry(path: Path, root: Path, rows: int, sha256: str) -> dict[str, Any]:
    return {
        "file": path.relative_to(root).as_posix(),
        "rows": rows,
        "bytes": path.stat().st_size,
        "sha256": sha256,
    }
