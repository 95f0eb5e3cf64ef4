"""The member's files: ``report.html``, ``checklist.md``, ``objection.txt`` and ``objection.html``.

Jinja2 templates in ``inspect/templates``, in English or German (``--lang``); every text goes through
the portal's message catalogue (``web/locale``), so the German catalogue test covers them. The report
is self-contained when written to ``--out`` (its stylesheet inline, no script, no network, an SVG
chart readable without colour); ``inspect serve`` shows the same body with the stylesheet served
from the same origin, so the portal's strict CSP holds there.

``write_outputs`` writes the four files into a temporary folder next to ``--out`` and renames it into
place only when all four are complete: a failure leaves ``--out`` as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import InputError
from consentgate.inspect.advice import Advice, advise, purpose_order
from consentgate.inspect.inspector import NOTES, Inspection
from consentgate.timeutil import now_utc
from consentgate.web.charts import Chart, Series, hbar_chart
from consentgate.web.i18n import LANGUAGES, format_instant_for, load_translations

OUTPUT_FILES = ("report.html", "checklist.md", "objection.txt", "objection.html")

TREATMENTS = {
    "used": "may be used",
    "never_used": "never used for this purpose",
    "not_used": "not used for you",
    "unrecognised": "could not be decided",
}

REASONS = {
    "no_records": "the file holds no rows",
    "region_excluded": "not used for members in your region",
    "region_unknown": "your country is not known",
    "category_never_used": "never used for this purpose, whatever your settings",
    "category_out_of_scope": "not data this purpose uses",
    "member_minor": "you were under 18 at that date",
    "age_unknown": "your age is not known",
    "setting_off": "you switched the setting off",
    "setting_default_off": "the setting is off by default in your region",
    "consent_not_given": "you have not given your consent",
    "objection_pending": "your objection is being weighed",
    "objection_upheld": "your objection was upheld",
    "policy_not_in_force": "no policy was in force at that date",
    "purpose_not_in_policy": "the policy in force does not provide for this purpose",
    "record_after_as_of": "created after that date",
    "unknown_purpose": "not a known purpose",
    "unknown_category": "not a known kind of data",
    "unknown_member": "not a known member",
}

BASES = {
    "consent": "your consent (GDPR Art. 6(1)(a))",
    "legitimate_interest": "legitimate interest (GDPR Art. 6(1)(f))",
    "contract": "the contract (GDPR Art. 6(1)(b))",
    "notice": "notice with an opt-out (outside the GDPR)",
}

_environment = Environment(
    loader=PackageLoader("consentgate.inspect", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=StrictUndefined,
)


def stylesheet() -> str:
    """The report's stylesheet (inline in the written report, served by ``inspect serve``)."""
    return (resources.files("consentgate.inspect") / "templates" / "inspect.css").read_text("utf-8")


