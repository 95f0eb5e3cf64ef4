"""``consentgate serve`` and ``consentgate account create | list``: run the portal, manage logins."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from consentgate.cli.context import check_member_id, console, ctx, err_console, print_json
from consentgate.exceptions import InputError
from consentgate.web.accounts import AccountStore, Role
from consentgate.web.body import DEFAULT_MAX_BODY

account_app = typer.Typer(
    help="Portal logins for members and DPOs (argon2-hashed passwords).", no_args_is_help=True
)


def _secret(secret_file: Path | None) -> str:
    """The session-signing key: from a file (created with a random key if missing), env, or random."""
    if secret_file is not None:
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(48) + "\n", encoding="utf-8")
            secret_file.chmod(0o600)
        key = secret_file.read_text(encoding="utf-8").strip()
        if len(key) < 32:
            raise InputError(f"{secret_file}: the secret key must be at least 32 characters")
        return key
    env = os.environ.get("CONSENTGATE_SECRET_KEY")
    if env:
        return env
    err_console.print(
        "note: no --secret-file and no CONSENTGATE_SECRET_KEY: sessions end when the server restarts",
    )
    return secrets.token_urlsafe(48)


def serve(
    typer_ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="File with the key that signs session cookies (created if missing)."),
    ] = None,
    secure_cookies: Annotated[
        bool,
        typer.Option(help="Mark session cookies Secure and send HSTS (when served over HTTPS)."),
    ] = False,
    max_body: Annotated[
        int,
        typer.Option(min=1024, help="The largest request body taken, in bytes, on every route (413 above)."),
    ] = DEFAULT_MAX_BODY,
    trusted_header: Annotated[
        str | None,
        typer.Option(
            help="Single sign-on mode: trust this request header (e.g. X-Forwarded-User) to name the "
            "logged-in user, from --trusted-proxy addresses only. Off by default."
        ),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            help="A proxy's network (repeatable): allowed to send --trusted-header (default: loopback)"
            " and trusted for X-Forwarded-For (default: nobody)."
        ),
    ] = None,
    rate_limit_store: Annotated[
        str | None,
        typer.Option(
            envvar="CONSENTGATE_RATE_LIMIT_STORE",
            help="Keep the login rate limit in Redis (redis://host:6379/0) instead of the ledger's"
            " database; shared by every worker and server that names the same store.",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes. More than one uses more cores; their writes still share the "
            "ledger's order, and the login rate limit (kept in the database).",
        ),
    ] = 1,
) -> None:
    """Serve the member portal, the DPO console and the JSON API (/api/v1) with uvicorn."""
    import uvicorn

    from consentgate.web import PortalConfig, create_app
    from consentgate.web.app import SERVE_ENV

    context = ctx(typer_ctx)
    if rate_limit_store is not None:
        _check_store(rate_limit_store)
    ledger = context.ledger()
    config = PortalConfig(
        db=context.db,
        secret_key=_secret(secret_file),
        secure_cookies=secure_cookies,
        max_body_bytes=max_body,
        trusted_header=trusted_header,
        trusted_proxies=tuple(trusted_proxy) if trusted_proxy else ("127.0.0.1/32", "::1/128"),
        rate_limit_store=rate_limit_store,
    )
    console.print(f"consentgate portal on http://{host}:{port}/  (ledger {context.db}; Ctrl-C stops)")
    # X-Forwarded-For counts only from proxies named with --trusted-proxy (default: nobody), so a
    # client cannot pick the address the login rate limit keys on; no Server header names uvicorn.
    proxies = {
        "proxy_headers": bool(trusted_proxy),
        "forwarded_allow_ips": ",".join(trusted_proxy) if trusted_proxy else "",
        "server_header": False,
    }
    if workers == 1:
        app = create_app(config, ledger=ledger, timeline=context.timeline)
        uvicorn.run(app, host=host, port=port, log_level="warning", **proxies)  # type: ignore[arg-type]
        return
    ledger.close()
    settings = dataclasses.asdict(config)
    settings.update(
        policy_dirs=[str(p) for p in context.policy_dirs], builtin_policies=context.builtin_policies
    )
    os.environ[SERVE_ENV] = json.dumps(settings)
    uvicorn.run(
        "consentgate.web.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        **proxies,  # type: ignore[arg-type]
    )


@account_app.command("create")
def account_create(
    typer_ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name.")],
    member: Annotated[
        int | None, typer.Option(help="The member this login belongs to.", callback=check_member_id)
    ] = None,
    dpo: Annotated[bool, typer.Option("--dpo", help="A data-protection officer (console access).")] = False,
    language: Annotated[str | None, typer.Option(help="en or de (default: the browser's).")] = None,
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the password from this environment variable instead of a prompt."),
    ] = None,
) -> None:
    """Create a login. The password is asked for (or read from --password-env), never an argument."""
    if dpo == (member is not None):
        raise InputError("give exactly one of --member M or --dpo")
    password = _password(password_env)
    context = ctx(typer_ctx)
    ledger = context.ledger()
    if member is not None:
        from consentgate.decisions import member_state

        if not member_state(ledger, member, ledger.clock()).known:
            raise InputError(f"--member: member {member} is not in the ledger (import it first)")
    account = AccountStore(ledger).create_account(
        username=username,
        password=password,
        role=Role.dpo if dpo else Role.member,
        member_id=member,
        language=language,
    )
    console.print(
        f"created {account.role} login {account.username!r}" + (f" for member {member}" if member else "")
    )


def _password(password_env: str | None) -> str:
    if password_env is not None:
        password = os.environ.get(password_env, "")
        if not password:
            raise InputError(f"--password-env: the environment variable {password_env} is empty or unset")
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@account_app.command("passwd")
def account_passwd(
    typer_ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name.")],
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the new password from this environment variable instead of a prompt."),
    ] = None,
) -> None:
    """Set a new password; every session of the login ends (copied cookies included)."""
    account = AccountStore(ctx(typer_ctx).ledger()).set_password(username, _password(password_env))
    console.print(f"new password for {account.username!r}; its sessions have ended")


@account_app.command("disable")
def account_disable(
    typer_ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name.")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the login again instead.")] = False,
) -> None:
    """Disable a login: it can no longer log in and every session of it ends (--enable: undo)."""
    store = AccountStore(ctx(typer_ctx).ledger())
    account = store.enable(username) if enable else store.disable(username)
    console.print(
        f"{account.username!r} is enabled again"
        if enable
        else f"{account.username!r} is disabled; its sessions have ended"
    )


@account_app.command("list")
def account_list(
    typer_ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List logins (never their passwords or hashes)."""
    accounts = AccountStore(ctx(typer_ctx).ledger()).accounts()
    if as_json:
        print_json(
            [
                {
                    "username": a.username,
                    "role": str(a.role),
                    "member_id": a.member_id,
                    "language": a.language,
                }
                for a in accounts
            ]
        )
        return
    table = Table("username", "role", "member", "language")
    for a in accounts:
        table.add_row(
            a.username, str(a.role), "" if a.member_id is None else str(a.member_id), a.language or ""
        )
    console.print(table)


def _check_store(url: str) -> None:
    """A store every server can share (Redis), and one that answers now: else no server starts."""
    if not url.startswith(("redis://", "rediss://", "redis+unix://")):
        raise InputError(f"--rate-limit-store: expected a redis:// or rediss:// URL, got {url!r}")
    from limits.storage import storage_from_string

    if not storage_from_string(url).check():
        raise InputError(f"--rate-limit-store: {url} does not answer (is Redis running there?)")
