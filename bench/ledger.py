"""Ledger benchmark: bulk import, decide() latency and the as-of state export, each beside a baseline.

    .venv/bin/python bench/ledger.py --backend sqlite|postgresql [--members 1000000] [--events 3000000]
    .venv/bin/python bench/ledger.py --backend sqlite --quick        # 20k members / 60k events, smoke test

One run measures, on one backend, with deterministic (seeded) synthetic data:

1. ``import_members`` of the members, then ``import_settings`` of the setting events from Parquet (and
   CSV), through the real import path; beside it the database alone: a plain ``executemany`` (and on
   PostgreSQL also ``COPY``) of the very same rows into an identical, freshly migrated ledger that
   already holds the same member events.
2. ``decide()`` latency on random (member, category, purpose, at), and its split into the ledger read
   (``Ledger.member_events``), the replay (``resolve_member``) and the pure ``decide_state``.
3. The as-of state of all members at (T, W) (``state_table`` and ``export_state``) beside DuckDB computing
   the same from a Parquet export of the events; the two results are checked to be equal.

Ratios measured in one run are the comparable numbers: the machine is shared and noisy. Results go to
the terminal and (unless ``--quick`` or ``--no-append``) to bench/RESULTS.md. Generated data and the
databases live in bench/out/ (git-ignored). ``--profile`` writes cProfile reports to bench/out/ instead
of recording results.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from sqlalchemy import event as sa_event

import consentgate.ledger.imports as imports_module
from consentgate.decisions import DecisionEngine, decide
from consentgate.ledger.exports import export_events, export_state, state_table
from consentgate.ledger.imports import import_members, import_settings
from consentgate.ledger.state import resolve_member
from consentgate.ledger.store import COLUMNS, Ledger
from consentgate.policy import load_timeline
from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.taxonomy.models import SettingKind
from consentgate.timeutil import to_micros

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "out"
DEFAULT_RESULTS = ROOT / "bench" / "RESULTS.md"
PG_DSN = os.environ.get("CONSENTGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
RUN_DATE = "2026-11-23"

SEED = 20261123
FIRST_MEMBER_ID = 10_000_001
SETTINGS_FROM = datetime(2024, 1, 1, tzinfo=UTC)
SETTINGS_UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
REGISTERED_FROM = datetime(2004, 1, 1, tzinfo=UTC)
REGISTERED_UNTIL = datetime(2023, 12, 31, tzinfo=UTC)
DECIDE_FROM = datetime(2024, 6, 1, tzinfo=UTC)
DECIDE_UNTIL = datetime(2026, 11, 23, tzinfo=UTC)
STATE_AT = datetime(2026, 1, 1, tzinfo=UTC)
ISO_Z = "%Y-%m-%dT%H:%M:%SZ"

# Member countries: the big markets by weight, every region of the taxonomy present (EEA, CH, UK, CA,
# HK, CN, ROW), and a tail spread evenly over every assigned ISO code.
COUNTRY_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("US", 22.0), ("IN", 9.0), ("BR", 5.0), ("GB", 6.0), ("CA", 3.0), ("CH", 1.0), ("HK", 0.7),
    ("CN", 1.3), ("DE", 5.0), ("FR", 4.0), ("NL", 2.0), ("ES", 3.0), ("IT", 3.0), ("PL", 2.0),
    ("SE", 1.0), ("IE", 1.0), ("BE", 1.0), ("AT", 1.0), ("DK", 0.5), ("FI", 0.5), ("PT", 1.0),
    ("RO", 1.0), ("CZ", 0.5), ("GR", 0.5), ("NO", 0.5), ("AU", 2.0), ("MX", 2.0), ("JP", 1.0),
    ("ZA", 1.0), ("NG", 1.0), ("AE", 1.0), ("SG", 1.0), ("TR", 1.0), ("ID", 2.0), ("PH", 1.0),
    ("EG", 1.0), ("AR", 1.0), ("KR", 0.5),
)  # fmt: skip
COUNTRY_TAIL_SHARE = 0.06
BIRTH_DATE_SHARE = 0.35
# Setting weights (share of all setting events): the GenAI switch and the advertising rows dominate.
SETTING_WEIGHTS = {"genai_improvement": 25.0, "promotions": 5.0, "research_social_economic": 3.0}
ADS_SHARE = 45.0
OTHER_SHARE = 22.0
FALSE_SHARE = {"genai_improvement": 0.7}  # opt-outs dominate; the rest: ads 0.6, others 0.5
POWER_USERS = 0.05  # 5% of members account for ...
POWER_SHARE = 0.20  # ... 20% of setting events

console = Console(stderr=True, highlight=False, width=160)
T = TypeVar("T")


# -- logging and timing ---------------------------------------------------------------------------


_STARTED = time.perf_counter()


def log(message: str) -> None:
    console.print(f"[dim]{time.perf_counter() - _STARTED:8.1f}s[/dim] {message}")


@dataclass
class Timer:
    label: str
    seconds: float = 0.0


@contextlib.contextmanager
def timed(label: str, *, quiet: bool = False) -> Iterator[Timer]:
    timer = Timer(label)
    if not quiet:
        log(f"{label} ...")
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start
    if not quiet:
        log(f"{label}: {timer.seconds:.2f} s")


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    backend: str
    members: int
    events: int
    samples: int
    warmup: int
    seed: int
    out: Path
    csv: bool
    profile: bool
    keep: bool
    append: bool
    results: Path
    typed_timestamps: bool
    quick: bool
    command: str


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--members", type=int, default=None, help="members (default 1,000,000)")
    parser.add_argument("--events", type=int, default=None, help="setting events (default 3,000,000)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 20k members, 60k events, 2k samples"
    )
    parser.add_argument("--samples", type=int, default=None, help="decide() samples (default 20,000)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (default bench/out)")
    parser.add_argument("--no-csv", dest="csv", action="store_false", help="skip the CSV import")
    parser.add_argument(
        "--profile", action="store_true", help="write cProfile reports to --out; nothing is recorded"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases (SQLite files) afterwards")
    parser.add_argument("--no-append", dest="append", action="store_false", help="do not write RESULTS.md")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument(
        "--typed-timestamps",
        action="store_true",
        help="write effective_at/registered_at as Parquet timestamps instead of ISO 8601 text",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    members = args.members if args.members is not None else (20_000 if quick else 1_000_000)
    events = args.events if args.events is not None else (60_000 if quick else 3_000_000)
    samples = args.samples if args.samples is not None else (2_000 if quick else 20_000)
    if members < 1 or events < 1 or samples < 1:
        parser.error("--members, --events and --samples must be positive")
    command = shlex.join([".venv/bin/python", "bench/ledger.py", *argv])
    return Config(
        backend=args.backend,
        members=members,
        events=events,
        samples=samples,
        warmup=max(200, samples // 10),
        seed=args.seed,
        out=args.out.resolve(),
        csv=args.csv,
        profile=args.profile,
        keep=args.keep,
        append=args.append and not quick and not args.profile,
        results=args.results,
        typed_timestamps=args.typed_timestamps,
        quick=quick,
        command=command,
    )


# -- synthetic data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    members: Path
    settings_parquet: Path
    settings_csv: Path
    member_ids: list[int]


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


def _countries(rng: random.Random, taxonomy: Taxonomy, n: int) -> list[str]:
    named = [c for c, _ in COUNTRY_WEIGHTS]
    weights = [w for _, w in COUNTRY_WEIGHTS]
    for code in named:
        assert code in taxonomy.assigned_countries, code
    tail = sorted(taxonomy.assigned_countries)
    picked = rng.choices(named, weights=weights, k=n)
    return [rng.choice(tail) if rng.random() < COUNTRY_TAIL_SHARE else c for c in picked]


def members_table(rng: random.Random, taxonomy: Taxonomy, n: int, *, typed: bool) -> pa.Table:
    ids = list(range(FIRST_MEMBER_ID, FIRST_MEMBER_ID + n))
    countries = _countries(rng, taxonomy, n)
    births: list[date | None] = []
    minors: list[bool | None] = []
    first_birth = date(1950, 1, 1).toordinal()
    last_birth = date(2011, 12, 31).toordinal()  # some members are under 18 in 2024-2026
    for _ in range(n):
        births.append(
            date.fromordinal(rng.randint(first_birth, last_birth))
            if rng.random() < BIRTH_DATE_SHARE
            else None
        )
        roll = rng.random()
        minors.append(True if roll < 0.03 else (False if roll < 0.13 else None))
    reg_lo, reg_hi = _seconds(REGISTERED_FROM), _seconds(REGISTERED_UNTIL)
    registered_s = [rng.randint(reg_lo, reg_hi) for _ in range(n)]
    registered: pa.Array
    if typed:
        registered = pa.array([s * 1_000_000 for s in registered_s], pa.int64()).view(
            pa.timestamp("us", tz="UTC")
        )
    else:
        registered = pa.array([time.strftime(ISO_Z, time.gmtime(s)) for s in registered_s], pa.string())
    return pa.table(
        {
            "member_id": pa.array(ids, pa.int64()),
            "country": pa.array(countries, pa.string()),
            "birth_date": pa.array(births, pa.date32()),
            "believed_minor": pa.array(minors, pa.bool_()),
            "registered_at": registered,
        }
    )


def _setting_weights(taxonomy: Taxonomy) -> tuple[list[str], list[float]]:
    toggles = [k for k, s in taxonomy.settings.items() if s.kind is SettingKind.toggle]
    ads = [k for k in toggles if k.startswith("ads_")]
    named = set(SETTING_WEIGHTS)
    others = [k for k in toggles if k not in named and k not in ads]
    weights: dict[str, float] = dict(SETTING_WEIGHTS)
    weights.update({k: ADS_SHARE / len(ads) for k in ads})
    weights.update({k: OTHER_SHARE / len(others) for k in others})
    keys = sorted(weights)
    return keys, [weights[k] for k in keys]


def settings_table(
    rng: random.Random, taxonomy: Taxonomy, member_ids: list[int], n: int, *, typed: bool
) -> pa.Table:
    """``n`` setting events, ordered by effective time as a history export would be."""
    keys, weights = _setting_weights(taxonomy)
    n_members = len(member_ids)
    n_power = max(1, int(n_members * POWER_USERS))
    lo, hi = _seconds(SETTINGS_FROM), _seconds(SETTINGS_UNTIL) - 1
    span = hi - lo + 1
    assert span < 2**27
    setting_idx = rng.choices(range(len(keys)), weights=weights, k=n)
    seen: set[int] = set()
    rows: list[tuple[int, int, int, bool, str]] = []  # (effective s, member index, setting, value, source)
    for i in range(n):
        s = setting_idx[i]
        while True:
            m = rng.randrange(n_power) if rng.random() < POWER_SHARE else rng.randrange(n_members)
            eff = rng.randrange(span)
            code = ((m * 64 + s) << 27) | eff
            if code not in seen:  # one event per (member, setting, instant): no duplicate keys
                seen.add(code)
                break
        key = keys[s]
        false_share = FALSE_SHARE.get(key, 0.6 if key.startswith("ads_") else 0.5)
        value = rng.random() >= false_share
        roll = rng.random()
        source = "import" if roll < 0.85 else ("member" if roll < 0.95 else "gpc")
        rows.append((lo + eff, m, s, value, source))
    rows.sort()
    seconds = [r[0] for r in rows]
    effective: pa.Array
    if typed:
        effective = pa.array([s * 1_000_000 for s in seconds], pa.int64()).view(pa.timestamp("us", tz="UTC"))
    else:
        effective = pa.array([time.strftime(ISO_Z, time.gmtime(s)) for s in seconds], pa.string())
    return pa.table(
        {
            "member_id": pa.array([member_ids[r[1]] for r in rows], pa.int64()),
            "setting": pa.array([keys[r[2]] for r in rows], pa.string()),
            "value": pa.array([r[3] for r in rows], pa.bool_()),
            "effective_at": effective,
            "source": pa.array([r[4] for r in rows], pa.string()),
        }
    )


def prepare_inputs(cfg: Config, taxonomy: Taxonomy) -> Inputs:
    """Generate the input files once per (seed, size); later runs reuse them."""
    folder = (
        cfg.out / f"data-s{cfg.seed}-m{cfg.members}-e{cfg.events}{'-typed' if cfg.typed_timestamps else ''}"
    )
    inputs = Inputs(
        members=folder / "members.parquet",
        settings_parquet=folder / "settings.parquet",
        settings_csv=folder / "settings.csv",
        member_ids=list(range(FIRST_MEMBER_ID, FIRST_MEMBER_ID + cfg.members)),
    )
    done = folder / "complete"
    if done.is_file():
        log(f"reusing input files in {folder}")
        return inputs
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    with timed(f"generating {cfg.members:,} members and {cfg.events:,} setting events (seed {cfg.seed})"):
        members = members_table(rng, taxonomy, cfg.members, typed=cfg.typed_timestamps)
        pq.write_table(members, inputs.members)
        settings = settings_table(rng, taxonomy, inputs.member_ids, cfg.events, typed=cfg.typed_timestamps)
        pq.write_table(settings, inputs.settings_parquet)
        as_text = settings.set_column(
            settings.schema.get_field_index("value"),
            "value",
            pc.if_else(settings["value"], "true", "false"),
        )
        if cfg.typed_timestamps:
            as_text = as_text.set_column(
                as_text.schema.get_field_index("effective_at"),
                "effective_at",
                pc.strftime(settings["effective_at"], format=ISO_Z),
            )
        pacsv.write_csv(as_text, inputs.settings_csv)
    done.write_text("ok\n")
    return inputs


# -- where the ledgers live -----------------------------------------------------------------------


class Stores:
    """Fresh ledgers for one run: SQLite files in a folder, or PostgreSQL schemas; all removed at the end."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.run_id = uuid.uuid4().hex[:10]
        self.folder = cfg.out / f"sqlite-{self.run_id}"
        self.schemas: list[str] = []

    def _schema(self, name: str) -> str:
        return f"bench_{self.run_id}_{name}"

    def url(self, name: str) -> str:
        if self.cfg.backend == "sqlite":
            return f"sqlite:///{self.folder / (name + '.db')}"
        base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}?options=-csearch_path%3D{self._schema(name)}"

    def pg_connect(self, name: str | None = None) -> psycopg.Connection[Any]:
        if name is None:
            return psycopg.connect(PG_DSN, autocommit=True)
        return psycopg.connect(PG_DSN, options=f"-csearch_path={self._schema(name)}")

    def create(self, name: str) -> Ledger:
        """A new, migrated, empty ledger."""
        if self.cfg.backend == "sqlite":
            self.folder.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                (self.folder / f"{name}.db{suffix}").unlink(missing_ok=True)
        else:
            schema = self._schema(name)
            with self.pg_connect() as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'CREATE SCHEMA "{schema}"')
            self.schemas.append(schema)
        return Ledger.open(self.url(name), initialise=True)

    def clone(self, source: str, target: str) -> Ledger:
        """A new ledger holding a copy of ``source``'s events and chain head."""
        self.create(target).close()
        if self.cfg.backend == "sqlite":
            conn = sqlite3.connect(self.folder / f"{target}.db", isolation_level=None)
            try:
                conn.execute("ATTACH DATABASE ? AS src", (str(self.folder / f"{source}.db"),))
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO main.events SELECT * FROM src.events ORDER BY seq")
                conn.execute(
                    "UPDATE main.ledger_head SET seq = (SELECT seq FROM src.ledger_head WHERE id = 1), "
                    "hash = (SELECT hash FROM src.ledger_head WHERE id = 1) WHERE id = 1"
                )
                conn.execute("COMMIT")
                conn.execute("DETACH DATABASE src")
            finally:
                conn.close()
        else:
            src, dst = self._schema(source), self._schema(target)
            with self.pg_connect() as pg:
                pg.execute(f'INSERT INTO "{dst}".events SELECT * FROM "{src}".events ORDER BY seq')
                pg.execute(
                    f'UPDATE "{dst}".ledger_head SET (seq, hash) = '
                    f'(SELECT seq, hash FROM "{src}".ledger_head WHERE id = 1) WHERE id = 1'
                )
                pg.execute(f'ANALYZE "{dst}".events')
        return Ledger.open(self.url(target))

    def drop(self, name: str) -> None:
        if self.cfg.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (self.folder / f"{name}.db{suffix}").unlink(missing_ok=True)
            return
        schema = self._schema(name)
        with self.pg_connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if schema in self.schemas:
            self.schemas.remove(schema)

    def cleanup(self) -> None:
        if self.cfg.backend == "sqlite":
            if not self.cfg.keep:
                shutil.rmtree(self.folder, ignore_errors=True)
            return
        with self.pg_connect() as conn:
            for schema in list(self.schemas):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.clear()


