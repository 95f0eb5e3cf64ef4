"""What every command shares: the ledger URL, the policy timeline, output helpers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from consentgate.decisions import DecisionEngine
from consentgate.ledger.database import DEFAULT_URL
from consentgate.ledger.events import MAX_MEMBER_ID
from consentgate.ledger.store import Ledger
from consentgate.policy import Timeline, load_timeline
from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.timeutil import now_utc, parse_instant

# Data (keys, field paths such as "regions[0]") is printed verbatim: no markup, no highlighting.
console = Console(markup=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, highlight=False)


@dataclass
class Context:
    db: str = DEFAULT_URL
    policy_dirs: list[Path] = field(default_factory=list)
    builtin_policies: bool = True
    _ledger: Ledger | None = None

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return load_taxonomy()

    @cached_property
    def timeline(self) -> Timeline:
        return load_timeline(self.policy_dirs, include_builtin=self.builtin_policies)

    @cached_property
    def engine(self) -> DecisionEngine:
        return DecisionEngine(self.taxonomy, self.timeline)

    def ledger(self, *, initialise: bool = False) -> Ledger:
        if self._ledger is None or initialise:
            self.close()
            self._ledger = Ledger.open(self.db, initialise=initialise)
        return self._ledger

    def close(self) -> None:
        """Give the ledger's connections back (at the end of every command, however it ended)."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def check_member_id(value: int | None) -> int | None:
    """Every member-id option and argument: 1 to 2^63−1, the rule of imports and the API."""
    if value is not None and not 1 <= value <= MAX_MEMBER_ID:
        raise typer.BadParameter(f"expected a member id from 1 to {MAX_MEMBER_ID} (2^63-1), got {value}")
    return value


def check_watermark(value: int | None) -> int | None:
    """Every --watermark: a ledger seq, 0 or more."""
    if value is not None and value < 0:
        raise typer.BadParameter(f"expected a ledger seq (0 or more), got {value}")
    return value


def ctx(typer_ctx: typer.Context) -> Context:
    obj = typer_ctx.find_root().obj
    if not isinstance(obj, Context):  # commands invoked without the root callback (tests)
        obj = Context(db=os.environ.get("CONSENTGATE_DB", DEFAULT_URL))
        typer_ctx.find_root().obj = obj
    return obj


def instant(text: str | None, option: str = "--at") -> datetime:
    """Parse a CLI instant; no value means now (only entry points read the clock)."""
    return now_utc() if text is None else parse_instant(text, field=option)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