@dataclass
class Renderer:
    """One inspection, worded for one language."""

    result: Inspection = field(repr=False)
    engine: DecisionEngine = field(repr=False)
    language: str = "en"
    grounds: str | None = None
    today: date | None = None

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise InputError(f"--lang: expected one of {', '.join(LANGUAGES)}, got {self.language!r}")
        if self.grounds is not None:
            self.grounds = self.grounds.strip() or None
            if self.grounds is not None and "\x00" in self.grounds:
                raise InputError("--grounds: the text holds a NUL character")
        self.advice: Advice = advise(self.result, self.engine)
        self._ = load_translations().gettext(self.language)
        self.written_on = self.today or now_utc().date()

    # --- words -------------------------------------------------------------------------------
    def text(self, pair: Any) -> str:
        """A taxonomy ``Text`` (or a ``{en, de}`` mapping) in the reader's language."""
        if isinstance(pair, dict):
            return str(pair.get(self.language) or pair.get("en") or "")
        return str(getattr(pair, self.language))

    def purpose_name(self, key: str) -> str:
        purpose = self.engine.taxonomy.purposes.get(key)
        return key if purpose is None else self._(purpose.name)

    def category_name(self, key: str) -> str:
        category = self.engine.taxonomy.categories.get(key)
        return key if category is None else self._(category.name)

    def purpose_names(self, keys: Any) -> list[str]:
        return [self.purpose_name(k) for k in keys]

    def category_names(self, keys: Any) -> list[str]:
        return [self.category_name(k) for k in keys]

    def path(self, menu: Any, escape: Callable[[str], str] = str) -> str:
        """A menu path (Settings → group → section → label) in the reader's language."""
        # A section without a menu name of its own in operator.yaml carries the taxonomy's English
        # section name in both languages; the portal's catalogue translates those names.
        return " → ".join(escape(self._(step.en) if step.en == step.de else self.text(step)) for step in menu)

    def kind_name(self, label: dict[str, str], kind: str | None) -> str:
        return self.text(label) if label else (kind or self._("not recognised"))

    def reasons(self, codes: tuple[str, ...] | list[str]) -> list[str]:
        return [self._(REASONS[c]) for c in codes if c in REASONS]

    def note(self, code: str, values: dict[str, str]) -> str:
        return self._(NOTES[code]).format(**values)

    def basis(self, key: str) -> str:
        return ", ".join(self._(BASES.get(b.strip(), b.strip())) for b in key.split(","))

    def day(self, value: date | datetime) -> str:
        return format_date(value if isinstance(value, date) else value.date(), "long", locale=self.language)

    def instant(self, value: datetime) -> str:
        return format_instant_for(self.language, value)

    def files(self, value: int) -> str:
        return self._("1 file") if value == 1 else self._("{files} files").format(files=self.number(value))

    def rows(self, value: int) -> str:
        return self._("1 row") if value == 1 else self._("{rows} rows").format(rows=self.number(value))

    def number(self, value: int) -> str:
        return f"{value:,}".replace(",", "." if self.language == "de" else ",")

    def region_name(self) -> str:
        region = self.result.region
        if region is None:
            return self._("unknown")
        return self._(self.engine.taxonomy.regions[region].name)

    # --- facts for the templates -------------------------------------------------------------
    def purpose_rows(self) -> list[dict[str, Any]]:
        """Per purpose and treatment: the files and rows (the report's summary table)."""
        rows = []
        for purpose in sorted(self.result.purposes, key=purpose_order):
            cells: dict[str, Any] = {}
            for treatment in TREATMENTS:
                files = [
                    f
                    for f in self.result.files
                    if f.kind is not None and f.purposes[purpose].treatment == treatment
                ]
                codes = sorted({r for f in files for r in f.purposes[purpose].reasons})
                cells[treatment] = {
                    "files": files,
                    "records": sum(f.records for f in files),
                    "reasons": [] if treatment == "used" else self.reasons(codes),
                }
            rows.append({"key": purpose, "name": self.purpose_name(purpose), "cells": cells})
        return rows

    def chart(self, purpose: str = "genai.training") -> Chart | None:
        """Rows per category and treatment for ``purpose``: a file's rows count once per category."""
        if purpose not in self.result.purposes:
            return None
        totals: dict[str, dict[str, int]] = {}
        for f in self.result.files:
            if f.kind is None:
                continue
            for category, treatment in f.purposes[purpose].by_category:
                totals.setdefault(category, {}).setdefault(treatment, 0)
                totals[category][treatment] += f.records
        if not totals:
            return None
        order = sorted(totals, key=lambda c: (-sum(totals[c].values()), c))
        series = tuple(
            Series(
                treatment,
                self._(TREATMENTS[treatment]),
                tuple(float(totals[c][treatment]) if treatment in totals[c] else None for c in order),
            )
            for treatment in ("used", "not_used", "never_used")
            if any(treatment in totals[c] for c in order)
        )
        name = self.purpose_name(purpose)
        chart = hbar_chart(
            chart_id=f"rows-{purpose.replace('.', '-')}",
            title=self._("Rows per kind of data: {purpose}").format(purpose=name),
            description=self._(
                "Bars show how many rows of your archive hold each kind of data, by whether it may be "
                "used for this purpose; a file's rows count once for each kind of data it holds."
            ),
            value_title=self._("rows"),
            labels=[self.category_name(c) for c in order],
            series=series,
        )
        return replace(chart, x_title=self._("kind of data"))

    def context(self, **extra: Any) -> dict[str, Any]:
        r = self.result
        return {
            "r": r,
            "a": self.advice,
            "_": self._,
            "lang": self.language,
            "t": self,
            "name": r.name,
            "email": r.email,
            "grounds": self.grounds,
            "written_on": self.day(self.written_on),
            "policy_ref": None if r.policy is None else f"{r.policy['id']} v{r.policy['version']}",
            "basename": lambda path: PurePosixPath(path).name,
            "TREATMENTS": TREATMENTS,
            **extra,
        }

    def letter(self) -> list[tuple[str, Any]]:
        """The objection letter's body as blocks: ``("p", text)``, ``("list", items)``, ``("todo", text)``."""
        _ = self._
        a = self.advice
        region = self.region_name()
        blocks: list[tuple[str, Any]] = []
        if self.result.email:
            blocks.append(
                (
                    "p",
                    _("I am a member of LinkedIn; my account uses the e-mail address {email}.").format(
                        email=self.result.email
                    ),
                )
            )
        if a.legitimate_interest:
            blocks.append(
                (
                    "p",
                    _(
                        "I object under Article 21(1) GDPR to the processing of my personal data that you"
                        " base on legitimate interest (Art. 6(1)(f) GDPR), in particular for the following"
                        " purposes, which rest on legitimate interest for members in my region ({region}):"
                    ).format(region=region),
                )
            )
            blocks.append(("list", [self.purpose_name(p) for p in a.legitimate_interest]))
        else:
            blocks.append(
                (
                    "p",
                    _(
                        "I object under Article 21(1) GDPR to any processing of my personal data that you"
                        " base on legitimate interest (Art. 6(1)(f) GDPR). The policy in force names no"
                        " such purpose for members in my region ({region})."
                    ).format(region=region),
                )
            )
        if a.kinds:
            blocks.append(
                (
                    "p",
                    _(
                        "This concerns in particular the following kinds of my data, which I found in the"
                        " copy of my data I downloaded from LinkedIn (“Get a copy of your data”):"
                    ),
                )
            )
            blocks.append(
                (
                    "list",
                    [
                        _("{kind}: {rows} ({files})").format(
                            kind=self.kind_name(k.label, k.kind),
                            rows=self.rows(k.records),
                            files=", ".join(PurePosixPath(f).name for f in k.files),
                        )
                        for k in a.kinds
                    ],
                )
            )
        blocks.append(("p", _("Grounds relating to my particular situation:")))
        if self.grounds:
            blocks.append(("p", self.grounds))
        else:
            blocks.append(
                (
                    "todo",
                    _(
                        "[TO COMPLETE: say in your own words why you do not want this processing, for"
                        " example how it affects you in your situation. The bar is low: that you do not"
                        " want it, and why.]"
                    ),
                )
            )
        blocks.append(
            (
                "p",
                _(
                    "Until you have decided on my objection, I ask you to restrict the processing of my"
                    " data for these purposes (Art. 18(1)(d) GDPR)."
                ),
            )
        )
        marketing = _(
            "Insofar as you process my data for direct marketing, I also object to that (Art. 21(2)"
            " GDPR); my data may then no longer be processed for such purposes (Art. 21(3) GDPR)."
        )
        if a.direct_marketing:
            blocks.append(("p", marketing + " " + _("This includes in particular:")))
            blocks.append(("list", [self.purpose_name(p) for p in a.direct_marketing]))
        else:
            blocks.append(("p", marketing))
        blocks.append(
            (
                "p",
                _(
                    "Please confirm receipt and answer me without undue delay, and in any case within one"
                    " month of receipt (Art. 12(3) GDPR). Should you not comply with my objection, please"
                    " give me your reasons; I may lodge a complaint with a supervisory authority."
                ),
            )
        )
        if self.language == "de" and blocks and blocks[0][0] == "p":
            # After "Sehr geehrte Damen und Herren," a German letter goes on in lower case.
            first = str(blocks[0][1])
            blocks[0] = ("p", first[:1].lower() + first[1:])
        return blocks

    def letter_text(self, width: int = 76) -> str:
        """The body of ``objection.txt``: paragraphs wrapped, lists as dashes."""
        out: list[str] = []
        for kind, body in self.letter():
            if kind == "list":
                out.append(
                    "\n".join(
                        textwrap.fill(item, width, initial_indent="- ", subsequent_indent="  ")
                        for item in body
                    )
                )
            else:
                out.append(
                    "\n\n".join(textwrap.fill(part, width) for part in str(body).split("\n") if part.strip())
                )
        return "\n\n".join(out)

    # --- the files ---------------------------------------------------------------------------
    def report_html(self, *, standalone: bool = True, links: dict[str, str] | None = None) -> str:
        chart = self.chart()
        return _environment.get_template(
            "report.html"
        ).render(
            self.context(
                standalone=standalone,
                css=Markup(stylesheet()),  # noqa: S704 - our own packaged stylesheet
                chart=chart,
                links=links if links is not None else {f: f for f in OUTPUT_FILES[1:]},
            )
        )

    def checklist_md(self) -> str:
        return _environment.get_template("checklist.md").render(self.context(md=_md))

    def objection_txt(self) -> str:
        return _environment.get_template("objection.txt").render(self.context())

    def objection_html(self, *, standalone: bool = True) -> str:
        return _environment.get_template("objection.html").render(
            self.context(standalone=standalone, css=Markup(stylesheet()))  # noqa: S704
        )

    def outputs(self) -> dict[str, str]:
        return {
            "report.html": self.report_html(),
            "checklist.md": self.checklist_md(),
            "objection.txt": self.objection_txt(),
            "objection.html": self.objection_html(),
        }


def _md(text: str) -> str:
    """Text safe inside Markdown: no markup characters that would change the meaning."""
    out = []
    for char in text:
        if char in "\\`*_[]<>#|":
            out.append("\\" + char)
        elif char in "\r\n":
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def write_outputs(out: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` into ``out`` all at once: a temporary sibling folder, then a rename.

    ``out`` must not exist or be an empty folder, or hold only the files written here before (a new
    run replaces them); anything else there is refused rather than mixed with this report.
    """
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise InputError(
                f"--out: {out} holds other files ({', '.join(foreign[:3])}); choose an empty or new folder"
            )
    parent = out.parent if str(out.parent) else Path()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise InputError(f"--out: cannot write to {parent}: {exc.strerror or exc}") from None
    try:
        for name, content in files.items():
            path = staging / name
            with path.open("w", encoding="utf-8", newline="\n") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        if out.is_dir():
            old = parent / f".{out.name}.replaced"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            try:
                staging.rename(out)
            except OSError:
                old.rename(out)  # the earlier report stays as it was
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"--out: writing {out} failed: {exc.strerror or exc}; nothing was written") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / name for name in files]
