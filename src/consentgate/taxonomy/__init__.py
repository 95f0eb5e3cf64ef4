"""The taxonomy: categories, purposes, regions and settings, shipped as data (``data/*.yaml``)."""

from consentgate.taxonomy.catalog import Taxonomy, load_operator, load_taxonomy
from consentgate.taxonomy.models import (
    REGIONS,
    Category,
    Control,
    Controller,
    Operator,
    Purpose,
    Region,
    Setting,
    SettingGroup,
    SettingKind,
    Text,
)

__all__ = [
    "REGIONS",
    "Category",
    "Control",
    "Controller",
    "Operator",
    "Purpose",
    "Region",
    "Setting",
    "SettingGroup",
    "SettingKind",
    "Taxonomy",
    "Text",
    "load_operator",
    "load_taxonomy",
]
