"""``consentgate init``, ``ledger import|export|state``, ``members import``, ``member show``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentgate.cli.context import check_member_id, check_watermark, console, ctx, instant, print_json
from consentgate.decisions import member_state
from consentgate.exceptions import NotFoundError
from consentgate.ledger.database import migrate
from consentgate.ledger.exports import export_events, export_state
from consentgate.ledger.imports import ImportResult, import_members, import_settings
from consentgate.ledger.state import MemberState
from consentgate.objections import status_line
from consentgate.taxonomy.models import SettingKind
from consentgate.timeutil import format_instant

ledger_app = typer.Typer(help="The consent ledger: import, export, as-of state.", no_args_is_help=True)
members_app = typer.Typer(help="Members in bulk.", no_args_is_help=True)
member_app = typer.Typer(help="One member.", no_args_is_help=True)


class Format(StrEnum):
    parquet = "parquet"
    csv = "csv"


def init(typer_ctx: typer.Context) -> None:
    """Create the ledger (or migrate it to this version's schema)."""
    context = ctx(typer_ctx)
    ledger = context.ledger(initialise=True)
    revision = migrate(ledger.engine)
    where = ledger.engine.url.render_as_string(hide_password=True)
    console.print(f"ledger ready at {where} (schema {revision}, {ledger.watermark()} events)")


def _run_import(label: str, work: Any) -> ImportResult:
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)
        result: ImportResult = work(lambda done: progress.update(task, completed=done))
    return result


@members_app.command("import")
def members_import(
    typer_ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="CSV or Parquet: member_id,country,birth_date,believed_minor[,registered_at]"),
    ],
    changes_at: Annotated[
        str | None,
        typer.Option(help="When changed facts of known members take effect (default: now)."),
    ] = None,
) -> None:
    """Import members (all or nothing). Known members: only changed facts are recorded."""
    context = ctx(typer_ctx)
    ledger = context.ledger()
    when = instant(changes_at, "--changes-at") if changes_at else None
    result = _run_import(
        "importing members",
        lambda progress: import_members(
            ledger, context.taxonomy, file, changes_effective_at=when, progress=progress
        ),
    )
    console.print(
        f"{file}: {result.rows} rows, {result.appended} events appended, "
        f"{result.already_present} already in the ledger; watermark {ledger.watermark()}",
    )


@ledger_app.command("import")
def ledger_import(
    typer_ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet: member_id,setting,value,effective_at[,source][,idempotency_key]"
        ),
    ],
) -> None:
    """Import a history of setting changes (all or nothing)."""
    context = ctx(typer_ctx)
    ledger = context.ledger()
    result = _run_import(
        "importing events",
        lambda progress: import_settings(ledger, context.taxonomy, file, progress=progress),
    )
    console.print(
        f"{file}: {result.rows} rows, {result.appended} events appended, "
        f"{result.already_present} already in the ledger; watermark {ledger.watermark()}",
    )


@ledger_app.command("export")
def ledger_export(
    typer_ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="File to write.")],
    fmt: Annotated[Format, typer.Option("--format", help="parquet or csv.")] = Format.parquet,
    watermark: Annotated[
        int | None, typer.Option(help="Only events with seq <= this.", callback=check_watermark)
    ] = None,
) -> None:
    """Export the event log, hashes included, so anyone can re-verify the chain."""
    rows = export_events(ctx(typer_ctx).ledger(), out, fmt=fmt.value, watermark=watermark)
    console.print(f"wrote {rows} events to {out}")


@ledger_app.command("state")
def ledger_state(
    typer_ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="File to write.")],
    at: Annotated[str | None, typer.Option(help="As-of instant (ISO 8601; default now).")] = None,
    watermark: Annotated[
        int | None, typer.Option(help="Ledger watermark (default: the head).", callback=check_watermark)
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="parquet or csv.")] = Format.parquet,
) -> None:
    """Export every member's state as of (T, W): the latest event per member and key."""
    ledger = ctx(typer_ctx).ledger()
    when = instant(at)
    mark = ledger.watermark() if watermark is None else watermark
    rows = export_state(ledger, out, at=when, watermark=mark, fmt=fmt.value)
    console.print(f"wrote {rows} state rows as of {format_instant(when)} (watermark {mark}) to {out}")


def member_report(context: Any, state: MemberState) -> dict[str, Any]:
    """Every setting with its value, source and the event behind it; facts; objections."""
    taxonomy = context.taxonomy
    policy = context.timeline.in_force(state.at)
    region = taxonomy.region_of(state.country) if state.country else None
    settings = []
    for setting in taxonomy.settings.values():
        if setting.kind is not SettingKind.toggle:
            continue
        event = state.settings.get(setting.key)
        if event is not None:
            settings.append(
                {
                    "key": setting.key,
                    "label": setting.label.en,
                    "value": event.value == "true",
                    "source": event.source,
                    "seq": event.seq,
                    "since": format_instant(event.effective),
                }
            )
        else:
            default = (
                context.engine.default_for(policy, setting.key, region)
                if policy is not None and region is not None
                else False
            )
            settings.append(
                {
                    "key": setting.key,
                    "label": setting.label.en,
                    "value": default,
                    "source": f"default ({region})",
                    "seq": None,
                    "since": None,
                }
            )
    return {
        "member_id": state.member_id,
        "at": format_instant(state.at),
        "known": state.known,
        "country": state.country,
        "region": region,
        "birth_date": None if state.birth_date is None else state.birth_date.isoformat(),
        "believed_minor": state.believed_minor,
        "policy": None if policy is None else {"id": policy.id, "version": policy.version},
        "settings": settings,
        "objections": [
            {
                "reference": o.reference,
                "purposes": list(o.purposes),
                "received": format_instant(o.received_at),
                "status": str(o.outcome),
                "due": format_instant(o.due),
                "reason": o.decision_reason,
            }
            for o in state.objections.values()
        ],
    }


@member_app.command("show")
def member_show(
    typer_ctx: typer.Context,
    member: Annotated[int, typer.Argument(metavar="M", help="Member id.", callback=check_member_id)],
    at: Annotated[str | None, typer.Option(help="As-of instant (ISO 8601; default now).")] = None,
    watermark: Annotated[
        int | None, typer.Option(help="Ledger watermark (default: the head).", callback=check_watermark)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a member as of T: facts, every setting (value, source, event) and objections."""
    context = ctx(typer_ctx)
    when = instant(at)
    state = member_state(context.ledger(), member, when, watermark)
    if not state.known:
        raise NotFoundError(f"member {member} is not in the ledger as of {format_instant(when)}")
    report = member_report(context, state)
    if as_json:
        print_json(report)
        return
    policy = report["policy"]
    console.print(
        f"member {member} as of {report['at']}: country {report['country']} ({report['region']}), "
        f"birth date {report['birth_date'] or 'unknown'}, believed minor "
        f"{ {True: 'yes', False: 'no', None: 'unknown'}[report['believed_minor']] }; "
        f"policy {policy['id'] + '@' + str(policy['version']) if policy else 'none in force'}",
    )
    table = Table("setting", "value", "source", "since", "event")
    for row in report["settings"]:
        table.add_row(
            row["label"],
            "on" if row["value"] else "off",
            row["source"],
            row["since"] or "",
            "" if row["seq"] is None else f"seq {row['seq']}",
        )
    console.print(table)
    if state.objections:
        objections = Table("objection", "purposes", "received", "status")
        for status in state.objections.values():
            objections.add_row(
                status.reference,
                ", ".join(status.purposes),
                format_instant(status.received_at),
                status_line(status, when),
            )
        console.print(objections)
    else:
        console.print("no objections")
