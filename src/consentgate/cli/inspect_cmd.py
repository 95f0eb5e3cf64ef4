"""``consentgate inspect ARCHIVE…``: a member reads their own data download (DESIGN §8)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import typer
from rich.table import Table

from consentgate.cli.context import console, ctx, instant, print_json
from consentgate.inspect.inspector import Inspection, inspect_archive, read_settings
from consentgate.timeutil import format_instant, now_utc


def inspect(
    typer_ctx: typer.Context,
    archive: Annotated[
        list[Path],
        typer.Argument(help="The data archive: a ZIP, all ZIPs of one export, or the unpacked folder."),
    ],
    country: Annotated[
        str | None, typer.Option("--country", help="Your country (ISO code), unless the archive says it.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="The instant to decide at (ISO, UTC; default now).")
    ] = None,
    settings: Annotated[
        Path | None,
        typer.Option(
            "--settings", help="CSV setting,value of your choices (default: the regional defaults)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON of DESIGN §8.")] = False,
) -> None:
    """Which files of your own data archive the operator may use, for which purpose, and why.

    Offline: nothing leaves the machine. Every file is recognised by the catalogue or reported as
    unrecognised; every decision comes from the same policy engine as `explain`.
    """
    context = ctx(typer_ctx)
    engine = context.engine
    when = instant(at, "--at") if at is not None else None
    result = inspect_archive(
        archive,
        engine=engine,
        at=when or now_utc(),
        country=country,
        settings=None if settings is None else read_settings(settings, engine),
        settings_source="regional defaults" if settings is None else str(settings),
    )
    if as_json:
        print_json(result.to_dict())
        return
    _print(result)


def _print(result: Inspection) -> None:
    policy = result.policy
    console.print(
        f"your archive as of {format_instant(result.at)}: {len(result.files)} files;"
        f" country {result.country} ({result.country_source}), region {result.region or 'unknown'};"
        f" birth date {result.birth_date or 'not in the archive'}{' (a minor)' if result.minor else ''};"
        f" settings: {result.settings_source}; policy "
        + ("none in force" if policy is None else f"{policy['id']}@{policy['version']}")
    )
    order = sorted(result.purposes, key=lambda key: (key != "genai.training", key))
    headings = {
        "used": "may be used",
        "never_used": "never used for this purpose",
        "not_used": "not used for you",
        "unrecognised": "could not be decided",
    }
    for purpose in order:
        table = Table(
            "", "files", "rows", "which, and why", title=purpose, title_justify="left", show_lines=True
        )
        for treatment, heading in headings.items():
            files = [
                f for f in result.files if f.kind is not None and f.purposes[purpose].treatment == treatment
            ]
            if not files:
                continue
            reasons = sorted({r for f in files for r in f.purposes[purpose].reasons})
            names = ", ".join(f"{PurePosixPath(f.path).name} ({f.records:,})" for f in files)
            why = "" if treatment == "used" or not reasons else f"\nreasons: {', '.join(reasons)}"
            table.add_row(heading, str(len(files)), f"{sum(f.records for f in files):,}", names + why)
        console.print(table)
    unknown = result.unrecognised()
    if unknown["files"]:
        console.print(f"not recognised ({len(unknown['files'])} files): {', '.join(unknown['files'])}")
    for path, columns in unknown["columns"].items():
        console.print(f"not recognised in {path}: columns {', '.join(columns)}")
    for f in result.files:
        for note in f.notes:
            console.print(f"note: {f.path}: {note}")
