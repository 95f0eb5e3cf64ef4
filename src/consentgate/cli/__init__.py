"""The ``consentgate`` command line: thin commands that call into the domain packages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from consentgate import __version__, crashlog
from consentgate.cli import (
    audit,
    boundary,
    decisions,
    demo,
    inspect_cmd,
    ledger,
    objections,
    policy,
    serve,
    snapshots,
    synth,
    taxonomy,
    tokens,
)
from consentgate.cli.context import Context, err_console
from consentgate.ledger.database import DEFAULT_URL

app = typer.Typer(
    name="consentgate",
    help="Decide, enforce and prove which member data may be used for which purpose, when.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(policy.app, name="policy")
app.add_typer(taxonomy.app, name="taxonomy")
app.add_typer(ledger.ledger_app, name="ledger")
app.add_typer(ledger.members_app, name="members")
app.add_typer(ledger.member_app, name="member")
app.add_typer(objections.app, name="objection")
app.add_typer(audit.app, name="audit")
app.add_typer(tokens.app, name="token")
app.command("init")(ledger.init)
app.command("explain")(decisions.explain)
app.command("demo")(demo.demo)
app.command("synth")(synth.synth)
app.add_typer(snapshots.snapshot_app, name="snapshot")
app.add_typer(snapshots.model_app, name="model")
app.add_typer(snapshots.lineage_app, name="lineage")
app.command("gate")(snapshots.gate)
app.command("serve")(serve.serve)
app.add_typer(inspect_cmd.app, name="inspect")
app.add_typer(serve.account_app, name="account")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"consentgate {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    typer_ctx: typer.Context,
    db: Annotated[
        str,
        typer.Option(
            envvar="CONSENTGATE_DB",
            help="Ledger database: SQLite file path or URL, or a PostgreSQL URL.",
        ),
    ] = DEFAULT_URL,
    policy_dir: Annotated[
        list[Path] | None,
        typer.Option(envvar="CONSENTGATE_POLICY_DIR", help="A folder of operator policies (repeatable)."),
    ] = None,
    builtin_policies: Annotated[
        bool,
        typer.Option(help="Include the built-in linkedin-2024-09 and linkedin-2025-11 policies."),
    ] = True,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar=crashlog.LOG_FILE_ENV,
            help="Where the trace of an unexpected failure goes (default: under ~/.cache/consentgate).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """consentgate: policies, a consent ledger and decisions that say why."""
    crashlog.set_log_file(log_file)
    boundary.set_database(db)
    typer_ctx.obj = Context(db=db, policy_dirs=list(policy_dir or []), builtin_policies=builtin_policies)
    typer_ctx.call_on_close(typer_ctx.obj.close)


def main() -> None:
    """Entry point: every failure is one line on stderr and an exit status (``cli/boundary.py``)."""
    sys.exit(boundary.run(app, print_error=lambda line: err_console.print(line, soft_wrap=True)))
