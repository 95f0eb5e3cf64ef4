"""The demo population: named members whose stories show the regime, plus a generated crowd.

Everything goes through the real paths (CSV imports, objection workflow) so the demo exercises what
an operator would run.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consentgate.decisions import Decision, DecisionEngine, member_state
from consentgate.ledger.events import Source
from consentgate.ledger.imports import import_members, import_settings
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, file_objection
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import parse_instant


@dataclass(frozen=True)
class Persona:
    member_id: int
    name: str
    country: str
    story: str
    birth_date: str = ""
    believed_minor: str = ""


PERSONAS: tuple[Persona, ...] = (
    Persona(1001, "Anna", "DE", "never touched a setting"),
    Persona(1002, "Lukas", "DE", "switched gen-AI off on 2025-10-20, before the change"),
    Persona(1003, "Sophie", "FR", "switched gen-AI off on 2025-11-10, after the change"),
    Persona(1004, "James", "US", "never touched a setting"),
    Persona(1005, "Mia", "US", "turns 18 on 2026-03-15", birth_date="2008-03-15"),
    Persona(1006, "Oliver", "GB", "objected 2025-10-15; still pending"),
    Persona(1007, "Emma", "CH", "objected 2025-10-20; upheld 2025-11-10"),
    Persona(1008, "Noah", "NL", "objected 2025-10-25; rejected 2025-11-20"),
    Persona(1009, "Wei", "CN", "never touched a setting"),
    Persona(1010, "Liam", "CA", "never touched a setting"),
    Persona(1011, "Priya", "IN", "believed to be under 18", believed_minor="true"),
    Persona(1012, "Ka-Ming", "HK", "switched ad sharing off on 2025-12-01"),
    Persona(1013, "Carlos", "BR", "switched gen-AI off 2024-10-05, on again 2025-06-01"),
)

SETTINGS_HISTORY: tuple[tuple[int, str, str, str], ...] = (
    (1002, "genai_improvement", "false", "2025-10-20T09:30:00Z"),
    (1003, "genai_improvement", "false", "2025-11-10T18:00:00Z"),
    (1012, "ads_affiliate_sharing", "false", "2025-12-01T08:00:00Z"),
    (1013, "genai_improvement", "false", "2024-10-05T12:00:00Z"),
    (1013, "genai_improvement", "true", "2025-06-01T12:00:00Z"),
)

DATES: tuple[str, ...] = (
    "2024-09-01",
    "2024-10-01",
    "2025-10-01",
    "2025-11-04",
    "2025-12-01",
    "2026-04-01",
)

CROWD_COUNTRIES: tuple[tuple[str, int], ...] = (
    ("US", 30),
    ("IN", 15),
    ("BR", 8),
    ("DE", 8),
    ("FR", 6),
    ("NL", 3),
    ("PL", 3),
    ("ES", 3),
    ("IT", 3),
    ("GB", 7),
    ("CH", 2),
    ("CA", 4),
    ("HK", 1),
    ("CN", 2),
    ("NG", 2),
    ("JP", 3),
)


def write_inputs(folder: Path, *, crowd: int, seed: int = 7) -> tuple[Path, Path]:
    """Write the demo's members.csv and settings.csv (named personas plus a generated crowd)."""
    rng = random.Random(seed)
    members = folder / "members.csv"
    settings = folder / "settings.csv"
    countries = [c for c, weight in CROWD_COUNTRIES for _ in range(weight)]
    with members.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["member_id", "country", "birth_date", "believed_minor", "registered_at"])
        for p in PERSONAS:
            writer.writerow([p.member_id, p.country, p.birth_date, p.believed_minor, "2015-01-01T00:00:00Z"])
        for i in range(crowd):
            year = rng.randint(1950, 2010)
            writer.writerow(
                [
                    100_000 + i,
                    rng.choice(countries),
                    f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    "",
                    f"{rng.randint(2004, 2023)}-06-01T00:00:00Z",
                ]
            )
    with settings.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["member_id", "setting", "value", "effective_at"])
        for row in SETTINGS_HISTORY:
            writer.writerow(row)
        for i in range(crowd):
            if rng.random() < 0.25:  # a quarter of the crowd opts out at some point
                when = rng.choice(["2024-10-15", "2025-03-01", "2025-10-25", "2025-11-20", "2026-02-01"])
                writer.writerow([100_000 + i, "genai_improvement", "false", f"{when}T10:00:00Z"])
    return members, settings


def load_population(ledger: Ledger, taxonomy: Taxonomy, folder: Path, *, crowd: int) -> dict[str, int]:
    members, settings = write_inputs(folder, crowd=crowd)
    m = import_members(ledger, taxonomy, members)
    s = import_settings(ledger, taxonomy, settings)
    objections = 0
    for member_id, filed, decision in (
        (1006, "2025-10-15T10:00:00Z", None),
        (1007, "2025-10-20T10:00:00Z", ("2025-11-10T10:00:00Z", True)),
        (1008, "2025-10-25T10:00:00Z", ("2025-11-20T10:00:00Z", False)),
    ):
        [status] = file_objection(
            ledger,
            taxonomy,
            member_id=member_id,
            purposes=["genai.training"],
            at=parse_instant(filed),
            grounds="I do not want my profile in AI models.",
            source=Source.dpo,
            actor="demo",
            idempotency_key=f"demo-objection-{member_id}",
        )
        objections += 1
        if decision is not None:
            when, uphold = decision
            decide_objection(
                ledger,
                reference=status.reference,
                uphold=uphold,
                at=parse_instant(when),
                actor="demo-dpo",
                reason="The member's situation outweighs our interest."
                if uphold
                else "Public profile data only; compelling legitimate grounds documented in DPIA-7.",
            )
    return {"member_events": m.appended, "setting_events": s.appended, "objections": objections}


def decision_grid(
    engine: DecisionEngine,
    ledger: Ledger,
    *,
    category: str,
    purpose: str,
    dates: Sequence[str] = DATES,
) -> list[tuple[Persona, list[Decision]]]:
    rows = []
    for persona in PERSONAS:
        decisions = []
        for day in dates:
            at: datetime = parse_instant(day)
            decisions.append(
                engine.decide_state(member_state(ledger, persona.member_id, at), category, purpose)
            )
        rows.append((persona, decisions))
    return rows


DPO_LOGIN = ("dpo", "dpo-demo-password")


def demo_password(persona: Persona) -> str:
    """The demo login's password: published in the demo's output, so never use it for real data."""
    return f"{persona.name.lower()}-demo"


def demo_username(persona: Persona) -> str:
    return persona.name.lower()


def create_demo_accounts(ledger: Ledger) -> list[tuple[str, str, str]]:
    """Portal logins for the named members and one DPO: (username, password, who)."""
    from consentgate.web.accounts import AccountStore, Role

    store = AccountStore(ledger)
    out: list[tuple[str, str, str]] = []
    for persona in PERSONAS:
        store.create_account(
            username=demo_username(persona),
            password=demo_password(persona),
            role=Role.member,
            member_id=persona.member_id,
        )
        out.append(
            (
                demo_username(persona),
                demo_password(persona),
                f"{persona.member_id} ({persona.country}): {persona.story}",
            )
        )
    store.create_account(username=DPO_LOGIN[0], password=DPO_LOGIN[1], role=Role.dpo)
    out.append((DPO_LOGIN[0], DPO_LOGIN[1], "data-protection officer: the console"))
    return out