# -- profiling ------------------------------------------------------------------------------------


def run_profiled(cfg: Config, name: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; with ``--profile`` under cProfile, its report written to the work folder."""
    if not cfg.profile:
        return fn()
    profiler = cProfile.Profile()
    result = profiler.runcall(fn)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs()
    text.write(f"== {name}: by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(30)
    text.write(f"== {name}: by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(30)
    path = cfg.out / f"profile-{cfg.backend}-{name}.txt"
    path.write_text(text.getvalue())
    log(f"cProfile report: {path}")
    return result


class ImportPhases:
    """Where an import's time goes, measured by wrapping a few calls (negligible overhead).

    read: ``read_table``; known: ``registered_members()``; append: ``append_bulk`` as a whole, of
    which insert: the driver's bulk insert (``Ledger._insert``), ddl: index drops and rebuilds run
    through SQLAlchemy (``CREATE``/``DROP`` statements), commit: closing the write transaction. The
    rest of append_bulk is the batch checks, the hash chain and building the rows; the rest of the
    import is reading and validating the columns into a batch.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seconds: dict[str, float] = dict.fromkeys(
            ("read", "known", "append", "insert", "ddl", "commit"), 0.0
        )
        self._ddl_started = 0.0

    def _wrap(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return wrapper

    def _write(self) -> Any:
        transaction = self._original_write()
        phases = self

        class Timed:
            def __enter__(self) -> Any:
                return transaction.__enter__()

            def __exit__(self, *exc: object) -> None:
                start = time.perf_counter()
                try:
                    transaction.__exit__(*exc)
                finally:
                    phases.seconds["commit"] += time.perf_counter() - start

        return Timed()

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self._ddl_started = (
            time.perf_counter() if statement.lstrip().upper().startswith(("CREATE", "DROP")) else 0.0
        )

    def _after(self, *_args: Any) -> None:
        if self._ddl_started:
            self.seconds["ddl"] += time.perf_counter() - self._ddl_started
            self._ddl_started = 0.0

    def __enter__(self) -> ImportPhases:
        module: Any = imports_module
        self._read = module.read_table
        module.read_table = self._wrap("read", self._read)
        ledger: Any = self.ledger  # instance attributes shadow the methods for this run only
        self._original_write = self.ledger._write
        ledger.registered_members = self._wrap("known", self.ledger.registered_members)
        ledger.append_bulk = self._wrap("append", self.ledger.append_bulk)
        ledger._insert = self._wrap("insert", self.ledger._insert)
        ledger._write = self._write
        sa_event.listen(self.ledger.engine, "before_cursor_execute", self._before)
        sa_event.listen(self.ledger.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        module: Any = imports_module
        module.read_table = self._read
        ledger: Any = self.ledger
        for name in ("registered_members", "append_bulk", "_insert", "_write"):
            delattr(ledger, name)
        sa_event.remove(self.ledger.engine, "before_cursor_execute", self._before)
        sa_event.remove(self.ledger.engine, "after_cursor_execute", self._after)

    def describe(self, total: float) -> str:
        s = self.seconds
        validate = total - s["read"] - s["known"] - s["append"]
        chain = s["append"] - s["insert"] - s["ddl"] - s["commit"]
        parts = [
            ("read file", s["read"]),
            ("registered_members()", s["known"]),
            ("validate columns into a batch", validate),
            ("append_bulk: checks + hash chain + rows", chain),
            ("driver insert", s["insert"]),
            ("index drop/rebuild", s["ddl"]),
            ("commit", s["commit"]),
        ]
        return ", ".join(f"{label} {sec:.1f} s ({sec / total:.0%})" for label, sec in parts)


# -- results --------------------------------------------------------------------------------------


@dataclass
class Row:
    measurement: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    goal: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"[cyan]{text}[/cyan]")


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({seconds:.1f} s)"


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}×" if baseline > 0 else "—"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def goal(met: bool, text: str) -> str:
    return f"{'met' if met else 'NOT met'} ({text})"


# -- 1. bulk import -------------------------------------------------------------------------------


def bench_import(cfg: Config, stores: Stores, taxonomy: Taxonomy, inputs: Inputs, results: Results) -> Ledger:
    main = stores.create("main")

    def members() -> int:
        return import_members(main, taxonomy, inputs.members).appended

    with timed(f"import_members ({cfg.members:,} members, Parquet)") as t_members:
        member_events = run_profiled(cfg, "import-members", members)
    results.add(Row("import_members (Parquet)", f"{cfg.members / t_members.seconds:,.0f} members/s"
                    f" = {rate(member_events, t_members.seconds)} events"))  # fmt: skip
    members_head = main.watermark()
    assert members_head == member_events, (members_head, member_events)

    # Identical ledgers holding the same member events, for the CSV import and the baselines.
    with timed("cloning the member events into fresh ledgers for the CSV import and the baselines"):
        others = ["csv"] if cfg.csv else []
        others += ["base", "copy"] if cfg.backend == "postgresql" else ["base", "rebuild"]
        for name in others:
            stores.clone("main", name).close()

    phases = ImportPhases(main)

    def settings() -> int:
        with phases:
            return import_settings(main, taxonomy, inputs.settings_parquet).appended

    with timed(f"import_settings ({cfg.events:,} events, Parquet)") as t_parquet:
        appended = run_profiled(cfg, "import-settings", settings)
    assert appended == cfg.events, (appended, cfg.events)
    assert main.watermark() == members_head + cfg.events
    results.note(f"import_settings (Parquet) split: {phases.describe(t_parquet.seconds)}")

    if cfg.csv:
        csv_ledger = Ledger.open(stores.url("csv"))
        with timed(f"import_settings ({cfg.events:,} events, CSV)") as t_csv:
            appended_csv = import_settings(csv_ledger, taxonomy, inputs.settings_csv).appended
        assert appended_csv == cfg.events
        csv_ledger.close()
        stores.drop("csv")

    # The baseline: the same rows, precomputed, straight into the database.
    with timed("reading back the imported rows for the baseline"):
        rows = _rows_after(main, members_head)
    placeholders = ", ".join([main._param] * len(COLUMNS))
    insert_sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    baseline_seconds: dict[str, float] = {}
    if cfg.backend == "sqlite":
        base = Ledger.open(stores.url("base"))
        raw = base.engine.raw_connection()
        try:
            conn: Any = raw.driver_connection  # sqlite3.Connection with the ledger's pragmas (WAL, FULL)
            with timed("baseline: sqlite3 executemany of the same rows, one transaction") as t_base:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert_sql, rows)
                conn.execute("COMMIT")
            baseline_seconds["executemany"] = t_base.seconds
        finally:
            raw.close()
            base.close()
        # The database alone with the strategy a large SQLite append uses: secondary indexes dropped
        # and rebuilt inside the transaction, 1 GiB page cache.
        base = Ledger.open(stores.url("rebuild"))
        raw = base.engine.raw_connection()
        try:
            conn = raw.driver_connection
            label = "executemany, indexes dropped + rebuilt, 1 GiB cache"
            with timed(f"baseline: sqlite3 {label}") as t_rebuild:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("PRAGMA cache_size=-1048576")
                indexes = conn.execute(
                    "SELECT name, sql FROM sqlite_master"
                    " WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
                ).fetchall()
                for name, _ in indexes:
                    conn.execute(f'DROP INDEX "{name}"')
                conn.executemany(insert_sql, rows)
                for _, ddl in indexes:
                    conn.execute(ddl)
                conn.execute("PRAGMA cache_size=-2000")
                conn.execute("COMMIT")
            baseline_seconds[label] = t_rebuild.seconds
        finally:
            raw.close()
            base.close()
    else:
        with (
            stores.pg_connect("base") as pg,
            timed("baseline: psycopg executemany, one transaction") as t_base,
        ):
            with pg.cursor() as cursor:
                cursor.executemany(insert_sql, rows)
            pg.commit()
        baseline_seconds["executemany"] = t_base.seconds
        copy_sql = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
        with stores.pg_connect("copy") as pg, timed("baseline: psycopg COPY, one transaction") as t_copy:
            with pg.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            pg.commit()
        baseline_seconds["COPY"] = t_copy.seconds
    del rows
    gc.collect()
    for name in ("base", "copy", "rebuild"):
        if name in others:
            stores.drop(name)

    target = "≥ 200k events/s"
    met = cfg.events / t_parquet.seconds >= 200_000
    driver = "sqlite3" if cfg.backend == "sqlite" else "psycopg"
    for label, seconds in baseline_seconds.items():
        results.add(
            Row(
                f"import_settings, Parquet vs {driver} {label}",
                rate(cfg.events, t_parquet.seconds) + " events",
                rate(cfg.events, seconds),
                ratio(t_parquet.seconds, seconds),
                goal(met, target) if cfg.backend == "sqlite" else "",
            )
        )
    if cfg.csv:
        first, seconds = next(iter(baseline_seconds.items()))
        results.add(
            Row(
                f"import_settings, CSV vs {driver} {first}",
                rate(cfg.events, t_csv.seconds) + " events",
                rate(cfg.events, seconds),
                ratio(t_csv.seconds, seconds),
                goal(cfg.events / t_csv.seconds >= 200_000, target) if cfg.backend == "sqlite" else "",
            )
        )
    return main


