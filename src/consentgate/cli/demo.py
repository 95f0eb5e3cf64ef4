"""``consentgate demo``: a small population in a fresh ledger and decisions across dates."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from consentgate.cli.context import console, ctx
from consentgate.decisions import Decision
from consentgate.demo import DATES, PERSONAS, decision_grid, load_population
from consentgate.ledger.store import Ledger
from consentgate.policy import diff_policies


def _command() -> str:
    """How the user can call this consentgate again: the venv's script, relative when possible."""
    script = Path(sys.prefix) / "bin" / "consentgate"
    if not script.exists():
        return "consentgate"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _cell(decision: Decision) -> str:
    if decision.allowed:
        return "yes"
    return "no: " + ", ".join(str(r.code) for r in decision.denials)


def demo(
    typer_ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Ledger to fill (default: a new SQLite file in a temporary folder)."),
    ] = None,
    crowd: Annotated[int, typer.Option(help="How many generated members besides the named ones.")] = 2000,
) -> None:
    """Show the regime at work: who may be used for what, and why, before and after 2025-11-03."""
    context = ctx(typer_ctx)
    folder = Path(tempfile.mkdtemp(prefix="consentgate-demo-"))
    url = db or f"sqlite:///{folder / 'demo.db'}"
    ledger = Ledger.open(url, initialise=True)
    context.db = url
    # The grids are wide; a log or a pipe gets them whole rather than wrapped at 80 columns.
    console.width = max(console.width, 150)
    console.rule("consentgate demo")
    console.print(f"ledger: {url}")
    counts = load_population(ledger, context.taxonomy, folder, crowd=crowd)
    console.print(
        f"imported {counts['member_events']} member events and {counts['setting_events']} setting changes "
        f"({crowd} generated members + 13 named ones); {counts['objections']} objections filed",
    )
    people = Table("member", "country", "story", title="The named members", title_justify="left")
    for persona in PERSONAS:
        people.add_row(f"{persona.member_id} {persona.name}", persona.country, persona.story)
    console.print(people)
    for policy in context.timeline.policies:
        console.print(f"policy {policy.ref} in force from {policy.effective_from:%Y-%m-%d}: {policy.title}")

    for purpose, category, title in (
        (
            "genai.training",
            "profile.skills",
            "May the member's skills train content-generating AI?",
        ),
        (
            "ads.affiliate_sharing",
            "activity.feed",
            "May the member's feed activity go to the group for its ads?",
        ),
    ):
        table = Table("member", *DATES, title=f"{title}  ({category} for {purpose})", title_justify="left")
        for persona, decisions in decision_grid(context.engine, ledger, category=category, purpose=purpose):
            table.add_row(f"{persona.member_id} {persona.name} ({persona.country})", *map(_cell, decisions))
        console.print(table)

    grid = decision_grid(
        context.engine,
        ledger,
        category="messages.private",
        purpose="genai.training",
        dates=["2026-04-01"],
    )
    never = sum(1 for _, [d] in grid if not d.allowed)
    console.print(
        f"private messages for AI training on 2026-04-01: not allowed for {never} of {len(grid)} "
        "named members (category_never_used)"
    )

    first, last = context.timeline.policies[0], context.timeline.policies[-1]
    changes = diff_policies(first, last)
    console.print(f"\n{first.ref} → {last.ref}: {len(changes)} rule changes, e.g.")
    for change in changes[:5]:
        console.print(f"  {change.describe()}")

    report = ledger.verify()
    console.print(
        f"\naudit: hash chain {'intact' if report.ok else 'BROKEN: ' + str(report.problem)} "
        f"over {report.events_checked} events",
    )
    console.print("\nTry:")
    cli = _command()
    for line in (
        f"{cli} --db {url} explain --member 1003 --category profile.skills "
        "--purpose genai.training --at 2025-11-12",
        f"{cli} --db {url} member show 1007 --at 2025-12-01",
        f"{cli} --db {url} objection list --at 2025-11-05",
        f"{cli} --db {url} audit verify",
    ):
        console.print(f"  {line}", soft_wrap=True)
