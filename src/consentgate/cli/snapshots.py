"""``snapshot build|list|show|verify|prove``, ``gate``, ``model register|list``, ``lineage member|debt|send``.

The build commands print their warnings (lineage events left pending) on stderr.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from consentgate.cli.context import (
    check_member_id,
    check_watermark,
    console,
    ctx,
    err_console,
    instant,
    print_json,
)
from consentgate.exceptions import InputError, PublishError
from consentgate.snapshots import outbox
from consentgate.snapshots.build import BuildRequest, BuildResult, ProgressFn, build_snapshot
from consentgate.snapshots.engines.base import parse_spark_conf
from consentgate.snapshots.lineage import member_lineage, model_debt, objection_debt
from consentgate.snapshots.openlineage import client_for
from consentgate.snapshots.proof import MemberProof, prove_member
from consentgate.snapshots.refresh import RefreshRequest, refresh_snapshot
from consentgate.snapshots.registry import Registry, readable
from consentgate.snapshots.stores import argument
from consentgate.snapshots.training_runs import register_trained_model
from consentgate.snapshots.verify import verify_snapshot
from consentgate.timeutil import format_instant

snapshot_app = typer.Typer(help="Consent-filtered training snapshots.", no_args_is_help=True)
model_app = typer.Typer(help="Models and the snapshots they were trained on.", no_args_is_help=True)
lineage_app = typer.Typer(help="Whose data went where, and who objected afterwards.", no_args_is_help=True)


class EngineName(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


PHASES = {"mirror": "mirroring ledger events", "eligibility": "computing eligibility", "records": "filtering"}


@contextmanager
def _progress() -> Iterator[ProgressFn]:
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}{task.fields[of]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=total, of="", rate="")
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(
                tasks[phase],
                completed=done,
                of=f" / {total:,}" if total else "",
                rate=f"{rate:,.0f} records/s" if phase == "records" else "",
            )

        yield update


DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Network dataset folder (records/*.parquet), or a store URI (s3://bucket/prefix, hdfs://…).",
    ),
]
AsOfOpt = Annotated[str, typer.Option("--as-of", help="The instant the snapshot is as of (ISO, UTC).")]
OutOpt = Annotated[
    str,
    typer.Option(
        "--out",
        help="Folder that receives OUT/<snapshot_id>/, or a store URI (s3://bucket/prefix; see"
        " docs/snapshots.md, Publication on an object store).",
    ),
]
EngineOpt = Annotated[EngineName, typer.Option("--engine", help="duckdb (embedded) or spark.")]
MasterOpt = Annotated[str | None, typer.Option("--spark-master", help="Spark master URL (default local[*]).")]
SparkConfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--spark-conf",
        help="A Spark setting KEY=VALUE (repeatable), e.g. spark.executor.memory=4g; recorded in the"
        " manifest (secret-looking values redacted).",
    ),
]
WatermarkOpt = Annotated[
    int | None,
    typer.Option(
        "--watermark", help="Ledger seq to read up to (default: the head).", callback=check_watermark
    ),
]
EventsOpt = Annotated[
    Path | None, typer.Option("--events-dir", help="Event mirror folder (default: next to the ledger).")
]
LineageOpt = Annotated[
    str | None,
    typer.Option(
        "--lineage-url", envvar="OPENLINEAGE_URL", help="OpenLineage HTTP endpoint (default: file)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for another build of the same result into OUT (default: refuse at once).",
    ),
]
ReverifyOpt = Annotated[
    bool,
    typer.Option(
        "--reverify",
        help="Re-read and re-verify every ledger event up to the watermark, not only new ones.",
    ),
]


def _spark_conf(engine: EngineName, pairs: list[str] | None) -> dict[str, str]:
    if pairs and engine != EngineName.spark:
        raise InputError("--spark-conf: only with --engine spark")
    return parse_spark_conf(pairs or [])


def _build(typer_ctx: typer.Context, kind: str, purpose: str, **options: object) -> None:
    context = ctx(typer_ctx)
    as_json = bool(options.pop("as_json"))
    request = BuildRequest(
        kind=kind,
        purpose=purpose,
        as_of=instant(str(options.pop("as_of")), "--as-of"),
        **options,  # type: ignore[arg-type]
    )
    with _progress() as progress:
        started = time.monotonic()
        result = build_snapshot(request, ledger=context.ledger(), engine=context.engine, progress=progress)
        seconds = time.monotonic() - started
    if as_json:
        print_json(
            {
                **result.manifest,
                "path": result.location,
                "reproduced": result.reproduced,
                "warnings": result.warnings,
            }
        )
    else:
        _summary(result, seconds)
    _warn(result.warnings)


def _warn(warnings: list[str]) -> None:
    """What did not stop the build, on stderr (JSON output stays one document on stdout)."""
    for warning in warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _summary(result: BuildResult, seconds: float) -> None:
    m = result.manifest
    counts = m["counts"]
    verb = "reproduced (byte-identical to the registered snapshot)" if result.reproduced else "published"
    console.print(f"{m['kind']} {result.snapshot_id} {verb}")
    console.print(f"  at {result.location}")
    policy = m["policy"]
    console.print(
        f"  {m['purpose']} as of {m['as_of']}, ledger watermark {m['ledger']['watermark']}, policy "
        + ("none in force" if policy is None else f"{policy['id']}@{policy['version']}")
        + f", engine {m['engine']}"
    )
    rate = counts["records_in"] / seconds if seconds > 0 else 0.0
    console.print(
        f"  {counts['records_included']:,} of {counts['records_in']:,} records included "
        f"({counts['members_included']:,} members) in {seconds:.1f} s ({rate:,.0f} records/s)"
    )
    for reason, n in sorted(counts["excluded_by_reason"].items(), key=lambda kv: -kv[1]):
        console.print(f"  excluded {n:>12,}  {reason}")
    if counts["unknown_categories"]:
        listed = ", ".join(f"{k} ({v:,})" for k, v in counts["unknown_categories"].items())
        console.print(f"  unknown categories: {listed}")


@snapshot_app.command("build")
def build(
    typer_ctx: typer.Context,
    data: DataOpt,
    purpose: Annotated[str, typer.Option("--purpose", help="Purpose key, e.g. genai.training.")],
    as_of: AsOfOpt,
    out: OutOpt,
    engine: EngineOpt = EngineName.duckdb,
    spark_master: MasterOpt = None,
    spark_conf: SparkConfOpt = None,
    watermark: WatermarkOpt = None,
    events_dir: EventsOpt = None,
    lineage_url: LineageOpt = None,
    reverify: ReverifyOpt = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Build a consent-filtered snapshot of DATA for PURPOSE as of T (atomic, reproducible)."""
    _build(
        typer_ctx,
        "snapshot",
        purpose,
        data=argument(data),
        as_of=as_of,
        out=argument(out),
        engine=engine.value,
        spark_master=spark_master,
        spark_conf=_spark_conf(engine, spark_conf),
        watermark=watermark,
        events_dir=events_dir,
        lineage_url=lineage_url,
        reverify=reverify,
        wait=wait,
        as_json=as_json,
    )


