"""``consentgate token create | list | revoke``: service tokens for the JSON API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from consentgate.cli.context import console, ctx, print_json
from consentgate.timeutil import format_instant, from_micros
from consentgate.web.accounts import AccountStore, Scope, parse_scopes

app = typer.Typer(help="Service tokens for the JSON API (stored as hashes).", no_args_is_help=True)

SCOPES = ", ".join(s.value for s in Scope)


@app.command("create")
def create(
    typer_ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the token is for, e.g. training-gate.")],
    scope: Annotated[
        list[str],
        typer.Option(help=f"A scope the token gets (repeatable, or comma-separated): {SCOPES}."),
    ],
) -> None:
    """Create a token and print its secret; the secret is shown only this once."""
    store = AccountStore(ctx(typer_ctx).ledger())
    token, secret = store.create_token(name=name, scopes=parse_scopes(scope))
    console.print(f"token {token.token_id} ({token.name}): {', '.join(sorted(token.scopes))}")
    typer.echo(secret)
    console.print("This secret is shown only once: store it now (consentgate keeps only its hash).")


@app.command("list")
def list_command(
    typer_ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every token with its scopes and whether it is revoked (never the secrets)."""
    tokens = AccountStore(ctx(typer_ctx).ledger()).tokens()
    if as_json:
        print_json([t.to_dict() for t in tokens])
        return
    table = Table(Column("id", no_wrap=True), "name", "scopes", "created", "revoked")
    for token in tokens:
        table.add_row(
            token.token_id,
            token.name,
            ", ".join(sorted(token.scopes)),
            format_instant(from_micros(token.created_at)),
            "-" if token.revoked_at is None else format_instant(from_micros(token.revoked_at)),
        )
    console.print(table)
    live = sum(1 for t in tokens if t.revoked_at is None)
    console.print(f"{len(tokens)} token(s), {live} live")


@app.command("revoke")
def revoke(
    typer_ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="The token's id (see `token list`).")],
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    token = AccountStore(ctx(typer_ctx).ledger()).revoke_token(token_id)
    assert token.revoked_at is not None
    console.print(
        f"token {token.token_id} ({token.name}) revoked at {format_instant(from_micros(token.revoked_at))}"
    )