def _rows_after(ledger: Ledger, seq: int) -> list[tuple[Any, ...]]:
    with ledger.engine.connect() as conn:
        return ledger._raw_query(
            conn, f"SELECT {', '.join(COLUMNS)} FROM events WHERE seq > {ledger._param} ORDER BY seq", [seq]
        )


# -- 2. decide() latency --------------------------------------------------------------------------

Sample = tuple[int, str, str, datetime]


def decision_samples(rng: random.Random, taxonomy: Taxonomy, member_ids: list[int], n: int) -> list[Sample]:
    """70% (purpose, category) pairs a setting governs, 30% any purpose with any category."""
    categories = sorted(taxonomy.categories)
    purposes = sorted(taxonomy.purposes)
    governed: list[tuple[str, str | None]] = []
    for setting in taxonomy.settings.values():
        for control in setting.controls:
            for category in control.categories or (None,):
                governed.append((control.purpose, category))
    lo, hi = _seconds(DECIDE_FROM), _seconds(DECIDE_UNTIL)
    out: list[Sample] = []
    for _ in range(n):
        member = rng.choice(member_ids)
        if rng.random() < 0.7:
            purpose, maybe = rng.choice(governed)
            category = maybe if maybe is not None else rng.choice(categories)
        else:
            purpose, category = rng.choice(purposes), rng.choice(categories)
        at = datetime.fromtimestamp(rng.randint(lo, hi), UTC)
        out.append((member, category, purpose, at))
    return out


