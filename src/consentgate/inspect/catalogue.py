"""The archive catalogue: which file of a member's data archive is which data kind, and which taxonomy
categories its columns hold (``catalogue.yaml``, DOMAIN.md §7).

Recognition is by name first: a file is of a kind when its normalised name matches one of the kind's
patterns and, when it has a header, the kind's signature columns are in it. A header alone never
decides, because three AI-chat files share the private messages' header: a file that no pattern claims is
reported as unrecognised, not guessed from its columns.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from consentgate.exceptions import TaxonomyError
from consentgate.taxonomy import Taxonomy, Text, load_taxonomy
from consentgate.taxonomy.models import CategoryKey

BUILTIN = "inspect/catalogue.yaml"

KindKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]*$"),
    Field(description="Short id of a data kind, e.g. profile, job_applications"),
]

FilePattern = Annotated[
    str,
    StringConstraints(pattern=r"^.*[^/\\\s].*$"),
    Field(description="A file name, optionally with sub-folders; * matches any run of characters"),
]

_SEPARATORS = re.compile(r"[\s_\-]+")
# A member id (Shares_8812345.csv) has 5 digits or more; a split part (Job Applications_1.csv) 1 to 3.
# Four digits are left alone: they are more often a year than either.
_MEMBER_ID = re.compile(r"[\s_\-]+\d{5,}$")
_SPLIT_PART = re.compile(r"[\s_\-]+\d{1,3}$")


class KindEntry(BaseModel):
    """One data kind of the archive, as written in ``catalogue.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: KindKey
    label: Text
    files: tuple[FilePattern, ...] = Field(min_length=1, description="File-name patterns, see normalise_name")
    header: tuple[str, ...] = Field(default=(), description="Columns a header must hold (signature)")
    columns: dict[str, CategoryKey] = Field(default_factory=dict, description="Column → category key")
    file_category: CategoryKey | None = Field(default=None, description="Category of the whole file")
    note: str | None = Field(default=None, description="Why the mapping is what it is")


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kinds: tuple[KindEntry, ...]


@dataclass(frozen=True)
class Recognition:
    """What the catalogue makes of one file of an archive."""

    kind: str | None
    """The data kind; None when the file is not recognised."""
    label: dict[str, str]
    """The kind's label by language (en, de); empty when unrecognised."""
    columns: dict[str, str]
    """Column as it appears in the file's header → category key (duplicate names once)."""
    file_category: str | None
    """Category of the file as a whole (HTML articles, rows of mixed kinds), if any."""
    unrecognised_columns: list[str]
    """Header columns of a recognised file that the catalogue does not map, in header order."""
    implied_categories: tuple[str, ...] = ()
    """For a file read without a header (a single line such as "No conversations found"): the
    categories its kind holds. Empty when a header was read."""

    @property
    def categories(self) -> list[str]:
        """The distinct categories the file holds, sorted."""
        found = set(self.columns.values()) | set(self.implied_categories)
        if self.file_category is not None:
            found.add(self.file_category)
        return sorted(found)


UNRECOGNISED = Recognition(kind=None, label={}, columns={}, file_category=None, unrecognised_columns=[])


def normalise_column(name: str) -> str:
    """A column name as compared: no BOM, surrounding quotes or whitespace; case, spaces, underscores
    and hyphens do not count (``'\\ufeff"CONVERSATION ID"'`` → ``conversationid``)."""
    text = name.replace("\ufeff", "").strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return _SEPARATORS.sub("", text).casefold()


def _normalise_file_name(name: str) -> str:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:  # no extension, or a dot file
        stem, extension = name, ""
    stem = _MEMBER_ID.sub("", stem)
    stem = _SPLIT_PART.sub("", stem)
    stem = _MEMBER_ID.sub("", stem)  # Shares_8812345_2.csv: a split part after the member id
    normalised = _SEPARATORS.sub("", stem).casefold()
    return f"{normalised}.{extension.casefold()}" if extension else normalised


