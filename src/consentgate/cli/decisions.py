"""``consentgate explain``: one decision with its reasons and evidence."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from consentgate.cli.context import check_member_id, check_watermark, console, ctx, instant, print_json
from consentgate.decisions import decide
from consentgate.ledger.state import describe_event
from consentgate.timeutil import format_instant


def explain(
    typer_ctx: typer.Context,
    member: Annotated[int, typer.Option(help="Member id.", callback=check_member_id)],
    category: Annotated[str, typer.Option(help="Category key, e.g. profile.skills.")],
    purpose: Annotated[str, typer.Option(help="Purpose key, e.g. genai.training.")],
    at: Annotated[
        str | None,
        typer.Option(help="Instant (ISO 8601 with offset, or a date = 00:00Z; default now)."),
    ] = None,
    watermark: Annotated[
        int | None, typer.Option(help="Only ledger events with seq <= this.", callback=check_watermark)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """May this member's data of this category be used for this purpose at this time? And why."""
    context = ctx(typer_ctx)
    decision = decide(
        context.engine,
        context.ledger(),
        member,
        category,
        purpose,
        instant(at),
        watermark=watermark,
    )
    if as_json:
        print_json(decision.to_dict())
        return
    verdict = "ALLOWED" if decision.allowed else "NOT ALLOWED"
    policy = f"{decision.policy_id}@{decision.policy_version}" if decision.policy_id else "none"
    console.print(
        f"{verdict}: {category} of member {member} for {purpose} at {format_instant(decision.at)}",
        style="bold",
    )
    console.print(
        f"policy {policy}; region {decision.region or '?'}; legal basis {decision.legal_basis or '-'}"
    )
    table = Table("", "reason", "why")
    for reason in decision.reasons:
        table.add_row("✗" if reason.denies else "✓", reason.label(), reason.message)
    console.print(table)
    if decision.evidence:
        console.print("evidence:")
        for event in decision.evidence:
            console.print(f"  {describe_event(event)}")
