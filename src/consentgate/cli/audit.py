"""``consentgate audit``: recompute the hash chain, and anchor it outside the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consentgate.cli.context import console, ctx, err_console
from consentgate.exceptions import ChainBroken, InputError
from consentgate.ledger.anchors import (
    Anchor,
    Unusable,
    append_checkpoint,
    load_private_key,
    load_public_keys,
    post_checkpoint,
    read_checkpoints,
    sign_checkpoint,
    write_key_pair,
)
from consentgate.ledger.guards import missing_guards, restore_guards
from consentgate.snapshots.integrity import manifest_anchors
from consentgate.snapshots.registry import Registry
from consentgate.timeutil import BOUNDS_TEXT, now_utc

app = typer.Typer(help="Tamper evidence for the ledger.", no_args_is_help=True)


@app.command("verify")
def verify(
    typer_ctx: typer.Context,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            help="A JSON-lines file of signed checkpoints (from `audit checkpoint`) to compare with."
        ),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            help="A public key (.pub from `audit keygen`) checkpoints may be signed with (repeatable)."
        ),
    ] = None,
) -> None:
    """Recompute every event's hash; name the first changed, missing or out-of-order event.

    The chain is also compared with every registered snapshot's manifest (watermark and hash there)
    and with each signed checkpoint in --checkpoints: the first that disagrees is named.
    """
    if public_key and checkpoints is None:
        raise InputError("--public-key is for checking --checkpoints: name the checkpoints file too")
    ledger = ctx(typer_ctx).ledger()
    manifests, unusable = manifest_anchors(Registry(ledger))
    signed: list[Anchor] = []
    if checkpoints is not None:
        signed = read_checkpoints(checkpoints, load_public_keys(public_key or []))
    for item in unusable:
        console.print(
            f"note: {item.label} not used as an anchor: {item.reason} (the chain is not failed for it)"
        )
    report = ledger.verify(anchors=[*manifests, *signed])
    if not report.ok:
        raise report.error()
    for seq, column, micros in ledger.out_of_range():
        console.print(
            f"warning: seq {seq}: {column} is {micros} µs since the epoch, outside {BOUNDS_TEXT}"
            " (written before the bounds; read as the nearest representable instant)"
        )
    line = f"ok: {report.events_checked} events, chain intact up to seq {report.head_seq}"
    if manifests or signed:
        line += f"; agrees with {_count(manifests, 'snapshot manifest')} and {_count(signed, 'checkpoint')}"
    else:
        line += "; no snapshot manifest or checkpoint to compare with (see docs/ledger.md)"
    if unusable:
        line += f" ({_count(unusable, 'snapshot manifest')} not usable, see above)"
    console.print(line)


@app.command("keygen")
def keygen(
    out: Annotated[
        Path, typer.Option(help="Where to write the private key; the public key goes to OUT.pub.")
    ],
) -> None:
    """Write a new Ed25519 key pair for signing checkpoints (never overwrites a file)."""
    key_id = write_key_pair(out)
    console.print(f"key id {key_id}: private key {out} (mode 0600, keep it secret), public key {out}.pub")


@app.command("checkpoint")
def checkpoint(
    typer_ctx: typer.Context,
    key: Annotated[Path, typer.Option(help="The private key from `audit keygen`.")],
    out: Annotated[
        str,
        typer.Option(help="A JSON-lines file to append to, or an http(s) URL to POST the checkpoint to."),
    ] = "checkpoints.jsonl",
) -> None:
    """Sign the ledger's head (seq and chain hash) and append or POST it; prints the checkpoint.

    Publish checkpoints where the database's owner cannot change them; `audit verify
    --checkpoints` then detects a rewrite of the chain up to each of them.
    """
    private = load_private_key(key)
    ledger = ctx(typer_ctx).ledger()
    seq, digest = ledger.head()
    if seq and ledger.hash_at(seq) != digest:
        raise ChainBroken(
            seq, "the chain head and the event it names disagree: run `consentgate audit verify`"
        )
    signed = sign_checkpoint(private, seq=seq, digest=digest, at=now_utc())
    if out.lower().startswith(("http://", "https://")):
        status = post_checkpoint(out, signed)
        err_console.print(f"checkpoint of seq {seq} posted to {out} ({status})")
    else:
        append_checkpoint(Path(out), signed)
        err_console.print(f"checkpoint of seq {seq} appended to {out}")
    typer.echo(signed.to_json())


def _count(items: list[Anchor] | list[Unusable], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


@app.command("guard")
def guard(
    typer_ctx: typer.Context,
    restore: Annotated[
        bool,
        typer.Option(
            "--restore", help="Recreate missing triggers, after the chain verified against every manifest."
        ),
    ] = False,
) -> None:
    """The append-only guard: whether the triggers that refuse UPDATE and DELETE are in place.

    Builds refuse to read a ledger whose guard is down. --restore first recomputes the whole chain
    (as `audit verify` does, against every registered snapshot manifest) and restores the triggers
    only if it is intact; check your signed checkpoints with `audit verify --checkpoints` as well.
    """
    ledger = ctx(typer_ctx).ledger()
    missing = missing_guards(ledger)
    if not missing:
        console.print("ok: the append-only guard is in place")
        return
    if not restore:
        console.print(f"DOWN: trigger {', '.join(missing)} missing or disabled (restore with --restore)")
        raise typer.Exit(1)
    manifests, _ = manifest_anchors(Registry(ledger))
    report = ledger.verify(anchors=manifests)
    if not report.ok:
        raise report.error()
    restored = restore_guards(ledger)
    console.print(
        f"restored: trigger {', '.join(restored)}, after the chain verified ({report.events_checked} events)"
    )