def gate(
    typer_ctx: typer.Context,
    data: DataOpt,
    as_of: AsOfOpt,
    out: OutOpt,
    purpose: Annotated[str, typer.Option("--purpose", help="Inbound purpose.")] = "ads.affiliate_data",
    engine: EngineOpt = EngineName.duckdb,
    spark_master: MasterOpt = None,
    spark_conf: SparkConfOpt = None,
    watermark: WatermarkOpt = None,
    events_dir: EventsOpt = None,
    lineage_url: LineageOpt = None,
    reverify: ReverifyOpt = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Gate inbound affiliate data: keep only what members' settings and regions allow."""
    _build(
        typer_ctx,
        "gate",
        purpose,
        data=argument(data),
        as_of=as_of,
        out=argument(out),
        engine=engine.value,
        spark_master=spark_master,
        spark_conf=_spark_conf(engine, spark_conf),
        watermark=watermark,
        events_dir=events_dir,
        lineage_url=lineage_url,
        reverify=reverify,
        wait=wait,
        as_json=as_json,
    )


@snapshot_app.command("refresh")
def refresh(
    typer_ctx: typer.Context,
    snapshot_id: Annotated[str, typer.Argument(help="The snapshot to refresh.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Decide as of this instant (ISO, UTC; default now).")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Folder or store URI for OUT/<id> (default: where the source is)."),
    ] = None,
    engine: EngineOpt = EngineName.duckdb,
    spark_master: MasterOpt = None,
    spark_conf: SparkConfOpt = None,
    watermark: WatermarkOpt = None,
    events_dir: EventsOpt = None,
    lineage_url: LineageOpt = None,
    reverify: ReverifyOpt = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Derive a snapshot from SNAPSHOT_ID without the members in debt at --as-of (no raw data read).

    Every other record is the source's, row for row; the manifest records derived_from and the debt
    removed per reason. Train on the result instead of the stale snapshot.
    """
    context = ctx(typer_ctx)
    request = RefreshRequest(
        snapshot_id=snapshot_id,
        as_of=None if as_of is None else instant(as_of, "--as-of"),
        out=None if out is None else argument(out),
        engine=engine.value,
        spark_master=spark_master,
        spark_conf=_spark_conf(engine, spark_conf),
        watermark=watermark,
        events_dir=events_dir,
        lineage_url=lineage_url,
        reverify=reverify,
        wait=wait,
    )
    with _progress() as progress:
        started = time.monotonic()
        result = refresh_snapshot(request, ledger=context.ledger(), engine=context.engine, progress=progress)
        seconds = time.monotonic() - started
    m = result.build.manifest
    _warn(result.build.warnings)
    if as_json:
        print_json(
            {
                **m,
                "path": result.build.location,
                "reproduced": result.build.reproduced,
                "warnings": result.build.warnings,
            }
        )
        return
    verb = (
        "reproduced (byte-identical to the registered snapshot)" if result.build.reproduced else "published"
    )
    debt = m["debt_removed"]
    console.print(f"{m['kind']} {result.snapshot_id} {verb}")
    console.print(f"  at {result.build.location}")
    console.print(
        f"  derived from {snapshot_id} (records as of {m['derived_from']['records_as_of']}),"
        f" decided as of {m['as_of']}, ledger watermark {m['ledger']['watermark']}, engine {m['engine']}"
    )
    console.print(
        f"  removed {debt['members']:,} members in debt ({debt['records']:,} records);"
        f" kept {m['counts']['records_included']:,} records of {m['counts']['members_included']:,} members"
        f" in {seconds:.1f} s"
    )
    for reason, n in debt["by_reason"].items():
        console.print(f"  removed {n['members']:>10,} members ({n['records']:,} records)  {reason}")


@snapshot_app.command("list")
def list_snapshots(
    typer_ctx: typer.Context,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Only this purpose.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered snapshots, oldest as-of first."""
    entries = Registry(ctx(typer_ctx).ledger()).snapshots(purpose=purpose)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    if not entries:
        console.print("no snapshots registered")
    for e in entries:
        console.print(
            f"{e.snapshot_id}  {e.kind}  as of {format_instant(e.as_of)}  watermark {e.watermark}  "
            f"{e.policy_ref or 'no policy'}  {e.engine}  {e.records:,} records  {e.members:,} members"
        )


@snapshot_app.command("show")
def show(typer_ctx: typer.Context, snapshot_id: Annotated[str, typer.Argument(help="Snapshot id.")]) -> None:
    """The snapshot's manifest (purpose, policy, watermark, inputs, counts, files)."""
    entry = Registry(ctx(typer_ctx).ledger()).require(snapshot_id)
    manifest = json.loads((readable(entry) / "manifest.json").read_text())
    print_json({"registered": entry.to_dict(), "manifest": manifest})


@snapshot_app.command("verify")
def verify(
    typer_ctx: typer.Context, snapshot_id: Annotated[str, typer.Argument(help="Snapshot id.")]
) -> None:
    """Re-hash the files; re-derive row counts, counts, lineage and id from them (exit 1 if any differ)."""
    entry = Registry(ctx(typer_ctx).ledger()).require(snapshot_id)
    result = verify_snapshot(entry)
    if result.ok:
        console.print(
            f"ok: {snapshot_id}: {result.files_checked} files match the manifest"
            f" (checked: {', '.join(result.checks)})"
        )
        return
    for problem in result.problems:
        console.print(f"FAILED: {problem}")
    raise typer.Exit(1)


@snapshot_app.command("prove")
def prove(
    typer_ctx: typer.Context,
    snapshot_id: Annotated[str, typer.Argument(help="Snapshot id.")],
    member: Annotated[int, typer.Option("--member", help="Member id.", callback=check_member_id)],
    as_json: JsonOpt = False,
) -> None:
    """Whether and why a member's data is in a snapshot, with the ledger events as evidence.

    Exit status 2 when the proof does not check out (printed first, its problems listed).
    """
    context = ctx(typer_ctx)
    ledger = context.ledger()
    proof = prove_member(
        registry=Registry(ledger),
        ledger=ledger,
        engine=context.engine,
        snapshot_id=snapshot_id,
        member_id=member,
    )
    if as_json:
        print_json(proof.to_dict())
    else:
        _print_proof(proof)
    if not proof.ok:
        listed = "; ".join(f"{p.code}: {p.message}" for p in proof.problems)
        err_console.print(
            f"error: the proof of member {member} in {snapshot_id} does not check out: {listed}",
            soft_wrap=True,
        )
        raise typer.Exit(2)


def _print_proof(proof: MemberProof) -> None:
    body = proof.to_dict()
    verdict = "INCLUDED" if proof.included else "NOT INCLUDED"
    console.print(f"member {proof.member_id}: {verdict} in {proof.snapshot_id}", style="bold")
    policy = body["policy"]
    console.print(
        f"  {proof.purpose} as of {body['as_of']}, ledger watermark {body['watermark']}"
        f" (hash {body['hash_at_watermark']}), policy "
        + (
            "none in force"
            if policy is None
            else f"{policy['id']}@{policy['version']} (sha256 {policy['hash']})"
        )
    )
    console.print(f"  manifest sha256 {body['manifest_sha256']}; region {body['region'] or '?'}")
    if proof.categories:
        table = Table("category", "records", "decision", "reasons")
        for c in proof.categories:
            verdict = "allowed" if c.decision.allowed else "NOT ALLOWED"
            reasons = ", ".join(r.label() for r in c.decision.reasons)
            table.add_row(c.category, str(c.records), verdict, reasons)
        console.print(table)
        console.print("why, in words:")
        for line in dict.fromkeys(
            f"{r.label()}: {r.message}" for c in proof.categories for r in c.decision.reasons
        ):
            console.print(f"  {line}")
    for group in proof.denied:
        console.print(f"not used ({len(group.categories)}): {', '.join(group.categories)}")
        for r in group.reasons:
            console.print(f"  {r.label()}: {r.message}")
    if proof.evidence:
        console.print("evidence (ledger events, hash recomputed):")
        for e in proof.evidence:
            event = e.event
            check = "digest ok" if e.ok else f"DIGEST MISMATCH (recomputed {e.digest})"
            console.print(
                f"  seq {event.seq} {event.kind} {event.key}={event.value!r} effective"
                f" {format_instant(event.effective)} source {event.source}: sha256 {event.hash}, {check}"
            )
    for problem in proof.problems:
        console.print(f"PROBLEM {problem.code}: {problem.message}")
    if proof.ok:
        console.print("ok: every check passed")


@model_app.command("register")
def model_register(
    typer_ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    snapshot: Annotated[
        list[str], typer.Option("--snapshot", help="Snapshot it was trained on (repeatable).")
    ],
    trained_at: Annotated[
        str | None,
        typer.Option("--trained-at", help="When the training used the snapshots (ISO, UTC; default now)."),
    ] = None,
    accept_debt: Annotated[
        str | None,
        typer.Option(
            "--accept-debt",
            help="Register despite members who opted out before the training, for this recorded reason.",
        ),
    ] = None,
    note: Annotated[str, typer.Option(help="Free text, e.g. the training run.")] = "",
    events_dir: EventsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that model NAME was trained on the given snapshots at --trained-at.

    Refused (exit status 2) when a snapshot holds members who, by then, had switched the purpose
    off, objected, been flagged as minors or moved out of its regions: refresh the snapshot
    (`snapshot refresh`) and train on that, or give --accept-debt REASON.
    """
    context = ctx(typer_ctx)
    ledger = context.ledger()
    result = register_trained_model(
        ledger,
        context.engine,
        name,
        snapshot,
        trained_at=None if trained_at is None else instant(trained_at, "--trained-at"),
        accept_debt=accept_debt,
        actor=f"cli:{getpass.getuser()}",
        note=note,
        events_dir=events_dir,
    )
    model = result.model
    if as_json:
        print_json({**model.to_dict(), "created": result.created})
        return
    verb = "registered" if result.created else "already registered"
    when = "" if model.trained_at is None else f" at {format_instant(model.trained_at)}"
    console.print(f"model {model.name} {verb}: trained on {', '.join(model.snapshot_ids)}{when}")
    if result.created and model.override is not None:
        console.print(
            f"  OVERRIDE recorded by {model.override.by}: {model.override.members:,} members in debt"
            f" were trained on after their opt-out; reason: {model.override.reason}"
        )


@model_app.command("list")
def model_list(typer_ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered models, their snapshots, training time and any override."""
    entries = Registry(ctx(typer_ctx).ledger()).models()
    if as_json:
        print_json([m.to_dict() for m in entries])
        return
    for m in entries:
        when = "" if m.trained_at is None else f" trained {format_instant(m.trained_at)}"
        override = (
            "" if m.override is None else f"  OVERRIDE ({m.override.members:,} members): {m.override.reason}"
        )
        console.print(
            f"{m.name}: {', '.join(m.snapshot_ids)}{when}{'  (' + m.note + ')' if m.note else ''}{override}"
        )
    if not entries:
        console.print("no models registered")


@lineage_app.command("member")
def lineage_member(
    typer_ctx: typer.Context,
    member_id: Annotated[int, typer.Argument(help="Member id.", callback=check_member_id)],
    as_json: JsonOpt = False,
) -> None:
    """The snapshots and models that hold a member's data: as-of, categories, record counts."""
    result = member_lineage(Registry(ctx(typer_ctx).ledger()), member_id)
    if as_json:
        print_json(result.to_dict(training_runs=True))
        return
    if not result.snapshots:
        console.print(f"member {member_id}: no registered snapshot holds their data")
    for s in result.snapshots:
        categories = ", ".join(f"{k} ({v})" for k, v in s.categories.items())
        models = f"; models: {', '.join(s.models)}" if s.models else ""
        console.print(
            f"{s.snapshot.snapshot_id}: {s.snapshot.purpose} as of {format_instant(s.snapshot.as_of)}, "
            f"{s.records} records: {categories}{models}"
        )
        for read in s.reads:
            console.print(
                f"  read by training run {read.run_id} (job {read.job}) at {format_instant(read.read_at)}"
            )
    for entry in result.missing:
        console.print(f"warning: {entry.snapshot_id}: files missing at {entry.location}, not searched")


@lineage_app.command("debt")
def lineage_debt(
    typer_ctx: typer.Context,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Snapshot id.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name.")] = None,
    events_dir: EventsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Members in a snapshot or model who have since opted out or objected for its purpose."""
    if (snapshot is None) == (model is None):
        raise InputError("lineage debt: give exactly one of --snapshot S or --model NAME")
    context = ctx(typer_ctx)
    ledger = context.ledger()
    registry = Registry(ledger)
    debts = (
        objection_debt(ledger, context.engine, [registry.require(snapshot)], events_dir=events_dir)
        if snapshot is not None
        else model_debt(ledger, context.engine, str(model), events_dir=events_dir)
    )
    if as_json:
        print_json([d.to_dict() for d in debts])
        return
    what = f"snapshot {snapshot}" if snapshot else f"model {model}"
    console.print(f"{what}: {len(debts):,} members have since opted out or objected")
    for d in debts[:50]:
        console.print(
            f"  member {d.member_id}: {d.what} {d.detail} effective {format_instant(d.effective_at)}"
        )
    if len(debts) > 50:
        console.print(f"  … and {len(debts) - 50:,} more (use --json for all)")


@lineage_app.command("send")
def lineage_send(
    typer_ctx: typer.Context,
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, max=20, help="Tries per event before giving up for now.")
    ] = 5,
    backoff: Annotated[
        float, typer.Option("--backoff", min=0, help="Seconds before the second try; doubled after each.")
    ] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Deliver the OpenLineage events that builds left pending (exit 2 while some stay pending)."""
    ledger = ctx(typer_ctx).ledger()
    result = outbox.deliver(ledger, client_for, attempts=attempts, backoff=backoff)
    if as_json:
        print_json({"delivered": result.delivered, "pending": result.pending, "errors": result.errors})
    else:
        console.print(f"delivered {result.delivered:,} OpenLineage event(s)")
        for target, n in sorted(result.pending.items()):
            console.print(f"pending   {n:,} for {target}: {result.errors.get(target, 'not tried')}")
    if result.pending_total:
        raise PublishError(
            f"{result.pending_total} OpenLineage event(s) still pending; run `consentgate lineage send`"
            " again when the endpoint answers"
        )