def bench_decide(cfg: Config, ledger: Ledger, taxonomy: Taxonomy, inputs: Inputs, results: Results) -> None:
    engine = DecisionEngine(taxonomy, load_timeline())
    rng = random.Random(cfg.seed + 1)
    warmup = decision_samples(rng, taxonomy, inputs.member_ids, cfg.warmup)
    samples = decision_samples(rng, taxonomy, inputs.member_ids, cfg.samples)
    log(f"decide(): {cfg.warmup:,} warm-up calls, then {cfg.samples:,} timed calls")
    for member, category, purpose, at in warmup:
        decide(engine, ledger, member, category, purpose, at)

    clock = time.perf_counter_ns

    def timed_pass() -> tuple[list[float], int]:
        out: list[float] = []
        allowed = 0
        for member, category, purpose, at in samples:
            start = clock()
            decision = decide(engine, ledger, member, category, purpose, at)
            out.append((clock() - start) / 1000)
            allowed += decision.allowed
        return out, allowed

    # First touch: these members' pages have not been read since the import (the OS page cache on
    # this VM does not keep a multi-GB database around). Then the same calls twice more, pages
    # cached: the steady state of a service whose working set is in memory; the goal is judged on
    # the last pass.
    cold, _ = timed_pass()
    timed_pass()
    full, allowed = timed_pass()

    read: list[float] = []
    replay: list[float] = []
    pure: list[float] = []
    n_events = 0
    for member, category, purpose, at in samples:
        t0 = clock()
        events = ledger.member_events(member, at=to_micros(at))
        t1 = clock()
        state = resolve_member(member, events, at=at, watermark=None)
        t2 = clock()
        engine.decide_state(state, category, purpose)
        t3 = clock()
        read.append((t1 - t0) / 1000)
        replay.append((t2 - t1) / 1000)
        pure.append((t3 - t2) / 1000)
        n_events += len(events)

    if cfg.profile:
        subset = samples[: min(len(samples), 5_000)]

        def loop() -> None:
            for member, category, purpose, at in subset:
                decide(engine, ledger, member, category, purpose, at)

        run_profiled(cfg, "decide", loop)

    for values in (cold, full, read, replay, pure):
        values.sort()

    def pcts(values: list[float]) -> str:
        return " / ".join(f"{percentile(values, q):,.0f}" for q in (0.5, 0.9, 0.99))

    p50 = percentile(full, 0.5)
    results.add(
        Row(
            "decide() p50 / p90 / p99 µs (3rd pass, cached)",
            pcts(full),
            goal=goal(p50 <= 100, "p50 ≤ 100 µs") if cfg.backend == "sqlite" else "",
        )
    )
    results.add(Row("  decide() 1st pass, first touch after import µs", pcts(cold)))
    results.add(Row("  ledger read (member_events) µs (4th pass)", pcts(read)))
    results.add(Row("  replay (resolve_member) µs", pcts(replay)))
    results.add(Row("  decide_state (pure) µs", pcts(pure)))
    share = sum(read) / (sum(read) + sum(replay) + sum(pure))
    results.note(
        f"decide(): {allowed / len(samples):.0%} allowed; {n_events / len(samples):.1f} events read per call;"
        f" the ledger read is {share:.0%} of the split's total time"
    )