def _components(path: str, folders: Collection[str]) -> list[str]:
    """The normalised path: its file name and the run of export sub-folders just above it."""
    parts = [p for p in re.split(r"[/\\]", path.strip()) if p not in ("", ".")]
    if not parts:
        return []
    kept = [_normalise_file_name(parts[-1])]
    for folder in reversed(parts[:-1]):
        name = _SEPARATORS.sub("", folder).casefold()
        if name not in folders:
            break  # a top folder the ZIP wraps the export in, and everything above it
        kept.append(name)
    return kept[::-1]


def normalise_name(path_in_archive: str, *, folders: Collection[str] | None = None) -> str:
    """A path inside an archive as the catalogue compares it.

    Case, spaces, underscores and hyphens do not count (``Company Follows.csv`` = ``Company_Follows.csv``),
    nor a member-id suffix (``Shares_8812345.csv`` = ``Shares.csv``), a split suffix
    (``Job Applications_2.csv`` = ``Job Applications.csv``) or top folders
    (``Basic_LinkedInDataExport_01-02-2026/Profile.csv`` = ``Profile.csv``). The export's own sub-folders
    (those the catalogue's patterns name: ``Jobs``, ``Articles``) are kept: ``jobs/jobapplications.csv``.
    ``folders`` defaults to those of the built-in catalogue.
    """
    kept = builtin_catalogue().folders if folders is None else frozenset(folders)
    return "/".join(_components(path_in_archive, kept))


@dataclass(frozen=True)
class _Compiled:
    """An entry prepared for matching: patterns and columns in normalised form."""

    entry: KindEntry
    patterns: tuple[tuple[str, ...], ...]
    columns: dict[str, str]
    signature: frozenset[str]

    def recognition(self, header: Sequence[str] | None) -> Recognition:
        label = {"en": self.entry.label.en, "de": self.entry.label.de}
        if not header:
            implied = tuple(sorted(set(self.columns.values())))
            return Recognition(self.entry.kind, label, {}, self.entry.file_category, [], implied)
        columns: dict[str, str] = {}
        unrecognised: list[str] = []
        for column in header:
            key = normalise_column(column)
            if not key or column in columns or column in unrecognised:
                continue  # the empty name a trailing comma leaves; a duplicate name maps once
            category = self.columns.get(key)
            if category is None:
                unrecognised.append(column)
            else:
                columns[column] = category
        return Recognition(self.entry.kind, label, columns, self.entry.file_category, unrecognised)


def _pattern(text: str) -> tuple[str, ...]:
    parts = [p for p in re.split(r"[/\\]", text) if p]
    folders = [_SEPARATORS.sub("", p).casefold() for p in parts[:-1]]
    return (*folders, _normalise_file_name(parts[-1]))


def _matches(pattern: tuple[str, ...], path: Sequence[str]) -> bool:
    if len(pattern) > len(path):
        return False
    tail = path[len(path) - len(pattern) :]
    return all(fnmatchcase(part, glob) for part, glob in zip(tail, pattern, strict=True))


@dataclass(frozen=True)
class Catalogue:
    """The validated catalogue: kinds by id, and recognition of a file by its path and header."""

    kinds: dict[str, KindEntry]
    folders: frozenset[str]
    """The export's own sub-folders (normalised), kept by normalise_name."""
    _compiled: tuple[_Compiled, ...] = field(repr=False)

    def entry_for(self, path_in_archive: str) -> KindEntry | None:
        """The entry that claims ``path_in_archive`` by its name (the most specific pattern), before any
        header is read: what a reader needs to find the header row. The header can still refuse it."""
        candidates = self._candidates(path_in_archive)
        return candidates[0].entry if candidates else None

    def recognise(self, path_in_archive: str, header: Sequence[str] | None) -> Recognition:
        """What ``path_in_archive`` holds. ``header`` is the file's header row as read (None for a file
        without one: an HTML article, a single line such as "No conversations found")."""
        present = {normalise_column(c) for c in header} if header else None
        for compiled in self._candidates(path_in_archive):
            if present is None or compiled.signature <= present:
                return compiled.recognition(header)
        return UNRECOGNISED

    def _candidates(self, path_in_archive: str) -> list[_Compiled]:
        """Entries whose patterns match the path: the most specific pattern first (Jobs/… before a bare
        name), then catalogue order."""
        path = _components(path_in_archive, self.folders)
        if not path:
            return []
        ranked = sorted(
            (-len(pattern), index)
            for index, compiled in enumerate(self._compiled)
            for pattern in compiled.patterns
            if _matches(pattern, path)
        )
        return [self._compiled[index] for index in dict.fromkeys(index for _, index in ranked)]


