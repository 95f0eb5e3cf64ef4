"""``consentgate synth``: write a synthetic network and load its consent history into the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from consentgate.cli.context import console, ctx
from consentgate.snapshots.synth import check_arguments, synthesize

PHASES = {"ledger": "loading members", "objections": "filing objections", "records": "writing records"}


def synth(
    typer_ctx: typer.Context,
    members: Annotated[int, typer.Option(help="How many members.")],
    records: Annotated[int, typer.Option(help="How many records.")],
    out: Annotated[Path, typer.Option(help="Folder to write members.parquet and records/ into.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same arguments give the same bytes.")] = 0,
    payload_bytes: Annotated[int, typer.Option(help="Bytes of payload text per record.")] = 32,
) -> None:
    """Write a synthetic network (members.parquet, records/) and load its members, settings and objections."""
    context = ctx(typer_ctx)
    check_arguments(out, members, records, payload_bytes)  # before a database file is created
    ledger = context.ledger(initialise=True)  # like `init`: a fresh database path is created
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done)

        result = synthesize(
            out,
            context.taxonomy,
            members=members,
            records=records,
            seed=seed,
            payload_bytes=payload_bytes,
            ledger=ledger,
            progress=progress,
        )
    console.print(
        f"{out}: {result.members} members, {result.records} records in {result.files} files "
        f"({result.bytes / 1e6:.1f} MB); ledger: {result.events_appended} events appended, "
        f"{result.events_present} already present, {result.objections} objections; "
        f"watermark {ledger.watermark()}",
    )
