"""``consentgate inspect ARCHIVE…`` and ``inspect serve``: a member reads their own data download (DESIGN §8).

Exit status: 0 the report is complete and every file was read; 2 the input was refused (nothing is
written); 3 the report is complete, but some files were empty, held only a header or were not
valid UTF-8 (read with the named fallback): each is named on stderr and in the report.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import typer
from rich.table import Table
from typer.core import TyperGroup

from consentgate.cli.context import console, ctx, instant, print_json
from consentgate.exceptions import InputError
from consentgate.inspect.advice import purpose_order
from consentgate.inspect.inspector import Inspection, inspect_archive, read_settings
from consentgate.timeutil import format_instant, now_utc
from consentgate.web.i18n import LANGUAGES

INCOMPLETE_EXIT = 3
WARNING_NOTES = frozenset({"empty", "header_only", "decoding"})
"""Notes that make the exit status 3: the file was not read as a member would expect."""


class _ArchiveByDefault(TyperGroup):
    """``inspect ARCHIVE…`` runs ``inspect report ARCHIVE…``; ``inspect serve`` is the local page."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["report", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ArchiveByDefault,
    help="Read your own data archive: what the operator may use, for what, and what to do about it.",
    no_args_is_help=True,
)


@app.command("report")
def report(
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
    lang: Annotated[str, typer.Option("--lang", help="Language of the files written: en or de.")] = "en",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write report.html, checklist.md, objection.txt and objection.html into this folder.",
        ),
    ] = None,
    grounds: Annotated[
        str | None,
        typer.Option("--grounds", help="Your grounds for the objection letter (else a marked paragraph)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON of DESIGN §8.")] = False,
) -> None:
    """Which files of your own data archive the operator may use, for which purpose, and why.

    Offline: nothing leaves the machine. Every file is recognised by the catalogue or reported as
    unrecognised; every decision comes from the same policy engine as `explain`. With --out, the
    four files are written together or not at all.
    """
    from consentgate.inspect.render import Renderer, write_outputs

    if lang not in LANGUAGES:
        raise InputError(f"--lang: expected one of {', '.join(LANGUAGES)}, got {lang!r}")
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
    written: list[Path] = []
    if out is not None:  # the files are rendered only when asked for
        written = write_outputs(out, Renderer(result, engine, language=lang, grounds=grounds).outputs())
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
        for file in written:
            console.print(f"wrote {file}")
    incomplete = incomplete_files(result)
    for name, notes in incomplete.items():
        typer.echo(f"warning: {name}: {'; '.join(notes)}", err=True)
    if incomplete:
        raise typer.Exit(INCOMPLETE_EXIT)


def incomplete_files(result: Inspection) -> dict[str, list[str]]:
    """Files that were empty, held only a header, or were not valid UTF-8: path → the notes."""
    out: dict[str, list[str]] = {}
    for f in result.files:
        codes = [code for code, _ in f.note_codes if code in WARNING_NOTES]
        if codes:
            out[f.path] = [
                note for (code, _), note in zip(f.note_codes, f.notes, strict=True) if code in codes
            ]
    return out


@app.command("serve")
def serve(
    typer_ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (the page never listens elsewhere).")] = 8765,
) -> None:
    """A local page for your archive: choose the ZIP, country, date and language; see the report.

    Listens on 127.0.0.1 only. The upload is read in a temporary folder that is removed after the
    answer; nothing is kept and nothing leaves the machine.
    """
    import uvicorn

    from consentgate.inspect.serve import create_inspect_app

    context = ctx(typer_ctx)
    app_ = create_inspect_app(context.engine)
    console.print(f"consentgate inspector on http://127.0.0.1:{port}/  (Ctrl-C stops)")
    uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning", server_header=False)


def _print(result: Inspection) -> None:
    policy = result.policy
    console.print(
        f"your archive as of {format_instant(result.at)}: {len(result.files)} files;"
        f" country {result.country} ({result.country_source}), region {result.region or 'unknown'};"
        f" birth date {result.birth_date or 'not in the archive'}{' (a minor)' if result.minor else ''};"
        f" settings: {result.settings_source}; policy "
        + ("none in force" if policy is None else f"{policy['id']}@{policy['version']}")
    )
    order = sorted(result.purposes, key=purpose_order)
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
