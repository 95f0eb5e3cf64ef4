"""``consentgate objection file | decide | extend | list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from consentgate.cli.context import check_member_id, console, ctx, instant, print_json
from consentgate.exceptions import InputError
from consentgate.ledger.events import Source
from consentgate.ledger.state import ObjectionStatus
from consentgate.objections import (
    decide_objection,
    extend_objection,
    file_objection,
    list_objections,
    status_line,
)
from consentgate.timeutil import format_instant

app = typer.Typer(help="Art. 21 objections with Art. 12(3) deadlines.", no_args_is_help=True)


def _public(status: ObjectionStatus) -> dict[str, object]:
    return {
        "reference": status.reference,
        "member_id": status.member_id,
        "purposes": list(status.purposes),
        "grounds": status.grounds,
        "received_at": format_instant(status.received_at),
        "due": format_instant(status.due),
        "extended_by_months": status.extension_months,
        "status": str(status.outcome),
        "automatic": status.automatic,
        "reason": status.decision_reason,
        "decided_at": None if status.decision is None else format_instant(status.decision.effective),
    }


@app.command("file")
def file(
    typer_ctx: typer.Context,
    member: Annotated[int, typer.Option(help="Member id.", callback=check_member_id)],
    purposes: Annotated[
        str, typer.Option(help="Comma-separated purposes, e.g. genai.training,ads.personalization.")
    ],
    at: Annotated[str | None, typer.Option(help="When it was received (ISO 8601; default now).")] = None,
    grounds: Annotated[str, typer.Option(help="The member's grounds (optional).")] = "",
    source: Annotated[str, typer.Option(help="member (self-service) or dpo (entered by staff).")] = "dpo",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Record an objection; prints its reference and due date. Processing is restricted at once."""
    context = ctx(typer_ctx)
    if source not in ("member", "dpo"):
        raise InputError(f"--source: expected member or dpo, got {source!r}")
    keys = [p.strip() for p in purposes.split(",") if p.strip()]
    statuses = file_objection(
        context.ledger(),
        context.taxonomy,
        member_id=member,
        purposes=keys,
        at=None if at is None else instant(at),
        grounds=grounds,
        source=Source(source),
        actor=source,
    )
    if as_json:
        print_json([_public(s) for s in statuses])
        return
    for status in statuses:
        if status.automatic:
            console.print(
                f"{status.reference}: objection to {', '.join(status.purposes)} (direct marketing) "
                f"upheld at once, {format_instant(status.received_at)}",
            )
        else:
            console.print(
                f"{status.reference}: objection to {', '.join(status.purposes)} received "
                f"{format_instant(status.received_at)}; processing restricted meanwhile; "
                f"answer due by {format_instant(status.due)}",
            )


@app.command("decide")
def decide(
    typer_ctx: typer.Context,
    reference: Annotated[
        str, typer.Argument(metavar="REF", help="Objection reference, e.g. OBJ-1A2B3C4D5E.")
    ],
    reason: Annotated[str, typer.Option(help="The reasons for the decision (required).")],
    uphold: Annotated[
        bool | None, typer.Option("--uphold/--reject", help="Uphold or reject the objection.")
    ] = None,
    at: Annotated[str | None, typer.Option(help="When decided (ISO 8601; default now).")] = None,
) -> None:
    """Uphold (purposes stay excluded) or reject with reasons (processing resumes from now)."""
    if uphold is None:
        raise InputError("say --uphold or --reject")
    status = decide_objection(
        ctx(typer_ctx).ledger(),
        reference=reference,
        uphold=uphold,
        reason=reason,
        at=None if at is None else instant(at),
    )
    assert status.decision is not None
    late = " (after the due date)" if status.decision.effective > status.due else ""
    console.print(f"{reference}: {status.outcome} on {format_instant(status.decision.effective)}{late}")


@app.command("extend")
def extend(
    typer_ctx: typer.Context,
    reference: Annotated[str, typer.Argument(metavar="REF", help="Objection reference.")],
    months: Annotated[int, typer.Option(help="1 or 2 further months.")],
    reason: Annotated[str, typer.Option(help="Why the answer takes longer (told to the member).")],
    at: Annotated[
        str | None, typer.Option(help="When the extension is announced (ISO 8601; default now).")
    ] = None,
) -> None:
    """Extend the deadline (only within the first month, by at most two months)."""
    status = extend_objection(
        ctx(typer_ctx).ledger(),
        reference=reference,
        months=months,
        reason=reason,
        at=None if at is None else instant(at),
    )
    console.print(f"{reference}: now due by {format_instant(status.due)}")


@app.command("list")
def list_command(
    typer_ctx: typer.Context,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only objections past their due date.")] = False,
    at: Annotated[str | None, typer.Option(help="As of this instant (ISO 8601; default now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Objections by due date, with their state as of --at."""
    when = instant(at)
    statuses = list_objections(ctx(typer_ctx).ledger(), at=when, overdue_only=overdue)
    if as_json:
        print_json([{**_public(s), "overdue": s.overdue(when)} for s in statuses])
        return
    table = Table(Column("reference", no_wrap=True), "member", "purposes", "received", "status")
    for status in statuses:
        table.add_row(
            status.reference,
            str(status.member_id),
            ", ".join(status.purposes),
            format_instant(status.received_at),
            status_line(status, when),
        )
    console.print(table)
    console.print(f"{len(statuses)} objection(s) as of {format_instant(when)}")