# -- 3. as-of state export ------------------------------------------------------------------------

DUCKDB_STATE = """
SELECT member_id, kind, key, value, seq, effective_at, source
FROM read_parquet($path)
WHERE effective_at <= $at AND seq <= $watermark
QUALIFY row_number() OVER (PARTITION BY member_id, kind, key ORDER BY effective_at DESC, seq DESC) = 1
ORDER BY member_id, kind, key
"""


def _normalised(table: pa.Table) -> pa.Table:
    """Comparable form: plain string columns, instants as int64 microseconds, sorted by the key."""
    columns = {
        "member_id": table["member_id"].cast(pa.int64()),
        "kind": table["kind"].cast(pa.string()),
        "key": table["key"].cast(pa.string()),
        "value": table["value"].cast(pa.string()),
        "seq": table["seq"].cast(pa.int64()),
        "effective_at": table["effective_at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()),
        "source": table["source"].cast(pa.string()),
    }
    out = pa.table(columns)
    return out.sort_by([("member_id", "ascending"), ("kind", "ascending"), ("key", "ascending")])


def bench_export(cfg: Config, ledger: Ledger, results: Results) -> None:
    head = ledger.watermark()
    watermark = head - max(1, cfg.events // 20)  # leave the newest 5% of events out: W matters
    at = STATE_AT
    log(f"state as of T={at.isoformat()}, W={watermark:,} (head {head:,})")

    with timed("state_table(ledger, at=T, watermark=W)") as t_state:
        ours = run_profiled(cfg, "state-table", lambda: state_table(ledger, at=at, watermark=watermark))
    state_path = cfg.out / f"state-{cfg.backend}.parquet"
    with timed("export_state(... Parquet)") as t_export_state:
        export_state(ledger, state_path, at=at, watermark=watermark)
    events_path = cfg.out / f"events-{cfg.backend}.parquet"
    with timed("export_events(ledger, path, fmt='parquet')") as t_events:
        exported = run_profiled(
            cfg, "export-events", lambda: export_events(ledger, events_path, fmt="parquet")
        )
    assert exported == head, (exported, head)

    con = duckdb.connect()
    params = {"path": str(events_path), "at": at, "watermark": watermark}
    with timed("DuckDB: the same state from the events Parquet, to Arrow") as t_duck:
        theirs = con.sql(DUCKDB_STATE, params=params).to_arrow_table()
    duck_state_path = cfg.out / f"state-{cfg.backend}-duckdb.parquet"
    copy_sql = f"COPY ({DUCKDB_STATE}) TO '{duck_state_path}' (FORMAT parquet)"
    with timed("DuckDB: the same state, written to Parquet") as t_duck_file:
        con.execute(copy_sql, params)
    con.close()

    with timed("comparing the two results"):
        a, b = _normalised(ours), _normalised(theirs)
        equal = a.equals(b)
        written = pq.read_table(state_path)
        equal_written = _normalised(written).equals(a)
    if not equal:
        results.note(f"MISMATCH: consentgate {a.num_rows:,} rows, DuckDB {b.num_rows:,} rows")
        for i in range(min(a.num_rows, b.num_rows)):
            if a.slice(i, 1).to_pylist() != b.slice(i, 1).to_pylist():
                results.note(
                    f"first difference at row {i}: {a.slice(i, 1).to_pylist()} vs {b.slice(i, 1).to_pylist()}"
                )
                break
    verdict = "equal" if equal and equal_written else "DIFFERENT"
    results.note(f"state at (T, W): {a.num_rows:,} rows; consentgate and DuckDB results are {verdict}")

    results.add(
        Row(
            f"state_table at (T, W), {a.num_rows:,} rows, vs DuckDB → Arrow",
            f"{t_state.seconds:.1f} s",
            f"{t_duck.seconds:.1f} s",
            ratio(t_state.seconds, t_duck.seconds),
            f"results {verdict}",
        )
    )
    results.add(
        Row(
            "export_state (Parquet) vs DuckDB COPY … TO Parquet",
            f"{t_export_state.seconds:.1f} s",
            f"{t_duck_file.seconds:.1f} s",
            ratio(t_export_state.seconds, t_duck_file.seconds),
        )
    )
    results.add(
        Row(
            f"export_events (Parquet), {head:,} events (DuckDB's input)",
            rate(head, t_events.seconds),
        )
    )
    if not (equal and equal_written):
        raise SystemExit("the state export and DuckDB disagree; see above")


# -- machine and report ---------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and which files under src/ differed from it (others edit concurrently)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603, S607
        return done.stdout.rstrip()  # porcelain lines start with a space for unstaged changes

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return f"commit {commit}" + (
        f" + uncommitted changes in {', '.join(dirty)}" if dirty else " (clean src/)"
    )


def machine() -> dict[str, str]:
    """The host, the software versions and the code measured (bench/portal.py reuses it)."""
    info: dict[str, str] = {"nproc": str(len(os.sched_getaffinity(0)))}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    info["os"] = f"{os_name}, kernel {platform.release()}"
    info["python"] = platform.python_version()
    info["sqlite"] = sqlite3.sqlite_version
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = str(row[0]) if row else "?"
    except psycopg.OperationalError:
        info["postgresql"] = "unreachable"
    info["code"] = code_version()
    info["duckdb"] = duckdb.__version__
    info["pyarrow"] = pa.__version__
    return info


def show(cfg: Config, results: Results, info: dict[str, str]) -> None:
    table = Table(
        title=f"consentgate ledger benchmark — {cfg.backend}, {cfg.members:,} members, "
        f"{cfg.events:,} setting events",
        caption="ratio = our time / baseline time (lower is better; 1.00× = as fast as the database alone)",
    )
    for name in ("measurement", "consentgate", "baseline", "ratio", "goal / check"):
        table.add_column(name, overflow="fold")
    for row in results.rows:
        table.add_row(row.measurement, row.ours, row.baseline, row.ratio, row.goal)
    out = Console(width=max(Console().width, 150))
    out.print(table)
    for note in results.notes:
        out.print(f"• {note}")
    out.print(", ".join(f"{k}: {v}" for k, v in info.items()))


RESULTS_HEADER = """# Benchmark results

Each section is one run of a script in `bench/`, appended by the script itself. The machine is shared
and noisy (other jobs run on it), so absolute figures move from run to run; **the ratios measured in one
run** (ours / baseline, both timed minutes apart on the same data) are the comparable numbers.
"""


def append_results(cfg: Config, results: Results, info: dict[str, str]) -> None:
    lines = [
        "",
        f"## {RUN_DATE} — ledger, {cfg.backend}, {cfg.members:,} members / {cfg.events:,} setting events",
        "",
        f"- Machine: {info['nproc']} cores (nproc), {info.get('memory', '?')} RAM, {info.get('cpu', '?')};"
        f" {info['os']}",
        f"- Software: Python {info['python']}, SQLite {info['sqlite']}, PostgreSQL {info['postgresql']},"
        f" DuckDB {info['duckdb']}, PyArrow {info['pyarrow']}",
        f"- Code: {info['code']}",
        f"- Command: `{cfg.command}`",
        "",
        "| measurement | consentgate | baseline | ratio (ours/baseline time) | goal / check |",
        "|---|---|---|---|---|",
    ]
    for row in results.rows:
        cells = [row.measurement.strip(), row.ours, row.baseline, row.ratio, row.goal]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.extend(f"- {note}" for note in results.notes)
    text = "\n".join(lines) + "\n"
    if not cfg.results.exists():
        cfg.results.write_text(RESULTS_HEADER)
    with cfg.results.open("a", encoding="utf-8") as handle:
        handle.write(text)
    log(f"appended to {cfg.results}")


# -- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    cfg.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    if cfg.backend == "postgresql" and info["postgresql"] == "unreachable":
        console.print(f"[red]PostgreSQL at {PG_DSN} is not reachable[/red]")
        return 2
    taxonomy = load_taxonomy()
    inputs = prepare_inputs(cfg, taxonomy)
    results = Results()
    stores = Stores(cfg)
    try:
        ledger = bench_import(cfg, stores, taxonomy, inputs, results)
        try:
            gc.collect()
            bench_decide(cfg, ledger, taxonomy, inputs, results)
            bench_export(cfg, ledger, results)
        finally:
            ledger.close()
    finally:
        stores.cleanup()
    show(cfg, results, info)
    if cfg.append:
        append_results(cfg, results, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
