"""Loading the taxonomy from its data files and answering look-ups by key."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from consentgate.exceptions import TaxonomyError
from consentgate.taxonomy.models import (
    REGIONS,
    Category,
    Operator,
    Purpose,
    Region,
    Setting,
    SettingKind,
)


@dataclass(frozen=True)
class Taxonomy:
    """The vocabulary every other part uses; look-ups by key are dictionary reads."""

    categories: dict[str, Category]
    purposes: dict[str, Purpose]
    regions: dict[str, Region]
    settings: dict[str, Setting]
    assigned_countries: frozenset[str]
    _country_region: dict[str, str] = field(repr=False)

    def region_of(self, country: str) -> str | None:
        """The region key for an ISO 3166-1 alpha-2 code, or None for an unknown code."""
        code = country.strip().upper()
        if code not in self.assigned_countries:
            return None
        return self._country_region.get(code, "ROW")

    def country(self, code: str) -> str:
        """``code`` as an ISO 3166-1 alpha-2 code (upper case), or an error saying what was expected."""
        normal = code.strip().upper()
        if normal not in self.assigned_countries:
            raise TaxonomyError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE, FR, US)")
        return normal

    def category(self, key: str) -> Category:
        try:
            return self.categories[key]
        except KeyError:
            raise TaxonomyError(f"unknown category {key!r}") from None

    def purpose(self, key: str) -> Purpose:
        try:
            return self.purposes[key]
        except KeyError:
            raise TaxonomyError(f"unknown purpose {key!r}") from None

    def setting(self, key: str) -> Setting:
        try:
            return self.settings[key]
        except KeyError:
            raise TaxonomyError(f"unknown setting {key!r}") from None

    def toggle(self, key: str) -> Setting:
        """A setting that holds an on/off value; action entries are refused."""
        setting = self.setting(key)
        if setting.kind is not SettingKind.toggle:
            raise TaxonomyError(f"setting {key!r} is an action, not an on/off switch")
        return setting

    def settings_governing(self, purpose: str, category: str) -> list[Setting]:
        return [s for s in self.settings.values() if s.governs(purpose, category)]


def _read(name: str) -> Any:
    text = resources.files("consentgate.taxonomy").joinpath("data", name).read_text("utf-8")
    return yaml.safe_load(text)


def _validated(model: type[Any], rows: list[dict[str, Any]], file: str) -> list[Any]:
    out = []
    for index, row in enumerate(rows):
        try:
            out.append(model.model_validate(row))
        except ValidationError as exc:
            raise TaxonomyError(f"taxonomy/data/{file}, entry {index} ({row.get('key')}): {exc}") from None
    return out


@cache
def load_taxonomy() -> Taxonomy:
    """Load and cross-check the built-in taxonomy (cached: it is immutable data)."""
    categories = _validated(Category, _read("categories.yaml")["categories"], "categories.yaml")
    purposes = _validated(Purpose, _read("purposes.yaml")["purposes"], "purposes.yaml")
    region_doc = _read("regions.yaml")
    regions = [
        Region(key=key, name=body["name"], countries=tuple(body["countries"]))
        for key, body in region_doc["regions"].items()
    ]
    settings = _validated(Setting, _read("settings.yaml")["settings"], "settings.yaml")
    assigned = frozenset(region_doc["assigned_codes"].split())

    taxonomy = Taxonomy(
        categories={c.key: c for c in categories},
        purposes={p.key: p for p in purposes},
        regions={r.key: r for r in regions},
        settings={s.key: s for s in settings},
        assigned_countries=assigned,
        _country_region={code: r.key for r in regions for code in r.countries},
    )
    _check(taxonomy, len(categories), len(purposes), len(settings))
    return taxonomy


@cache
def load_operator() -> Operator:
    """The operator's controllers, menu names and forms (``data/operator.yaml``)."""
    try:
        operator = Operator.model_validate(_read("operator.yaml"))
    except ValidationError as exc:
        raise TaxonomyError(f"taxonomy/data/operator.yaml: {exc}") from None
    if not any(c.name == operator.default_controller for c in operator.controllers):
        raise TaxonomyError("taxonomy/data/operator.yaml: default_controller names no controller")
    return operator


def _check(t: Taxonomy, n_categories: int, n_purposes: int, n_settings: int) -> None:
    """Cross-references must resolve; a typo in the data must not silently weaken a decision."""
    problems: list[str] = []
    if len(t.categories) != n_categories:
        problems.append("duplicate category keys")
    if len(t.purposes) != n_purposes:
        problems.append("duplicate purpose keys")
    if len(t.settings) != n_settings:
        problems.append("duplicate setting keys")
    if tuple(t.regions) != REGIONS:
        problems.append(f"regions must be exactly {REGIONS}")
    for region in t.regions.values():
        for code in region.countries:
            if code not in t.assigned_countries:
                problems.append(f"region {region.key}: {code!r} is not an assigned ISO code")
    for s in t.settings.values():
        if s.kind is SettingKind.toggle and set(s.defaults) != set(REGIONS):
            problems.append(f"setting {s.key}: defaults must name every region {REGIONS}")
        for control in s.controls:
            if control.purpose not in t.purposes:
                problems.append(f"setting {s.key}: unknown purpose {control.purpose}")
            for cat in control.categories or ():
                if cat not in t.categories:
                    problems.append(f"setting {s.key}: unknown category {cat}")
    if problems:
        raise TaxonomyError("built-in taxonomy is inconsistent: " + "; ".join(problems))
