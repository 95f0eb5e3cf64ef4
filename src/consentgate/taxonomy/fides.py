"""Export of the taxonomy to fideslang, so consentgate's vocabulary plugs into Fides data maps.

Every category becomes a fideslang *data category* below its ``fides_parent`` (a default fideslang
category) and every purpose a *data use* below its ``fides_use`` (a default fideslang use; e.g.
``genai.training`` lands under ``train_ai_system``). The consentgate key of each item is carried in
its ``tags`` as ``consentgate:<key>``.

fideslang is an optional dependency (``consentgate[fides]``): this module builds plain dictionaries
from our own data and never imports it. Validate the result with
``fideslang.models.Taxonomy.model_validate(export_fideslang(taxonomy))``.
"""

from __future__ import annotations

from typing import Any

from consentgate.taxonomy.catalog import Taxonomy
from consentgate.taxonomy.models import Category, Purpose

TAG_PREFIX = "consentgate:"
"""Prefix of the tag that names the consentgate key of an exported item."""


def category_fides_key(category: Category) -> str:
    """The fides_key of an exported category: ``<fides_parent>.<key with dots as underscores>``."""
    return f"{category.fides_parent}.{category.key.replace('.', '_')}"


def purpose_fides_key(purpose: Purpose) -> str:
    """The fides_key of an exported purpose: ``<fides_use>.<key with dots as underscores>``."""
    return f"{purpose.fides_use}.{purpose.key.replace('.', '_')}"


def _category_item(category: Category) -> dict[str, Any]:
    return {
        "fides_key": category_fides_key(category),
        "parent_key": category.fides_parent,
        "name": category.name,
        "description": category.description,
        "tags": [f"{TAG_PREFIX}{category.key}"],
        "is_default": False,
    }


def _purpose_item(purpose: Purpose) -> dict[str, Any]:
    return {
        "fides_key": purpose_fides_key(purpose),
        "parent_key": purpose.fides_use,
        "name": purpose.name,
        "description": purpose.description,
        "tags": [f"{TAG_PREFIX}{purpose.key}"],
        "is_default": False,
    }


def export_fideslang(taxonomy: Taxonomy) -> dict[str, Any]:
    """A fideslang taxonomy document ``{"data_category": [...], "data_use": [...]}`` of plain dicts.

    Items are sorted by fides_key so the document is deterministic. Parents are fideslang's default
    taxonomy entries; they are referenced, not repeated.
    """
    categories = sorted(taxonomy.categories.values(), key=category_fides_key)
    purposes = sorted(taxonomy.purposes.values(), key=purpose_fides_key)
    return {
        "data_category": [_category_item(c) for c in categories],
        "data_use": [_purpose_item(p) for p in purposes],
    }


def purpose_to_fides_use(taxonomy: Taxonomy) -> dict[str, str]:
    """Our purpose key -> the fides_key of the data use it is exported as."""
    return {key: purpose_fides_key(purpose) for key, purpose in sorted(taxonomy.purposes.items())}


def category_to_fides_category(taxonomy: Taxonomy) -> dict[str, str]:
    """Our category key -> the fides_key of the data category it is exported as."""
    return {key: category_fides_key(cat) for key, cat in sorted(taxonomy.categories.items())}
