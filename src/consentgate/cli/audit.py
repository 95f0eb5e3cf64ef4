"""``consentgate audit verify``: recompute the hash chain."""

from __future__ import annotations

import typer

from consentgate.cli.context import console, ctx
from consentgate.exceptions import ChainBroken

app = typer.Typer(help="Tamper evidence for the ledger.", no_args_is_help=True)


@app.command("verify")
def verify(typer_ctx: typer.Context) -> None:
    """Recompute every event's hash; name the first changed, missing or out-of-order event."""
    report = ctx(typer_ctx).ledger().verify()
    if not report.ok:
        assert report.bad_seq is not None and report.problem is not None
        raise ChainBroken(
            report.bad_seq, f"{report.problem} ({report.events_checked} events before it verified)"
        )
    console.print(f"ok: {report.events_checked} events, chain intact up to seq {report.head_seq}")
