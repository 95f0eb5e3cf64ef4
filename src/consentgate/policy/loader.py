"""Reading policy files: YAML → validated ``Policy``, with errors naming file and field path."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from consentgate.exceptions import PolicyValidationError
from consentgate.policy.models import Policy
from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.taxonomy.models import SettingKind


def _location(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = _location(err["loc"])
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        problems.append(f"{where}: {err['msg']}{shown}")
    return problems


def _semantic_problems(policy: Policy, taxonomy: Taxonomy) -> list[str]:
    """Keys must exist in the taxonomy: a typo must not silently widen or narrow a decision."""
    problems: list[str] = []
    for purpose, rule in policy.purposes.items():
        base = f"purposes.{purpose}"
        if purpose not in taxonomy.purposes:
            problems.append(f"{base}: unknown purpose (expected one of the taxonomy's purposes)")
        for field in ("categories", "never_used"):
            for i, cat in enumerate(getattr(rule, field)):
                if cat not in taxonomy.categories:
                    problems.append(f"{base}.{field}[{i}]: unknown category {cat!r}")
        overlap = sorted(set(rule.categories) & set(rule.never_used))
        if overlap:
            problems.append(f"{base}: categories both in scope and never used: {overlap}")
        for region, region_rule in rule.regions.items():
            where = f"{base}.regions.{region}"
            if region not in taxonomy.regions:
                problems.append(f"{where}: unknown region (expected one of {sorted(taxonomy.regions)})")
            for i, key in enumerate(region_rule.controlled_by):
                setting = taxonomy.settings.get(key)
                if setting is None:
                    problems.append(f"{where}.controlled_by[{i}]: unknown setting {key!r}")
                elif setting.kind is not SettingKind.toggle:
                    problems.append(f"{where}.controlled_by[{i}]: {key!r} is not an on/off setting")
                elif not any(c.purpose == purpose for c in setting.controls):
                    problems.append(
                        f"{where}.controlled_by[{i}]: setting {key!r} does not control {purpose}"
                        " in the taxonomy"
                    )
            for cat in region_rule.category_basis:
                if cat not in rule.categories:
                    problems.append(f"{where}.category_basis.{cat}: not among the purpose's categories")
            for i, cat in enumerate(region_rule.categories or ()):
                if cat not in rule.categories:
                    problems.append(f"{where}.categories[{i}]: {cat!r} is not among the purpose's categories")
    for key, per_region in policy.setting_defaults.items():
        if key not in taxonomy.settings:
            problems.append(f"setting_defaults.{key}: unknown setting")
        for region in per_region:
            if region not in taxonomy.regions:
                problems.append(f"setting_defaults.{key}.{region}: unknown region")
    return problems


def parse_policy(text: str, *, source: str, taxonomy: Taxonomy | None = None) -> Policy:
    """Parse and validate one policy document; ``source`` names it in errors."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyValidationError(source, [f"{where}not valid YAML ({problem})"]) from None
    if not isinstance(raw, dict):
        raise PolicyValidationError(source, ["(top level): expected a mapping of policy fields"])
    # Top-level keys starting with "x-" are extensions (e.g. YAML anchors), as in OpenAPI.
    raw = {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyValidationError(source, _pydantic_problems(exc)) from None
    problems = _semantic_problems(policy, taxonomy or load_taxonomy())
    if problems:
        raise PolicyValidationError(source, problems)
    return policy


def load_policy_file(path: Path, *, taxonomy: Taxonomy | None = None) -> Policy:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise PolicyValidationError(str(path), [f"cannot read file ({exc.strerror})"]) from None
    return parse_policy(text, source=str(path), taxonomy=taxonomy)


def builtin_policies() -> list[Policy]:
    """The policies shipped with consentgate (``policy/builtin/*.yaml``)."""
    folder = resources.files("consentgate.policy").joinpath("builtin")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            out.append(parse_policy(entry.read_text("utf-8"), source=f"builtin/{entry.name}"))
    return out


def policies_in(folder: Path) -> list[Policy]:
    """Every ``*.yaml``/``*.yml`` policy in an operator's folder."""
    if not folder.is_dir():
        raise PolicyValidationError(str(folder), ["policy folder does not exist"])
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return [load_policy_file(path) for path in files]
