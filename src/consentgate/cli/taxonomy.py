"""``consentgate taxonomy show | export --format fideslang``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from consentgate.cli.context import console, ctx, print_json
from consentgate.exceptions import InputError
from consentgate.taxonomy.fides import export_fideslang

app = typer.Typer(help="Categories, purposes, regions and settings.", no_args_is_help=True)


class ExportFormat(StrEnum):
    fideslang = "fideslang"
    json = "json"


@app.command("show")
def show(
    typer_ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="categories, purposes, regions or settings")] = "settings",
    lang: Annotated[str, typer.Option(help="Label language: en or de.")] = "en",
) -> None:
    """List one part of the taxonomy."""
    taxonomy = ctx(typer_ctx).taxonomy
    if lang not in ("en", "de"):
        raise InputError(f"--lang: expected en or de, got {lang!r}")
    if what == "categories":
        table = Table("key", "name", "never used for AI training")
        for c in taxonomy.categories.values():
            table.add_row(c.key, c.name, "yes" if c.sensitivity == "never_train" else "")
    elif what == "purposes":
        table = Table("key", "name", "direct marketing")
        for p in taxonomy.purposes.values():
            table.add_row(p.key, p.name, "yes" if p.direct_marketing else "")
    elif what == "regions":
        table = Table("region", "name", "countries")
        for r in taxonomy.regions.values():
            table.add_row(r.key, r.name, " ".join(r.countries) or "every other assigned code")
    elif what == "settings":
        table = Table("key", "group", "section", "label", "controls")
        for s in taxonomy.settings.values():
            label = s.label.en if lang == "en" else s.label.de
            controls = ", ".join(c.purpose for c in s.controls) or ("(action)" if s.kind == "action" else "-")
            table.add_row(s.key, s.group, s.section, label, controls)
    else:
        raise InputError(f"expected categories, purposes, regions or settings, got {what!r}")
    console.print(table)


@app.command("export")
def export(
    typer_ctx: typer.Context,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="fideslang, or json (consentgate's own).")
    ] = ExportFormat.fideslang,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of standard output.")] = None,
) -> None:
    """Export the taxonomy, e.g. as a fideslang taxonomy for Fides-based data maps."""
    taxonomy = ctx(typer_ctx).taxonomy
    if fmt is ExportFormat.fideslang:
        document = export_fideslang(taxonomy)
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    else:
        document = {
            "categories": [c.model_dump(mode="json") for c in taxonomy.categories.values()],
            "purposes": [p.model_dump(mode="json") for p in taxonomy.purposes.values()],
            "regions": [r.model_dump(mode="json") for r in taxonomy.regions.values()],
            "settings": [s.model_dump(mode="json") for s in taxonomy.settings.values()],
        }
        if out is None:
            print_json(document)
            return
        import json

        text = json.dumps(document, indent=2, ensure_ascii=False)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, "utf-8")
        console.print(f"wrote {out}")
