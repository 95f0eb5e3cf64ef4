"""``consentgate demo``: a small population in a fresh ledger and decisions across dates."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from consentgate.cli.context import Context, console, ctx
from consentgate.decisions import Decision
from consentgate.demo import DATES, PERSONAS, create_demo_accounts, decision_grid, load_population
from consentgate.demo_network import MODEL, NEXT_MODEL, NEXT_TRAINING, run_tour
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


def _change_table(
    title: str, key: str, verb: str, dates: list[str], rows: list[tuple[str, list[int]]]
) -> Table:
    table = Table(key, *(f"{verb} {d}" for d in dates), "change", title=title, title_justify="left")
    for name, values in rows:
        table.add_row(name, *(f"{v:,}" for v in values), f"{values[-1] - values[0]:+,}")
    return table


def _snapshots(context: Context, ledger: Ledger, folder: Path, *, members: int, records: int) -> None:
    console.rule("training snapshots")
    with console.status(f"synthesising a network of {members:,} members and {records:,} records ..."):
        tour = run_tour(ledger, context.engine, folder, members=members, records=records)
    net = tour.network
    console.print(
        f"network: {net.members:,} members, {net.records:,} records (+ {5 * len(PERSONAS)} of the named "
        f"members), {net.events_appended:,} consent events, {net.objections} objections"
    )
    for built in tour.snapshots:
        counts = built.manifest["counts"]
        console.print(
            f"snapshot {built.snapshot_id}: {counts['records_included']:,} of {counts['records_in']:,} "
            f"records, {counts['members_included']:,} members"
        )
    dates = [s.manifest["as_of"][:10] for s in tour.snapshots]
    console.print(
        _change_table("gen-AI training data by region", "region", "included", dates, tour.by_region())
    )
    console.print(_change_table("excluded records by reason", "reason", "excluded", dates, tour.by_reason()))
    kinds = tour.debt_kinds()
    objected = sum(n for k, n in kinds.items() if k.startswith("objection"))
    console.print(
        f"model {MODEL} trained on {tour.snapshots[-1].snapshot_id} on its as-of day: objection debt of"
        f" {len(tour.debts):,} members now ({kinds.get('setting_off', 0):,} switched gen-AI off later,"
        f" {objected:,} objected later, {len(tour.debts) - kinds.get('setting_off', 0) - objected:,} other)."
        " Their data is in that model; the opt-out acts going forward."
    )
    named = {p.member_id: p for p in PERSONAS}
    for debt in tour.debts:
        if debt.member_id in named:
            p = named[debt.member_id]
            console.print(
                f"  e.g. {p.member_id} {p.name}: {debt.what} {debt.detail} on {debt.effective_at:%Y-%m-%d}"
            )
    console.rule("going forward: the next training run")
    if tour.refused is not None:
        console.print(
            f"model {NEXT_MODEL} on the same snapshot, trained {NEXT_TRAINING}: REFUSED,"
            f" {tour.refused.count:,} members had opted out or objected by then"
        )
    if tour.refreshed is not None:
        debt = tour.refreshed.build.manifest["debt_removed"]
        console.print(
            f"snapshot refresh {tour.snapshots[-1].snapshot_id} --as-of {NEXT_TRAINING}:"
            f" {tour.refreshed.snapshot_id} without {debt['members']:,} members"
            f" ({debt['records']:,} records), every other row as it was"
        )
    if tour.next_model is not None:
        console.print(
            f"model {NEXT_MODEL} registered on {tour.next_model.model.snapshot_ids[0]}: nobody who opted out"
            " before its training is in it"
        )


def demo(
    typer_ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Ledger to fill (default: a new SQLite file in a temporary folder)."),
    ] = None,
    crowd: Annotated[int, typer.Option(help="How many generated members besides the named ones.")] = 2000,
    network_members: Annotated[int, typer.Option(help="Members of the synthetic network.")] = 20_000,
    records: Annotated[
        int, typer.Option(help="Records of the synthetic network (0: no snapshots).")
    ] = 200_000,
    serve: Annotated[
        bool | None,
        typer.Option(
            "--serve/--no-serve",
            help="Serve the portal on the demo data afterwards (default: ask when run in a terminal).",
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
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

    if records > 0:
        _snapshots(context, ledger, folder, members=network_members, records=records)

    report = ledger.verify()
    console.print(
        f"\naudit: hash chain {'intact' if report.ok else 'BROKEN: ' + str(report.problem)} "
        f"over {report.events_checked} events",
    )
    accounts = create_demo_accounts(ledger)
    logins = Table("username", "password", "who", title="Demo logins for the portal", title_justify="left")
    for username, password, who in accounts:
        logins.add_row(username, password, who)
    console.print(logins)
    console.print("\nTry:")
    cli = _command()
    for line in (
        f"{cli} --db {url} explain --member 1003 --category profile.skills "
        "--purpose genai.training --at 2025-11-12",
        f"{cli} --db {url} member show 1007 --at 2025-12-01",
        f"{cli} --db {url} objection list --at 2025-11-05",
        f"{cli} --db {url} audit verify",
        *(
            [
                f"{cli} --db {url} snapshot list",
                f"{cli} --db {url} lineage member 1003",
                f"{cli} --db {url} lineage debt --model {MODEL}",
                f"{cli} --db {url} model list",
                f"{cli} --db {url} model register genai-2026-02 --snapshot <the 2025-11-04 snapshot>"
                "  (refused: who opted out since; then `snapshot refresh` it)",
                f"{cli} --db {url} snapshot build --data {folder / 'network'} "
                f"--purpose ads.affiliate_sharing --as-of 2025-12-01 --out {folder / 'snapshots'}"
                "  (with consentgate[spark] installed, add --engine spark)",
            ]
            if records > 0
            else []
        ),
    ):
        console.print(f"  {line}", soft_wrap=True)
    console.print(f"  {cli} --db {url} serve --port {port}   (the portal: log in with a demo login above)")
    if serve is None:
        serve = sys.stdin.isatty() and typer.confirm(
            f"\nServe the portal on http://127.0.0.1:{port}/ now?", default=True
        )
    if serve:
        from consentgate.cli.serve import serve as serve_command

        serve_command(typer_ctx, port=port)
