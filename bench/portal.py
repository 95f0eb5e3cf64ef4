"""Portal benchmark: durable setting changes and batch decisions per second through the JSON API.

    .venv/bin/python bench/portal.py [--backend sqlite|postgresql|both] [--seconds 15] [--concurrency 64]

Per backend: a fresh ledger (SQLite file under bench/out/portal/, or a fresh PostgreSQL schema) seeded
with ``--members`` registered members and one service token; ``uvicorn`` (1 worker, loopback) serving
``create_app``; then a load generator in a second process:

1. ``PUT /api/v1/members/{id}/settings/{key}`` for ``--seconds`` with ``--concurrency`` keep-alive
   connections, each request with a unique ``Idempotency-Key``, random member, toggle and value. An
   acknowledged change is a 200 with a receipt; its latency is client-side (send to full response).
2. ``POST /api/v1/decisions`` with batches of ``--batch`` requests for ``--decision-seconds`` with
   ``--decision-concurrency`` connections.

The load generator speaks HTTP/1.1 on raw asyncio streams, not httpx: the machine has few cores and
the client's CPU is taken from the server. Figures exclude the first second of each phase (warm-up);
the durability check covers every request.

Afterwards, with the server stopped, the ledger is opened directly: every acknowledged receipt must be
in it (seq, hash, member, setting, value, idempotency key) and ``Ledger.verify()`` must pass. Goals:
≥ 500 acknowledged changes/s on SQLite, ≥ 1,500/s on PostgreSQL, p99 ≤ 50 ms. Results go to the
terminal and (unless ``--no-append``) to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "out" / "portal"
DEFAULT_RESULTS = ROOT / "bench" / "RESULTS.md"
PG_DSN = os.environ.get("CONSENTGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
RUN_DATE = "2026-11-23"
SEED = 20261123
FIRST_MEMBER_ID = 20_000_001
WARMUP_SECONDS = 1.0
GOALS = {"sqlite": 500.0, "postgresql": 1_500.0}
P99_GOAL_MS = 50.0
DB_ENV = "CONSENTGATE_BENCH_DB"
DIRECT_ENV = "CONSENTGATE_BENCH_DIRECT"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server (imported by uvicorn in its own process) ------------------------------------------


def server_app() -> Any:
    """The uvicorn factory: ``uvicorn --factory bench.portal:server_app`` with the ledger URL in env."""
    from consentgate.web import PortalConfig, create_app

    app = create_app(PortalConfig(db=os.environ[DB_ENV], secret_key="bench-secret"))  # noqa: S106
    if os.environ.get(DIRECT_ENV):
        # --no-group-commit: the baseline, one transaction (one fsync) per request.
        portal = app.state.portal
        portal.append = portal.ledger.append
    return app


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    backends: tuple[str, ...]
    seconds: float
    concurrency: int
    decision_seconds: float
    decision_concurrency: int
    batch: int
    members: int
    workers: int
    group_commit: bool
    out: Path
    results: Path
    append: bool
    keep: bool
    command: str


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=15.0, help="PUT phase length (default 15)")
    parser.add_argument("--concurrency", type=int, default=64, help="PUT connections (default 64)")
    parser.add_argument("--decision-seconds", type=float, default=10.0, help="decisions phase (default 10)")
    parser.add_argument("--decision-concurrency", type=int, default=4, help="decision connections (4)")
    parser.add_argument("--batch", type=int, default=1_000, help="decisions per POST (default 1,000)")
    parser.add_argument("--members", type=int, default=10_000, help="seeded members (default 10,000)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument(
        "--no-group-commit",
        dest="group_commit",
        action="store_false",
        help="baseline: the server appends each request on its own (Portal.append → Ledger.append)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (bench/out/portal)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-append", dest="append", action="store_false", help="do not write RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args(argv)
    if args.seconds <= WARMUP_SECONDS or args.decision_seconds <= WARMUP_SECONDS:
        parser.error(f"--seconds and --decision-seconds must exceed the {WARMUP_SECONDS:g} s warm-up")
    if min(args.concurrency, args.decision_concurrency, args.batch, args.members) < 1:
        parser.error("--concurrency, --decision-concurrency, --batch and --members must be positive")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    return Config(
        backends=backends,
        seconds=args.seconds,
        concurrency=args.concurrency,
        decision_seconds=args.decision_seconds,
        decision_concurrency=args.decision_concurrency,
        batch=args.batch,
        members=args.members,
        workers=args.workers,
        group_commit=args.group_commit,
        out=args.out.resolve(),
        results=args.results,
        append=args.append,
        keep=args.keep,
        command=shlex.join([".venv/bin/python", "bench/portal.py", *argv]),
    )


# -- the ledger: create, seed, check --------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str, cfg: Config) -> Iterator[str]:
    """A URL of an empty database: a SQLite file in a new folder, or a new PostgreSQL schema."""
    import psycopg

    if backend == "sqlite":
        cfg.out.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="sqlite-", dir=cfg.out))
        try:
            yield f"sqlite:///{folder / 'ledger.db'}"
        finally:
            if not cfg.keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    schema = f"cg_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        if not cfg.keep:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass(frozen=True)
class Seeded:
    member_ids: list[int]
    token: str
    head: int
    settings: list[str]
    pairs: list[tuple[str, str]]
    """(category, purpose) pairs for the decision requests."""


def seed(url: str, members: int) -> Seeded:
    """Initialise the ledger, register the members (one bulk append), create a service token."""
    from consentgate.ledger.commands import member_drafts
    from consentgate.ledger.events import EventBatch, Source
    from consentgate.ledger.store import Ledger
    from consentgate.taxonomy import load_taxonomy
    from consentgate.taxonomy.models import SettingKind
    from consentgate.web.accounts import AccountStore, Scope

    rng = random.Random(SEED)
    countries = ["DE", "FR", "US", "GB", "IN", "BR", "CA", "CH", "NL", "ES"]
    ids = list(range(FIRST_MEMBER_ID, FIRST_MEMBER_ID + members))
    drafts = []
    for member in ids:
        drafts.extend(
            member_drafts(
                member_id=member,
                country=rng.choice(countries),
                birth_date=None,
                believed_minor=None,
                registered_at=datetime(2015, 1, 1, tzinfo=UTC),
                source=Source.import_,
                actor="bench",
            )
        )
    ledger = Ledger.open(url, initialise=True)
    try:
        ledger.append_bulk(EventBatch.of(drafts))
        _, token = AccountStore(ledger).create_token(
            name="bench", scopes=frozenset({Scope.settings_write, Scope.decisions_read})
        )
        head = ledger.watermark()
    finally:
        ledger.close()
    taxonomy = load_taxonomy()
    settings = sorted(k for k, s in taxonomy.settings.items() if s.kind is SettingKind.toggle)
    pairs = [(c, p) for c in sorted(taxonomy.categories) for p in sorted(taxonomy.purposes)]
    return Seeded(ids, token, head, settings, pairs)


@dataclass
class Check:
    acknowledged: int = 0
    found: int = 0
    mismatches: list[str] = field(default_factory=list)
    verify_ok: bool = False
    events_checked: int = 0
    appended: int = 0
    transactions: int = 0


def check_ledger(url: str, seed_head: int, receipts: list[dict[str, Any]]) -> Check:
    """Every acknowledged receipt against the ledger itself, then the whole chain."""
    from consentgate.ledger.store import COLUMNS, Ledger

    ledger = Ledger.open(url)
    check = Check(acknowledged=len(receipts))
    try:
        head = ledger.watermark()
        by_seq: dict[int, dict[str, Any]] = {}
        for chunk in ledger.event_rows(COLUMNS, after=seed_head, upto=head):
            for row in chunk:
                stored = dict(zip(COLUMNS, row, strict=True))
                by_seq[int(stored["seq"])] = stored
        check.appended = len(by_seq)
        # recorded_at is taken once per Ledger.append call: distinct values = transactions.
        check.transactions = len({e["recorded_at"] for e in by_seq.values()})
        seen: set[int] = set()
        for r in receipts:
            event = by_seq.get(int(r["seq"]))
            problem = None
            if event is None:
                problem = "no event with this seq"
            elif int(r["seq"]) in seen:
                problem = "seq acknowledged twice"
            elif event["hash"] != r["hash"]:
                problem = f"hash {event['hash'][:12]}… ≠ receipt {str(r['hash'])[:12]}…"
            elif event["idempotency_key"] != r["receipt_key"] or r["key"] not in r["receipt_key"]:
                key = event["idempotency_key"]
                problem = f"idempotency key {key!r} ≠ {r['receipt_key']!r} / {r['key']!r}"
            elif (int(event["member_id"]), event["kind"], event["key"], event["value"]) != (
                r["member"],
                "setting_changed",
                r["setting"],
                "true" if r["value"] else "false",
            ):
                problem = f"content {event['member_id']} {event['kind']} {event['key']}={event['value']}"
            seen.add(int(r["seq"]))
            if problem:
                check.mismatches.append(f"{r['key']} (seq {r['seq']}): {problem}")
            else:
                check.found += 1
        report = ledger.verify()
        check.verify_ok = report.ok
        check.events_checked = report.events_checked
        if not report.ok:
            check.mismatches.append(f"verify: seq {report.bad_seq}: {report.problem}")
    finally:
        ledger.close()
    return check


# -- the server process ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(cfg: Config, url: str, port: int, logfile: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, DB_ENV: url}
    if not cfg.group_commit:
        env[DIRECT_ENV] = "1"
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "bench.portal:server_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(cfg.workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with logfile.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the server exited ({proc.returncode}); see {logfile}")
                ready = f"http://127.0.0.1:{port}/api/v1/openapi.json"
                with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start within 60 s; see {logfile}")
                time.sleep(0.1)
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (uvicorn's workers; Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children.extend(int(c) for c in (task / "children").read_text().split())
    return total + sum(cpu_seconds(child) for child in children)


# -- the load generator (a second process) --------------------------------------------------------


class Connection:
    """One HTTP/1.1 keep-alive connection on asyncio streams: little client CPU per request."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host = host
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes, extra: str = "") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
        ).encode()
        self.writer.write(head + self.auth + b"\r\n" + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            length = -1
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length < 0:
                raise ConnectionError("response without Content-Length")
            data = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Phase:
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    """Of acknowledged requests started after the warm-up."""
    measured_ok: int = 0
    measured_seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    items: int = 0
    """Decisions returned in the measured window (decisions phase)."""


def _error(phase: Phase, what: str) -> None:
    phase.errors[what] = phase.errors.get(what, 0) + 1


async def put_phase(spec: dict[str, Any], receipts: list[dict[str, Any]]) -> Phase:
    phase = Phase()
    start = time.perf_counter()
    measure_from = start + WARMUP_SECONDS
    end = start + float(spec["seconds"])
    members: list[int] = spec["members"]
    settings: list[str] = spec["settings"]
    run = uuid.uuid4().hex[:8]
    cpu: list[float] = []

    async def worker(w: int) -> None:
        rng = random.Random(SEED + w)
        conn = Connection("127.0.0.1", spec["port"], spec["token"])
        i = 0
        while (sent := time.perf_counter()) < end:
            member, setting, value = rng.choice(members), rng.choice(settings), rng.random() < 0.5
            key = f"bench-{run}-{w}-{i}"
            i += 1
            body = b'{"value": true}' if value else b'{"value": false}'
            phase.requests += 1
            try:
                status, data = await conn.request(
                    "PUT", f"/api/v1/members/{member}/settings/{setting}", body, f"Idempotency-Key: {key}\r\n"
                )
            except (OSError, asyncio.IncompleteReadError, ConnectionError) as exc:
                _error(phase, type(exc).__name__)
                continue
            done = time.perf_counter()
            if status != 200:
                _error(phase, f"HTTP {status}: {data[:120].decode(errors='replace')}")
                continue
            receipt = json.loads(data)["receipt"]
            phase.ok += 1
            receipts.append(
                {
                    "key": key,
                    "member": member,
                    "setting": setting,
                    "value": value,
                    "seq": receipt["seq"],
                    "hash": receipt["hash"],
                    "receipt_key": receipt["idempotency_key"],
                }
            )
            if sent >= measure_from:
                phase.measured_ok += 1
                phase.latencies_ms.append((done - sent) * 1000)
        await conn.close()

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu.extend([time.perf_counter(), cpu_seconds(spec["server_pid"]), time.process_time()])

    tasks = [asyncio.create_task(worker(w)) for w in range(spec["concurrency"])]
    await meter()
    await asyncio.gather(*tasks)
    finished = time.perf_counter()
    phase.measured_seconds = finished - cpu[0]
    phase.server_cpu = (cpu_seconds(spec["server_pid"]) - cpu[1]) / phase.measured_seconds
    phase.client_cpu = (time.process_time() - cpu[2]) / phase.measured_seconds
    return phase


async def decisions_phase(spec: dict[str, Any]) -> Phase:
    phase = Phase()
    rng = random.Random(SEED)
    members: list[int] = spec["members"]
    pairs: list[list[str]] = spec["pairs"]
    bodies: list[bytes] = []
    for _ in range(16):  # prepared up front: the client's CPU is the server's too
        requests = []
        for _ in range(spec["batch"]):
            category, purpose = rng.choice(pairs)
            requests.append({"member_id": rng.choice(members), "category": category, "purpose": purpose})
        bodies.append(json.dumps({"requests": requests}).encode())
    start = time.perf_counter()
    measure_from = start + WARMUP_SECONDS
    end = start + float(spec["decision_seconds"])
    cpu: list[float] = []

    async def worker(w: int) -> None:
        conn = Connection("127.0.0.1", spec["port"], spec["token"])
        i = w
        while (sent := time.perf_counter()) < end:
            body = bodies[i % len(bodies)]
            i += 1
            phase.requests += 1
            try:
                status, data = await conn.request("POST", "/api/v1/decisions", body)
            except (OSError, asyncio.IncompleteReadError, ConnectionError) as exc:
                _error(phase, type(exc).__name__)
                continue
            done = time.perf_counter()
            if status != 200:
                _error(phase, f"HTTP {status}: {data[:120].decode(errors='replace')}")
                continue
            n = len(json.loads(data)["decisions"])
            if n != spec["batch"]:
                _error(phase, f"{n} decisions for {spec['batch']} requests")
                continue
            phase.ok += 1
            if sent >= measure_from:
                phase.measured_ok += 1
                phase.items += n
                phase.latencies_ms.append((done - sent) * 1000)
        await conn.close()

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu.extend([time.perf_counter(), cpu_seconds(spec["server_pid"]), time.process_time()])

    tasks = [asyncio.create_task(worker(w)) for w in range(spec["decision_concurrency"])]
    await meter()
    await asyncio.gather(*tasks)
    phase.measured_seconds = time.perf_counter() - cpu[0]
    phase.server_cpu = (cpu_seconds(spec["server_pid"]) - cpu[1]) / phase.measured_seconds
    phase.client_cpu = (time.process_time() - cpu[2]) / phase.measured_seconds
    return phase


def load_main(spec_path: Path) -> int:
    """The load generator's entry point (run as a separate process by the orchestrator)."""
    spec = json.loads(spec_path.read_text())
    receipts: list[dict[str, Any]] = []
    puts = asyncio.run(put_phase(spec, receipts))
    decisions = asyncio.run(decisions_phase(spec)) if spec["decision_seconds"] > 0 else Phase()
    result = {"puts": asdict(puts), "decisions": asdict(decisions), "receipts": receipts}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# -- one backend ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Outcome:
    backend: str
    puts: Phase
    decisions: Phase
    check: Check
    seed_seconds: float


def run_backend(cfg: Config, backend: str) -> Outcome:
    cfg.out.mkdir(parents=True, exist_ok=True)
    with fresh_database(backend, cfg) as url:
        started = time.perf_counter()
        seeded = seed(url, cfg.members)
        seed_seconds = time.perf_counter() - started
        log(f"{backend}: seeded {cfg.members:,} members (head seq {seeded.head:,}) in {seed_seconds:.1f} s")
        port = free_port()
        spec_path = cfg.out / f"load-{backend}.json"
        result_path = cfg.out / f"result-{backend}.json"
        with server(cfg, url, port, cfg.out / f"server-{backend}.log") as proc:
            spec = {
                "port": port,
                "token": seeded.token,
                "members": seeded.member_ids,
                "settings": seeded.settings,
                "pairs": seeded.pairs,
                "seconds": cfg.seconds,
                "concurrency": cfg.concurrency,
                "decision_seconds": cfg.decision_seconds,
                "decision_concurrency": cfg.decision_concurrency,
                "batch": cfg.batch,
                "server_pid": proc.pid,
                "result": str(result_path),
            }
            spec_path.write_text(json.dumps(spec))
            log(f"{backend}: uvicorn pid {proc.pid} on 127.0.0.1:{port}; load for {cfg.seconds:g} s + "
                f"{cfg.decision_seconds:g} s")  # fmt: skip
            subprocess.run(  # noqa: S603
                [sys.executable, str(Path(__file__).resolve()), "--load-spec", str(spec_path)],
                cwd=ROOT,
                check=True,
            )
        result = json.loads(result_path.read_text())
        puts, decisions = Phase(**result["puts"]), Phase(**result["decisions"])
        log(f"{backend}: server stopped; checking {len(result['receipts']):,} receipts against the ledger")
        check = check_ledger(url, seeded.head, result["receipts"])
    return Outcome(backend, puts, decisions, check, seed_seconds)


# -- machine and report ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """bench/ledger.py's host facts, plus what decides durability and serving here."""
    import psycopg
    import uvicorn

    from bench.ledger import machine as host

    info = host()
    with contextlib.suppress(psycopg.OperationalError), psycopg.connect(PG_DSN, connect_timeout=5) as conn:
        for name, setting in (("pg_sync", "synchronous_commit"), ("pg_fsync", "fsync")):
            row = conn.execute(f"SHOW {setting}").fetchone()
            info[name] = str(row[0]) if row else "?"
    info["uvicorn"] = uvicorn.__version__
    return info


def rows_of(cfg: Config, outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    for o in outcomes:
        p, d, c = o.puts, o.decisions, o.check
        rate = p.measured_ok / p.measured_seconds if p.measured_seconds else 0.0
        p99 = percentile(p.latencies_ms, 0.99)
        goal = GOALS[o.backend]
        met = rate >= goal and p99 <= P99_GOAL_MS
        rows.append(
            [
                f"{o.backend}: setting changes (PUT), {cfg.concurrency} connections, "
                f"{'group commit' if cfg.group_commit else 'one transaction per request'}",
                f"{rate:,.0f} /s",
                f"{percentile(p.latencies_ms, 0.5):.1f} ms",
                f"{p99:.1f} ms",
                f"≥ {goal:,.0f}/s, p99 ≤ {P99_GOAL_MS:g} ms: **{'met' if met else 'not met'}** "
                f"({rate / goal:.2f}× the rate, p99 {p99 / P99_GOAL_MS:.2f}× the limit)",
                f"server {p.server_cpu:.0%} ({1000 * p.server_cpu / rate if rate else 0:.1f} ms per change), "
                f"client {p.client_cpu:.0%}",
            ]
        )
        drate = d.measured_ok / d.measured_seconds if d.measured_seconds else 0.0
        rows.append(
            [
                f"{o.backend}: batch decisions (POST, {cfg.batch:,} each), {cfg.decision_concurrency} conn.",
                f"{drate:,.1f} batches/s = {d.items / d.measured_seconds if d.measured_seconds else 0:,.0f}"
                " decisions/s",
                f"{percentile(d.latencies_ms, 0.5):.0f} ms",
                f"{percentile(d.latencies_ms, 0.99):.0f} ms",
                "(no goal)",
                f"server {d.server_cpu:.0%}, client {d.client_cpu:.0%}",
            ]
        )
        durable = c.found == c.acknowledged and c.verify_ok and not c.mismatches
        rows.append(
            [
                f"{o.backend}: every acknowledged change in the ledger",
                f"{c.found:,} of {c.acknowledged:,}",
                "",
                "",
                f"**{'yes' if durable else 'NO'}**; verify() {'ok' if c.verify_ok else 'FAILED'} "
                f"({c.events_checked:,} events)",
                f"{c.appended:,} events in {c.transactions:,} transactions "
                f"({c.appended / max(1, c.transactions):.1f} per commit)",
            ]
        )
    return rows


HEADER = ["measurement", "rate", "p50", "p99", "goal / check", "CPU (of one core) / commits"]


def notes_of(outcomes: list[Outcome]) -> list[str]:
    notes = []
    for o in outcomes:
        for phase_name, phase in (("PUT", o.puts), ("decisions", o.decisions)):
            if phase.errors:
                listing = "; ".join(f"{n}× {what}" for what, n in sorted(phase.errors.items()))
                notes.append(f"{o.backend} {phase_name}: {phase.requests:,} sent, errors: {listing}")
        notes.extend(f"{o.backend}: MISMATCH {m}" for m in o.check.mismatches[:10])
    return notes


def show(cfg: Config, outcomes: list[Outcome], info: dict[str, str]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows_of(cfg, outcomes):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines.append("")
    lines.extend(f"- {n}" for n in notes_of(outcomes))
    text = "\n".join(lines)
    print(text)
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    return text


def append_results(cfg: Config, table: str, info: dict[str, str]) -> None:
    lines = [
        "",
        f"## {RUN_DATE} — portal API, {' and '.join(cfg.backends)}: durable changes/s and batch decisions/s",
        "",
        f"- Machine: {info['nproc']} cores (nproc), {info.get('memory', '?')} RAM, {info.get('cpu', '?')};"
        f" {info['os']}",
        f"- Software: Python {info['python']}, SQLite {info['sqlite']} (WAL, synchronous=FULL), PostgreSQL "
        f"{info['postgresql']} (fsync={info.get('pg_fsync', '?')}, synchronous_commit="
        f"{info.get('pg_sync', '?')}), uvicorn {info['uvicorn']} (h11, loopback)",
        f"- Code: {info['code']}",
        f"- Command: `{cfg.command}`; {cfg.workers} uvicorn worker(s); {cfg.members:,} seeded members;"
        f" warm-up {WARMUP_SECONDS:g} s "
        "excluded from rates and latencies; the load generator is a second process (raw HTTP/1.1 on "
        "asyncio, keep-alive)",
        "",
        table,
    ]
    if not cfg.results.exists():
        cfg.results.write_text("# Benchmark results\n")
    with cfg.results.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    log(f"appended to {cfg.results}")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["--load-spec"]:
        return load_main(Path(args[1]))
    cfg = parse_args(args)
    info = machine()
    if "postgresql" in cfg.backends and info["postgresql"] == "unreachable":
        log(f"PostgreSQL at {PG_DSN} is not reachable")
        return 2
    outcomes = [run_backend(cfg, backend) for backend in cfg.backends]
    table = show(cfg, outcomes, info)
    if cfg.append:
        append_results(cfg, table, info)
    durable = all(o.check.found == o.check.acknowledged and o.check.verify_ok for o in outcomes)
    return 0 if durable else 1


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