def _problems(entries: Iterable[KindEntry], taxonomy: Taxonomy) -> list[str]:
    """Keys must exist in the taxonomy and names must not collide: a typo must not silently move a
    file to another category or make two kinds claim one file."""
    problems: list[str] = []
    kinds: set[str] = set()
    claimed: dict[tuple[str, ...], str] = {}
    for entry in entries:
        where = f"kind {entry.kind!r}"
        if entry.kind in kinds:
            problems.append(f"{where}: duplicate kind")
        kinds.add(entry.kind)
        for text in entry.files:
            pattern = _pattern(text)
            owner = claimed.setdefault(pattern, entry.kind)
            if owner != entry.kind:
                problems.append(f"{where}: file pattern {text!r} is already claimed by kind {owner!r}")
        seen: dict[str, str] = {}
        for column, category in entry.columns.items():
            if category not in taxonomy.categories:
                problems.append(f"{where}, column {column!r}: unknown category {category!r}")
            first = seen.setdefault(normalise_column(column), column)
            if first != column:
                problems.append(f"{where}: columns {first!r} and {column!r} are the same after normalisation")
        if entry.file_category is not None and entry.file_category not in taxonomy.categories:
            problems.append(f"{where}, file_category: unknown category {entry.file_category!r}")
        if not entry.columns and entry.file_category is None and not entry.note:
            problems.append(f"{where}: maps no column and has no file_category; say why in `note`")
        if any(not normalise_column(c) for c in entry.header):
            problems.append(f"{where}: empty column name in the header signature")
    return problems


def _read(path: Path | None) -> tuple[str, str]:
    if path is None:
        return BUILTIN, resources.files("consentgate.inspect").joinpath("catalogue.yaml").read_text("utf-8")
    try:
        return str(path), path.read_text("utf-8")
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot read the archive catalogue ({exc.strerror})") from None


def _invalid(source: str, problems: list[str]) -> TaxonomyError:
    listing = "\n".join(f"  - {p}" for p in problems)
    return TaxonomyError(f"{source}: invalid archive catalogue\n{listing}")


def load_catalogue(taxonomy: Taxonomy, path: Path | None = None) -> Catalogue:
    """Load the catalogue (the built-in one unless ``path`` is given) and check it against ``taxonomy``."""
    source, text = _read(path)
    try:
        raw: Any = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _invalid(source, [_yaml_problem(exc)]) from None
    try:
        document = _CatalogueFile.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(source, [_pydantic_problem(err, raw) for err in exc.errors()]) from None
    problems = _problems(document.kinds, taxonomy)
    if problems:
        raise _invalid(source, problems)
    compiled = tuple(
        _Compiled(
            entry=entry,
            patterns=tuple(dict.fromkeys(_pattern(p) for p in entry.files)),
            columns={normalise_column(c): cat for c, cat in entry.columns.items()},
            signature=frozenset(normalise_column(c) for c in entry.header),
        )
        for entry in document.kinds
    )
    folders = frozenset(part for c in compiled for pattern in c.patterns for part in pattern[:-1])
    return Catalogue(kinds={e.kind: e for e in document.kinds}, folders=folders, _compiled=compiled)


@cache
def builtin_catalogue() -> Catalogue:
    """The built-in catalogue checked against the built-in taxonomy (cached: it is immutable data)."""
    return load_catalogue(load_taxonomy())


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"


def _pydantic_problem(err: Any, raw: Any) -> str:
    """One validation error, located by kind id where the entry has one (``kinds[3] (receipts)``)."""
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if len(loc) >= 2 and loc[0] == "kinds" and isinstance(loc[1], int) and isinstance(raw, dict):
        entries = raw.get("kinds")
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        kind = entry.get("kind") if isinstance(entry, dict) else None
        rest = ".".join(str(p) for p in loc[2:])
        where = f"kind {kind!r}" + (f", {rest}" if rest else "") if kind else where
    return f"{where}: {err['msg']}"


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys: YAML's "last one wins" would silently drop a column's
    first mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
