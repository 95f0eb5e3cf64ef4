"""``consentgate policy list | show ID | validate FILE | diff A B``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from consentgate.cli.context import console, ctx, print_json
from consentgate.policy import Policy, diff_policies, load_policy_file
from consentgate.timeutil import format_instant

app = typer.Typer(help="Versioned policies and their timeline.", no_args_is_help=True)


@app.command("list")
def list_policies(typer_ctx: typer.Context) -> None:
    """List the policy timeline: which version is in force from when."""
    timeline = ctx(typer_ctx).timeline
    table = Table(Column("id", no_wrap=True), "version", "in force from", "until", "title", "purposes")
    for i, policy in enumerate(timeline.policies):
        until = (
            format_instant(timeline.policies[i + 1].effective_from)
            if i + 1 < len(timeline.policies)
            else "(current)"
        )
        table.add_row(
            policy.id,
            str(policy.version),
            format_instant(policy.effective_from),
            until,
            policy.title,
            str(len(policy.purposes)),
        )
    console.print(table)


@app.command("show")
def show(
    typer_ctx: typer.Context,
    policy_id: Annotated[str, typer.Argument(metavar="ID", help="Policy id, or id@version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the policy as JSON.")] = False,
) -> None:
    """Show one policy: per purpose, the regions, legal bases, settings and categories."""
    policy = ctx(typer_ctx).timeline.get(policy_id)
    if as_json:
        print_json(policy.model_dump(mode="json"))
        return
    console.print(f"{policy.ref}  {policy.title}", style="bold")
    console.print(f"in force from {format_instant(policy.effective_from)}")
    console.print(policy.summary)
    for purpose, rule in policy.purposes.items():
        table = Table("region", "legal basis", "controlled by", title=purpose, title_justify="left")
        for region, region_rule in rule.regions.items():
            basis = str(region_rule.legal_basis)
            if region_rule.category_basis:
                basis += " (" + ", ".join(f"{c}: {b}" for c, b in region_rule.category_basis.items()) + ")"
            table.add_row(region, basis, ", ".join(region_rule.controlled_by) or "(no setting)")
        excluded = sorted({"EEA", "CH", "UK", "CA", "HK", "CN", "ROW"} - set(rule.regions))
        console.print(table)
        console.print(f"  categories: {', '.join(rule.categories)}")
        if rule.never_used:
            console.print(f"  never used: {', '.join(rule.never_used)}")
        if excluded:
            console.print(f"  excluded regions: {', '.join(excluded)}")
        console.print(
            f"  minors excluded: {'yes' if rule.exclude_minors else 'no'}; objections: {rule.objection}",
        )


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Policy YAML files.")],
) -> None:
    """Validate policy files against the schema and the taxonomy; exit 2 on the first invalid one."""
    for path in files:
        policy = load_policy_file(path)
        console.print(f"{path}: ok ({policy.ref}, in force from {format_instant(policy.effective_from)})")


@app.command("diff")
def diff(
    typer_ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="A", help="Policy id[@version] or YAML file.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Policy id[@version] or YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
) -> None:
    """What changed from policy A to policy B, rule by rule."""
    context = ctx(typer_ctx)

    def resolve(ref: str) -> Policy:
        path = Path(ref)
        return load_policy_file(path) if path.suffix in (".yaml", ".yml") else context.timeline.get(ref)

    first, second = resolve(a), resolve(b)
    changes = diff_policies(first, second)
    if as_json:
        print_json([{"path": c.path, "before": c.before, "after": c.after} for c in changes])
        return
    console.print(f"{first.ref} → {second.ref}: {len(changes)} change(s)", style="bold")
    for change in changes:
        console.print(f"  {change.describe()}")
