"""The taxonomy: categories, purposes, regions and settings, shipped as data (``data/*.yaml``)."""

from consentgate.taxonomy.catalog import Taxonomy, load_taxonomy
from consentgate.taxonomy.models import (
    REGIONS,
    Category,
    Control,
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
    "Purpose",
    "Region",
    "Setting",
    "SettingGroup",
    "SettingKind",
    "Taxonomy",
    "Text",
    "load_taxonomy",
]
