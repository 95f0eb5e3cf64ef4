"""Typed vocabulary: categories, purposes, regions and member-facing settings."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

DOTTED = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"

CategoryKey = Annotated[
    str,
    StringConstraints(pattern=DOTTED),
    Field(description="Dotted category key, e.g. profile.skills"),
]
PurposeKey = Annotated[
    str,
    StringConstraints(pattern=DOTTED),
    Field(description="Dotted purpose key, e.g. genai.training"),
]
SettingKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]*$"),
    Field(description="Setting key, e.g. genai_improvement"),
]
RegionKey = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2,3}$"),
    Field(description="Region key: EEA, CH, UK, CA, HK, CN, ROW"),
]

REGIONS: tuple[str, ...] = ("EEA", "CH", "UK", "CA", "HK", "CN", "ROW")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sensitivity(StrEnum):
    """How a category is treated regardless of the policy's per-purpose scope."""

    normal = "normal"
    never_train = "never_train"


class Category(_Frozen):
    key: CategoryKey
    name: str
    description: str
    fides_parent: str = Field(description="fideslang default data category the export hangs under")
    sensitivity: Sensitivity = Sensitivity.normal


class Purpose(_Frozen):
    key: PurposeKey
    name: str
    description: str
    fides_use: str = Field(description="fideslang data use this purpose maps to")
    direct_marketing: bool = Field(
        default=False, description="An Art. 21(2) objection to it must always be honoured"
    )


class Region(_Frozen):
    key: RegionKey
    name: str
    countries: tuple[str, ...]


class Text(_Frozen):
    """A text in English and German."""

    en: str
    de: str


class SettingGroup(StrEnum):
    advertising = "advertising"
    privacy = "privacy"


class SettingKind(StrEnum):
    toggle = "toggle"
    """An on/off switch with a value in the ledger."""
    action = "action"
    """A page or request (e.g. 'Get a copy of your data'): listed for completeness, holds no value."""


class Recipient(StrEnum):
    operator = "operator"
    affiliates = "affiliates"
    parent_company = "parent_company"
    advertisers = "advertisers"
    partners = "partners"
    recruiters = "recruiters"
    members = "members"


class Control(_Frozen):
    """One purpose a setting governs, optionally only for some categories."""

    purpose: PurposeKey
    categories: tuple[CategoryKey, ...] | None = Field(
        default=None, description="Categories governed; none means every category of the purpose"
    )


class Setting(_Frozen):
    key: SettingKey
    group: SettingGroup
    section: str = Field(description="Section of the settings page, e.g. 'Profile data'")
    kind: SettingKind = SettingKind.toggle
    label: Text
    question: Text = Field(description="The plain question the member answers")
    explanation: Text = Field(description="Which data, which purpose, who receives it")
    recipients: tuple[Recipient, ...] = ()
    defaults: dict[RegionKey, bool] = Field(
        default_factory=dict, description="Value when the member never chose, per region"
    )
    controls: tuple[Control, ...] = ()

    def governs(self, purpose: str, category: str) -> bool:
        """Whether this setting controls ``purpose`` for ``category``."""
        return any(
            c.purpose == purpose and (c.categories is None or category in c.categories) for c in self.controls
        )


class Controller(_Frozen):
    """Who answers a member's objection, and where to write."""

    name: str
    address: tuple[str, ...]
    regions: tuple[RegionKey, ...] = ()


class Menu(_Frozen):
    """The names on the operator's settings pages, for the menu path to a switch."""

    settings: Text
    groups: dict[SettingGroup, Text]
    sections: dict[str, Text] = Field(
        default_factory=dict, description="Menu names of sections that differ from the taxonomy's"
    )


class Operator(_Frozen):
    """The operator as its members meet it (``data/operator.yaml``): controllers, menu, forms."""

    name: str
    controllers: tuple[Controller, ...]
    default_controller: str
    objection_form: str
    menu: Menu

    def controller_for(self, region: str | None) -> Controller:
        """The controller named for ``region``, else the default one."""
        for controller in self.controllers:
            if region is not None and region in controller.regions:
                return controller
        return next(c for c in self.controllers if c.name == self.default_controller)
