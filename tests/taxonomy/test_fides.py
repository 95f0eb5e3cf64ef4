"""The fideslang export of the taxonomy validates against fideslang's own models."""

from __future__ import annotations

from typing import Any

import pytest
from fideslang.default_taxonomy import DEFAULT_TAXONOMY
from fideslang.models import DataCategory, DataUse
from fideslang.models import Taxonomy as FidesTaxonomy

from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.taxonomy.fides import (
    category_to_fides_category,
    export_fideslang,
    purpose_to_fides_use,
)


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="module")
def doc(taxonomy: Taxonomy) -> dict[str, Any]:
    return export_fideslang(taxonomy)


def test_export_validates_with_fideslang(taxonomy: Taxonomy, doc: dict[str, Any]) -> None:
    """fideslang's Taxonomy model accepts the export, with one item per category and purpose."""
    assert set(doc) == {"data_category", "data_use"}
    fides = FidesTaxonomy.model_validate(doc)
    assert len(fides.data_category) == len(taxonomy.categories)
    assert len(fides.data_use) == len(taxonomy.purposes)


def test_export_builds_fideslang_objects(doc: dict[str, Any]) -> None:
    """Each exported item also builds a fideslang DataCategory or DataUse on its own."""
    categories = [DataCategory(**item) for item in doc["data_category"]]
    uses = [DataUse(**item) for item in doc["data_use"]]
    fides = FidesTaxonomy(data_category=categories, data_use=uses)
    assert fides.data_category == categories


def test_every_parent_key_exists(doc: dict[str, Any]) -> None:
    """Every parent_key is a fideslang default entry or another exported item."""
    default = DEFAULT_TAXONOMY
    known_categories = {c.fides_key for c in default.data_category}
    known_uses = {u.fides_key for u in default.data_use}
    known_categories |= {item["fides_key"] for item in doc["data_category"]}
    known_uses |= {item["fides_key"] for item in doc["data_use"]}
    for item in doc["data_category"]:
        assert item["parent_key"] in known_categories, item["fides_key"]
    for item in doc["data_use"]:
        assert item["parent_key"] in known_uses, item["fides_key"]


def test_parents_are_not_deprecated(doc: dict[str, Any]) -> None:
    """No exported item hangs under a deprecated fideslang default entry."""
    default = DEFAULT_TAXONOMY
    deprecated = {c.fides_key for c in default.data_category if c.version_deprecated}
    deprecated |= {u.fides_key for u in default.data_use if u.version_deprecated}
    for item in [*doc["data_category"], *doc["data_use"]]:
        assert item["parent_key"] not in deprecated, item["fides_key"]


def test_exported_keys_are_unique_and_new(doc: dict[str, Any]) -> None:
    """Exported fides_keys are unique and do not collide with fideslang's default taxonomy."""
    default = DEFAULT_TAXONOMY
    defaults = {c.fides_key for c in [*default.data_category, *default.data_use]}
    keys = [item["fides_key"] for item in [*doc["data_category"], *doc["data_use"]]]
    assert len(keys) == len(set(keys))
    assert not set(keys) & defaults


def test_category_keys_follow_the_naming_rule(taxonomy: Taxonomy, doc: dict[str, Any]) -> None:
    """A category is exported as <fides_parent>.<key, dots as underscores>, tagged with its key."""
    by_key = {item["fides_key"]: item for item in doc["data_category"]}
    item = by_key["user.content.public.content_posts"]
    assert item["parent_key"] == "user.content.public"
    assert item["tags"] == ["consentgate:content.posts"]
    assert item["name"] == taxonomy.category("content.posts").name
    mapping = category_to_fides_category(taxonomy)
    assert set(mapping) == set(taxonomy.categories)
    assert mapping["content.posts"] == "user.content.public.content_posts"


def test_every_item_carries_its_consentgate_key(taxonomy: Taxonomy, doc: dict[str, Any]) -> None:
    """The tags of the export name every category and purpose key exactly once."""
    cat_tags = [tag for item in doc["data_category"] for tag in item["tags"]]
    use_tags = [tag for item in doc["data_use"] for tag in item["tags"]]
    assert sorted(cat_tags) == sorted(f"consentgate:{k}" for k in taxonomy.categories)
    assert sorted(use_tags) == sorted(f"consentgate:{k}" for k in taxonomy.purposes)


def test_genai_training_maps_under_train_ai_system(taxonomy: Taxonomy, doc: dict[str, Any]) -> None:
    """genai.training is exported as a data use equal to or below fideslang's train_ai_system."""
    mapping = purpose_to_fides_use(taxonomy)
    fides_key = mapping["genai.training"]
    assert fides_key == "train_ai_system" or fides_key.startswith("train_ai_system.")
    exported = {item["fides_key"]: item for item in doc["data_use"]}
    assert exported[fides_key]["parent_key"] == "train_ai_system"


def test_purpose_mapping_covers_every_purpose(taxonomy: Taxonomy, doc: dict[str, Any]) -> None:
    """purpose_to_fides_use names, for every purpose, a data use present in the export."""
    mapping = purpose_to_fides_use(taxonomy)
    exported = {item["fides_key"] for item in doc["data_use"]}
    assert set(mapping) == set(taxonomy.purposes)
    assert set(mapping.values()) <= exported


def test_export_is_deterministic(taxonomy: Taxonomy) -> None:
    """Exporting twice gives the same document, sorted by fides_key."""
    first = export_fideslang(taxonomy)
    assert first == export_fideslang(taxonomy)
    for kind in ("data_category", "data_use"):
        keys = [item["fides_key"] for item in first[kind]]
        assert keys == sorted(keys)


def test_module_does_not_import_fideslang() -> None:
    """consentgate.taxonomy.fides never imports fideslang, which is an optional dependency."""
    import ast
    from pathlib import Path

    import consentgate.taxonomy.fides as module

    tree = ast.parse(Path(module.__file__).read_text("utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "fideslang" not in imported
