"""``inspect_archive``: which files of a member's own archive the regime lets the operator use, for what.

Every file is recognised by the catalogue (``catalogue.yaml``: file-name patterns and header
signatures → a data kind and taxonomy categories) and read once, streaming. The member's facts come
from the archive where it has them (the birth date in Profile.csv; the country from the receipts'
billing country when every receipt names the same one) and from the options otherwise. The member
state is built in memory from those facts and the settings (``--settings``, else the regional
defaults), and every (category found, purpose of the policy in force at T) is decided by the one
policy engine, ``DecisionEngine.decide_state``, as ``decide()`` does for a ledger member. No ledger,
no network.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from consentgate.decisions.engine import DecisionEngine
from consentgate.decisions.reasons import Decision, ReasonCode
from consentgate.exceptions import InputError, TaxonomyError
from consentgate.inspect.archive import ArchiveFile, open_archive
from consentgate.inspect.catalogue import Catalogue, Recognition, load_catalogue, normalise_column
from consentgate.inspect.csvread import CsvScan, scan_csv
from consentgate.ledger.events import EventKind, LedgerEvent
from consentgate.ledger.state import MemberState, is_minor_on, resolve_member
from consentgate.timeutil import format_instant, to_micros

INSPECTED_MEMBER = 0
"""The member id of the in-memory state (the archive's owner; no ledger id is needed)."""
FACT_ROWS = 5
_BIRTH_FORMATS = ("%b %d, %Y", "%d %b %Y", "%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%B %d, %Y")


@dataclass(frozen=True)
class PurposeVerdict:
    treatment: str
    """``used``, ``never_used``, ``not_used`` or ``unrecognised`` (DESIGN §8)."""
    reasons: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    """The categories of the file that may be used for the purpose."""
    by_category: tuple[tuple[str, str], ...] = ()
    """(category, treatment) for each category of the file: the report's chart counts by these."""


@dataclass
class FileReport:
    path: str
    kind: str | None
    label: dict[str, str]
    records: int
    categories: list[str]
    purposes: dict[str, PurposeVerdict] = field(default_factory=dict)
    unrecognised_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    note_codes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """The notes as (key of ``NOTES``, placeholders), for the member's language."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "records": self.records,
            "categories": self.categories,
            "purposes": {
                key: {
                    "treatment": v.treatment,
                    "reasons": list(v.reasons),
                    "allowed_categories": list(v.allowed),
                }
                for key, v in self.purposes.items()
            },
            "unrecognised_columns": self.unrecognised_columns,
            "notes": self.notes,
        }


@dataclass
class Inspection:
    at: datetime
    country: str
    country_source: str
    region: str | None
    birth_date: date | None
    minor: bool
    policy: dict[str, Any] | None
    purposes: list[str]
    files: list[FileReport]
    name: str | None = None
    email: str | None = None
    settings_source: str = "regional defaults"
    settings: dict[str, bool] = field(default_factory=dict)
    """The member's own choices (``--settings``); the regional defaults hold for the rest."""

    def unrecognised(self) -> dict[str, Any]:
        return {
            "files": [f.path for f in self.files if f.kind is None],
            "columns": {f.path: f.unrecognised_columns for f in self.files if f.unrecognised_columns},
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` contract of DESIGN §8 (extra keys only added, never renamed)."""
        return {
            "member": {
                "country": self.country,
                "country_source": self.country_source,
                "region": self.region,
                "birth_date": None if self.birth_date is None else self.birth_date.isoformat(),
                "minor": self.minor,
                "settings": self.settings_source,
            },
            "at": format_instant(self.at),
            "policy": self.policy,
            "purposes": self.purposes,
            "files": [f.to_dict() for f in self.files],
            "unrecognised": self.unrecognised(),
        }


def _header_test(catalogue: Catalogue, path: str) -> Any:
    """The header row of ``path``'s kind: a row with every signature column (or half its columns)."""
    entry = catalogue.entry_for(path)
    if entry is None:
        return None
    wanted = {normalise_column(c) for c in (entry.header or list(entry.columns))}
    if not wanted:
        return None
    need = len(wanted) if entry.header else max(1, (len(wanted) + 1) // 2)

    def test(row: list[str]) -> bool:
        return len(wanted & {normalise_column(v) for v in row}) >= need

    return test


def _parse_birth(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    for pattern in _BIRTH_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _value(scan: CsvScan, column: str) -> list[str]:
    if scan.header is None:
        return []
    wanted = normalise_column(column)
    indexes = [i for i, name in enumerate(scan.header) if normalise_column(name) == wanted]
    return [row[i].strip() for row in scan.first_rows for i in indexes if i < len(row) and row[i].strip()]


def read_settings(path: Path, engine: DecisionEngine) -> dict[str, bool]:
    """``--settings FILE``: CSV ``setting,value`` with the setting keys of ``ledger import``."""
    toggles = {k for k, s in engine.taxonomy.settings.items() if s.kind == "toggle"}
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise InputError(f"--settings: {path}: {exc.strerror or exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["setting", "value"]:
        raise InputError(f"--settings: {path}: row 1: expected the header setting,value")
    out: dict[str, bool] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in row):
            continue
        if len(row) < 2:
            raise InputError(f"--settings: {path}: row {number}: expected setting,value")
        key, value = row[0].strip(), row[1].strip().lower()
        if key not in toggles:
            raise InputError(f"--settings: {path}: row {number}: field setting: unknown setting {row[0]!r}")
        if value not in ("true", "false", "on", "off", "1", "0", "yes", "no"):
            raise InputError(
                f"--settings: {path}: row {number}: field value: expected true or false, got {row[1]!r}"
            )
        out[key] = value in ("true", "on", "1", "yes")
    return out


def member_state(
    *,
    country: str,
    birth_date: date | None,
    settings: dict[str, bool],
    at: datetime,
) -> MemberState:
    """The archive owner's state at ``at``, replayed from events built in memory (no ledger)."""
    events: list[LedgerEvent] = []

    def event(kind: str, key: str, value: str) -> None:
        seq = len(events) + 1
        events.append(
            LedgerEvent(
                seq, INSPECTED_MEMBER, kind, key, value, 0, 0, "import", "inspect", f"inspect:{seq}", "", ""
            )
        )

    event(EventKind.member_registered, "registered", "true")
    event(EventKind.member_fact, "country", country)
    if birth_date is not None:
        event(EventKind.member_fact, "birth_date", birth_date.isoformat())
    for key, value in sorted(settings.items()):
        seq = len(events) + 1
        events.append(
            LedgerEvent(
                seq, INSPECTED_MEMBER, EventKind.setting_changed, key, "true" if value else "false",
                to_micros(at), 0, "member", "inspect", f"inspect:{seq}", "", "",
            )
        )  # fmt: skip
    return resolve_member(INSPECTED_MEMBER, events, at=at, watermark=None)


def _verdict(decisions: list[Decision]) -> PurposeVerdict:
    allowed = tuple(sorted(d.category for d in decisions if d.allowed))
    codes: list[str] = []
    for d in decisions:
        for r in d.denials if not allowed else d.reasons:
            if str(r.code) not in codes:
                codes.append(str(r.code))
    each = tuple(
        (
            d.category,
            "used"
            if d.allowed
            else "never_used"
            if any(r.code is ReasonCode.category_never_used for r in d.denials)
            else "not_used",
        )
        for d in decisions
    )
    if allowed:
        return PurposeVerdict("used", tuple(codes), allowed, each)
    never = all(treatment == "never_used" for _, treatment in each)
    return PurposeVerdict("never_used" if never else "not_used", tuple(codes), (), each)


def inspect_archive(
    paths: Sequence[Path],
    *,
    engine: DecisionEngine,
    at: datetime,
    country: str | None = None,
    settings: dict[str, bool] | None = None,
    settings_source: str = "regional defaults",
) -> Inspection:
    if country:
        try:
            country = engine.taxonomy.country(country)
        except TaxonomyError as exc:
            raise InputError(f"--country: {exc}") from None
    archive = open_archive(paths)
    catalogue = load_catalogue(engine.taxonomy)
    scans: list[tuple[ArchiveFile, Recognition, CsvScan | None]] = []
    for item in archive.files:
        scans.append(_read(item, catalogue))
    facts = _facts(scans)
    chosen, source = _country(country, facts)
    region = engine.taxonomy.region_of(chosen)
    birth = facts.get("birth_date")
    state = member_state(country=chosen, birth_date=birth, settings=settings or {}, at=at)
    policy = engine.timeline.in_force(at)
    purposes = sorted(policy.purposes) if policy is not None else []
    files: list[FileReport] = []
    for item, recognition, scan in scans:
        files.append(_report(item, recognition, scan, engine, state, purposes))
    return Inspection(
        at=at,
        country=chosen,
        country_source=source,
        region=region,
        birth_date=birth,
        minor=birth is not None and is_minor_on(birth, at),
        policy=None if policy is None else {"id": policy.id, "version": policy.version},
        purposes=purposes,
        files=files,
        name=facts.get("name"),
        email=facts.get("email"),
        settings_source=settings_source,
        settings=dict(settings or {}),
    )


def _read(item: ArchiveFile, catalogue: Catalogue) -> tuple[ArchiveFile, Recognition, CsvScan | None]:
    suffix = PurePosixPath(item.path).suffix.lower()
    if suffix != ".csv":
        return item, catalogue.recognise(item.path, None), None
    scan = scan_csv(item.open, item.path, is_header=_header_test(catalogue, item.path), keep_rows=FACT_ROWS)
    return item, catalogue.recognise(item.path, scan.header), scan


def _facts(scans: list[tuple[ArchiveFile, Recognition, CsvScan | None]]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    countries: set[str] = set()
    for _, recognition, scan in scans:
        if scan is None or recognition.kind is None:
            continue
        if recognition.kind == "profile":
            births = _value(scan, "Birth Date")
            if births:
                facts["birth_date"] = _parse_birth(births[0])
            names = [*_value(scan, "First Name")[:1], *_value(scan, "Last Name")[:1]]
            if names:
                facts["name"] = " ".join(names)
        if recognition.kind == "email_addresses":
            emails = _value(scan, "Email Address")
            if emails:
                facts["email"] = emails[0]
        if recognition.kind == "receipts":
            countries.update(c.upper() for c in _value(scan, "Billing Country") if len(c) == 2)
    if len(countries) == 1:
        facts["country"] = countries.pop()
    return facts


def _country(option: str | None, facts: dict[str, Any]) -> tuple[str, str]:
    if option:
        return option, "--country"
    found = facts.get("country")
    if found:
        return str(found), "archive (the receipts' billing country)"
    raise InputError(
        "--country: the archive does not say the member's country unambiguously; give it, e.g. --country DE"
    )


def _report(
    item: ArchiveFile,
    recognition: Recognition,
    scan: CsvScan | None,
    engine: DecisionEngine,
    state: MemberState,
    purposes: list[str],
) -> FileReport:
    records = 0 if scan is None else scan.records
    if recognition.kind is None:
        report = FileReport(item.path, None, {}, records, [])
        report.purposes = {p: PurposeVerdict("unrecognised", ()) for p in purposes}
        return report
    categories = _found_categories(recognition, scan)
    report = FileReport(
        item.path,
        recognition.kind,
        recognition.label,
        1 if scan is None else records,
        categories,
        unrecognised_columns=list(recognition.unrecognised_columns),
    )
    if scan is not None:
        report.note_codes = _notes(scan)
        report.notes = [NOTES[code].format(**values) for code, values in report.note_codes]
        if scan.decoding_note:
            report.notes[0] = scan.decoding_note
    for purpose in purposes:
        if not recognition.categories:
            # Recognised, but no taxonomy category fits its data: nothing can be decided honestly.
            report.purposes[purpose] = PurposeVerdict("unrecognised", ())
        elif not categories:
            report.purposes[purpose] = PurposeVerdict("not_used", ("no_records",))
        else:
            decisions = [engine.decide_state(state, category, purpose) for category in categories]
            report.purposes[purpose] = _verdict(decisions)
    return report


def _found_categories(recognition: Recognition, scan: CsvScan | None) -> list[str]:
    """The categories the file actually holds: of columns with a value in some record."""
    if scan is None:  # an HTML article: one document of the kind
        return list(recognition.categories)
    if scan.records == 0:
        return []
    if scan.header is None:
        return list(recognition.categories)
    filled = scan.columns_with_values()
    found = {category for column, category in recognition.columns.items() if column in filled}
    if recognition.file_category is not None and scan.records:
        found.add(recognition.file_category)
    return sorted(found)


NOTES = {
    "decoding": "not valid UTF-8; read as {encoding}",
    "preamble": "{lines} line(s) of notes before the header",
    "no_header": "no header: {text}",
    "empty": "empty file",
    "header_only": "header only, no rows",
    "date_only": "{rows} row(s) hold only a date (a hidden or closed profile)",
}
"""Notes on reading a file: a message (a msgid of the portal's catalogue) with placeholders."""


def _notes(scan: CsvScan) -> list[tuple[str, dict[str, str]]]:
    notes: list[tuple[str, dict[str, str]]] = []
    if scan.decoding_note:
        notes.append(("decoding", {"encoding": scan.encoding}))
    if scan.notes:
        notes.append(("preamble", {"lines": str(len(scan.notes))}))
    if scan.header is None:
        if scan.text_without_header:
            notes.append(("no_header", {"text": repr(scan.text_without_header)}))
        else:
            notes.append(("empty", {}))
    elif scan.records == 0:
        notes.append(("header_only", {}))
    if scan.date_only_rows:
        notes.append(("date_only", {"rows": str(scan.date_only_rows)}))
    return notes
