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
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "value_error":
            shown = ""  # our own validators already say what they got
        elif isinstance(got, dict | list):
            shown = ""
        else:
            shown = f" (got {got!r})"
        problems.append(f"{where}: {message}{shown}")
    return problems


def _semantic_problems(policy: Policy, taxonomy: Taxonomy) -> list[str]:
    """Keys must exist in the taxonomy: a typo must not silently widen or narrow a decision."""
    problems: list[str] = []
    for purpose, rule in policy.purposes.items():
        base = f"purposes.{purpose}"
        if purpose not in taxonomy.purposes:
            problems.append(f"{base}: unknown purpose (expected one of the taxonomy's purposes)")
            continue  # its settings and categories cannot be checked against an unknown purpose
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


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, first: yaml.Mark, again: yaml.Mark) -> None:
        self.text = (
            f"line {again.line + 1}, column {again.column + 1}: duplicate key {key!r} "
            f"(first at line {first.line + 1})"
        )
        super().__init__(self.text)


class _BadKey(yaml.YAMLError):
    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)


MAX_POLICY_BYTES = 1 << 20
"""A policy file is at most 1 MiB (the built-in ones are about 10 KiB)."""
MAX_NESTING = 32
"""Mappings and lists nest at most this deep (a policy needs 5); deeper YAML is refused before it is
built, instead of exhausting Python's recursion limit."""


def _nesting_problem(text: str) -> str | None:
    """Refuse deep nesting from the event stream, before any object is constructed."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    mark = event.start_mark
                    where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
                    return f"{where}nested more than {MAX_NESTING} levels deep"
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        return _yaml_problem(exc)
    return None


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys: YAML's "last one wins" could silently drop a
    purpose's never-used list."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool) and key is not None:
                mark = key_node.start_mark
                raise _BadKey(
                    f"line {mark.line + 1}, column {mark.column + 1}: a {type(key).__name__} as a key"
                    " (expected a name)"
                )
            if key in seen:
                raise _DuplicateKey(key, seen[key], key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, _DuplicateKey | _BadKey):
        return exc.text
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f"; {context} at line {context_mark.line + 1}, column {context_mark.column + 1}"
    return f"{where}not valid YAML ({problem})"


def parse_policy(text: str, *, source: str, taxonomy: Taxonomy | None = None) -> Policy:
    """Parse and validate one policy document; ``source`` names it in errors."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyValidationError(source, [f"larger than {MAX_POLICY_BYTES >> 20} MiB; not a policy"])
    nested = _nesting_problem(text)
    if nested is not None:
        raise PolicyValidationError(source, [nested])
    try:
        raw: Any = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyValidationError(source, [_yaml_problem(exc)]) from None
    except RecursionError:  # aliases can nest what the event stream does not show
        raise PolicyValidationError(source, [f"nested more than {MAX_NESTING} levels deep"]) from None
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
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyValidationError(str(path), [f"cannot read file ({exc.strerror})"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyValidationError(
            str(path), [f"line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"]
        ) from None
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
