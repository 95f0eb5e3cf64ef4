"""Database faults under write load (issue 12), with the real servers: what clients see, what is kept.

    .venv/bin/python bench/outage.py [--seconds 12] [--connections 16] [--workers 1]
                                     [--backend postgresql|sqlite|both]

Per scenario: a fresh ledger (``consentgate init``), ``--members`` members (``consentgate members
import``), a token with scope settings:write (``consentgate token create``), then ``consentgate serve``
as a subprocess and ``wrk`` with ``bench/outage.lua`` putting ``genai_improvement`` of random members,
each request with a unique ``Idempotency-Key``. While the load runs:

- **postgresql**: a PRIVATE cluster in a temporary folder (initdb and pg_ctl as the postgres user,
  its own port and socket folder; the shared server is never contacted). ``--fault-at`` seconds into
  the load it is stopped with ``pg_ctl -m immediate`` (no checkpoint, backends killed), ``--down``
  seconds later started again; ``serve`` keeps running throughout.
- **sqlite**: another process opens the ledger file with Python's sqlite3 and holds ``BEGIN EXCLUSIVE``
  for the busy timeout the product sets (read from its engine) plus ``--lock-extra`` seconds. The run
  is lengthened so that the same ``seconds - fault-at - down`` of load follows the release.

Every request and every answer is logged by the Lua script (one file per wrk thread, one connection
per thread, so an answer belongs to the key its thread sent last). Afterwards, with ``serve`` stopped,
the ledger itself is read: every acknowledged receipt must be stored with its seq, hash, member, value
and key (``bench.portal.check_ledger``, with ``Ledger.verify()``), every stored API event must match a
request that was sent, and ``consentgate audit verify`` must pass. Exit status 1 if an acknowledged
change was lost, a 5xx other than 503 was answered, a 503 lacked Retry-After, no write was answered
503 while the database was down or locked, ``serve`` died or was replaced, no write succeeded after
the fault, a stored event matches no request sent, or the chain does not verify.

This measures fault behaviour, not throughput (wrk here logs every request to a file).
Results go to the terminal and (unless ``--no-append``) to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench.ledger  # noqa: E402
import bench.portal  # noqa: E402
from bench.portal import check_ledger, free_port, log  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "out" / "outage"
DEFAULT_RESULTS = ROOT / "bench" / "RESULTS.md"
LUA = ROOT / "bench" / "outage.lua"
CONSENTGATE = Path(sys.executable).with_name("consentgate")
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
FIRST_MEMBER_ID = 30_000_001
SETTING = "genai_improvement"
WRK_SLACK_S = 60
"""wrk's --timeout is the load's length plus this: no answer is ever given up on by the client."""


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    backends: tuple[str, ...]
    seconds: int
    connections: int
    workers: int
    members: int
    fault_at: float
    down: float
    lock_extra: float
    out: Path
    results: Path
    append: bool
    keep: bool
    command: str


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=12, help="load length (default 12; SQLite: longer)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections = threads (16)")
    parser.add_argument("--workers", type=int, default=1, help="`consentgate serve --workers` (default 1)")
    parser.add_argument("--members", type=int, default=1_000, help="registered members (default 1,000)")
    parser.add_argument("--fault-at", type=float, default=3.0, help="seconds into the load (default 3)")
    parser.add_argument("--down", type=float, default=3.0, help="PostgreSQL down for (default 3 s)")
    parser.add_argument(
        "--lock-extra",
        type=float,
        default=5.0,
        help="SQLite: lock held this long past the busy timeout (5 s)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (bench/out/outage)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--no-append", dest="append", action="store_false", help="do not write RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args(argv)
    if args.seconds < args.fault_at + args.down + 2:
        parser.error("--seconds must leave at least 2 s of load after --fault-at + --down")
    if min(args.connections, args.workers, args.members) < 1:
        parser.error("--connections, --workers and --members must be positive")
    return Config(
        backends=("postgresql", "sqlite") if args.backend == "both" else (args.backend,),
        seconds=args.seconds,
        connections=args.connections,
        workers=args.workers,
        members=args.members,
        fault_at=args.fault_at,
        down=args.down,
        lock_extra=args.lock_extra,
        out=args.out.resolve(),
        results=args.results,
        append=args.append,
        keep=args.keep,
        command=shlex.join([".venv/bin/python", "bench/outage.py", *argv]),
    )


# -- databases: a private PostgreSQL cluster, a SQLite file ----------------------------------------


def run(*command: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=300, **kwargs)  # noqa: S603


@dataclass
class Cluster:
    """A PostgreSQL cluster of our own: its folder, port and socket folder, run by the postgres user."""

    folder: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        run(RUNUSER, "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self.ctl("-o", options, "-l", str(self.folder / "postgres.log"), "-w", "start")

    def stop_immediately(self) -> None:
        self.ctl("-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def private_cluster(keep: bool) -> Iterator[Cluster]:
    """initdb into a new folder of the system's temp folder (the postgres user must reach it)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found or not Path(RUNUSER).exists():
        raise SystemExit("PostgreSQL's initdb and runuser are needed (Debian's postgresql package, as root)")
    folder = Path(tempfile.mkdtemp(prefix="cg-outage-pg-"))
    folder.chmod(0o755)
    shutil.chown(folder, "postgres")
    cluster = Cluster(folder, free_port(), Path(found[-1]).parent)
    run(RUNUSER, "-u", "postgres", "--", str(cluster.bin / "initdb"), "-D", str(folder / "data"),
        "-A", "trust", "-U", "postgres", "--no-sync")  # fmt: skip
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop_immediately()
        if keep:
            log(f"kept the PostgreSQL cluster in {folder} (stopped)")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def busy_timeout_ms(url: str) -> int:
    """The busy timeout the product's engine sets on its SQLite connections."""
    from sqlalchemy import text

    from consentgate.ledger.database import create_ledger_engine

    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("PRAGMA busy_timeout")).scalar_one())
    finally:
        engine.dispose()


# -- the ledger and the server, through the command line --------------------------------------------


def cli(url: str, *args: str) -> str:
    done = subprocess.run(  # noqa: S603
        [str(CONSENTGATE), "--db", url, *args], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"consentgate {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def prepare(url: str, folder: Path, members: int) -> tuple[str, int]:
    """``init``, ``members import``, ``token create``; returns the token's secret and the head seq."""
    from consentgate.ledger.store import Ledger
    from consentgate.web.accounts import TOKEN_PREFIX

    cli(url, "init")
    members_csv = folder / "members.csv"
    countries = ["DE", "FR", "US", "GB", "IN", "BR", "CA", "NL", "ES", "JP"]
    with members_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["member_id", "country", "birth_date", "believed_minor"])
        for i in range(members):
            writer.writerow(
                [FIRST_MEMBER_ID + i, countries[i % len(countries)], f"{1960 + i % 40}-03-01", "false"]
            )
    cli(url, "members", "import", str(members_csv))
    output = cli(url, "token", "create", "outage-bench", "--scope", "settings:write")
    secrets = [line.strip() for line in output.splitlines() if line.strip().startswith(f"{TOKEN_PREFIX}_")]
    if len(secrets) != 1:
        raise SystemExit(f"no token secret in the output of `token create`: {output!r}")
    ledger = Ledger.open(url)
    try:
        head = ledger.watermark()
    finally:
        ledger.close()
    return secrets[0], head


def process_tree(pid: int) -> set[int]:
    """The pids of a process's descendants (uvicorn's workers), from /proc."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found.add(int(child))
                found |= process_tree(int(child))
    return found


@contextlib.contextmanager
def serving(url: str, port: int, workers: int, logfile: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [str(CONSENTGATE), "--db", url, "serve", "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "CONSENTGATE_SECRET_KEY": "outage-bench-" + "k" * 40}
    with logfile.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"`consentgate serve` exited ({proc.returncode}); see {logfile}")
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"`consentgate serve` did not answer within 60 s; see {logfile}")
                time.sleep(0.1)
            if workers > 1:  # every worker up, not just the first to bind
                time.sleep(2)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# -- faults ----------------------------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    begin: float = 0.0
    """Wall-clock time the fault started (stop issued / lock taken)."""
    end: float = 0.0
    """Wall-clock time it was over (``pg_ctl start -w`` returned / lock released)."""
    restart: float = 0.0
    """PostgreSQL: wall-clock time ``pg_ctl start`` was issued (crash recovery runs until ``end``)."""
    steps: list[str] = field(default_factory=list)


LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print(f"locked {time.time():.6f}", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print(f"released {time.time():.6f}", flush=True)
"""


def postgresql_fault(cluster: Cluster, started: float, cfg: Config) -> Fault:
    fault = Fault("PostgreSQL `pg_ctl -m immediate stop`, then `pg_ctl start -w`")
    time.sleep(max(0.0, started + cfg.fault_at - time.time()))
    fault.begin = time.time()
    cluster.stop_immediately()
    stopped = time.time()
    time.sleep(max(0.0, fault.begin + cfg.down - time.time()))
    fault.restart = restart = time.time()
    cluster.start()
    fault.end = time.time()
    fault.steps = [
        f"stop issued at +{fault.begin - started:.2f} s (returned after {stopped - fault.begin:.2f} s)",
        f"start issued at +{restart - started:.2f} s, accepting connections at +{fault.end - started:.2f} s",
    ]
    return fault


def sqlite_fault(path: Path, started: float, cfg: Config, hold: float) -> Fault:
    fault = Fault(f"another process holds `BEGIN EXCLUSIVE` on the file for {hold:g} s")
    time.sleep(max(0.0, started + cfg.fault_at - time.time()))
    asked = time.time()
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", LOCK_HOLDER, str(path), str(hold)],
        capture_output=True, text=True, timeout=hold + 60, check=False,
    )  # fmt: skip
    times = dict(line.split() for line in done.stdout.splitlines() if line.strip())
    if done.returncode != 0 or "locked" not in times:
        raise SystemExit(f"the lock holder failed: {done.stderr.strip()}")
    fault.begin, fault.end = float(times["locked"]), float(times["released"])
    fault.steps = [
        f"lock asked at +{asked - started:.2f} s, held +{fault.begin - started:.2f} s → "
        f"+{fault.end - started:.2f} s"
    ]
    return fault


# -- reading wrk's logs ----------------------------------------------------------------------------


@dataclass
class Sent:
    key: str
    member: int
    value: bool
    sent_at: float
    status: int | None = None
    """None: no answer."""
    answered_at: float | None = None
    retry_after: str = ""
    content_type: str = ""
    seq: str = ""
    hash: str = ""
    receipt_key: str = ""
    detail: str = ""
    last_of_thread: bool = False


def read_logs(folder: Path) -> list[Sent]:
    requests: list[Sent] = []
    for path in sorted(folder.glob("thread-*.tsv")):
        by_key: dict[str, Sent] = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if parts[0] == "S" and len(parts) >= 5:
                sent = Sent(parts[1], int(parts[2]), parts[3] == "true", float(parts[4]))
                by_key[sent.key] = sent
                requests.append(sent)
            elif parts[0] == "R" and len(parts) >= 10 and parts[1] in by_key:
                r = by_key[parts[1]]
                r.status, r.answered_at = int(parts[2]), float(parts[3])
                r.retry_after, r.content_type, r.seq, r.hash, r.receipt_key = parts[4:9]
                r.detail = "\t".join(parts[9:])
        if by_key:
            list(by_key.values())[-1].last_of_thread = True
    return requests


def stored_api_events(url: str, after: int) -> dict[str, dict[str, Any]]:
    """Every event appended after the seeding, by idempotency key."""
    from consentgate.ledger.store import COLUMNS, Ledger

    ledger = Ledger.open(url)
    stored: dict[str, dict[str, Any]] = {}
    try:
        for chunk in ledger.event_rows(COLUMNS, after=after, upto=ledger.watermark()):
            for row in chunk:
                event = dict(zip(COLUMNS, row, strict=True))
                stored[str(event["idempotency_key"])] = event
    finally:
        ledger.close()
    return stored


# -- one scenario ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    backend: str
    workers: int
    duration: int
    fault: Fault
    started: float
    requests: list[Sent]
    wrk_summary: dict[str, int]
    acknowledged: int
    found: int
    mismatches: list[str]
    stored: int
    stored_unacked: Counter[str]
    stored_foreign: list[str]
    verify_ok: bool
    audit_verify: str
    audit_ok: bool
    same_process: bool
    process_note: str
    log_entries: int
    """Failures the error boundary logged (with a traceback each): 503s and any 500."""
    causes: Counter[str]
    """Answers with a 5xx other than 503, by the cause the server logged under their reference."""
    busy_timeout_ms: int | None = None
    info: dict[str, str] = field(default_factory=dict)
    """The machine's facts, taken while the private PostgreSQL cluster runs (postgresql only)."""

    @property
    def statuses(self) -> Counter[str]:
        return Counter("no answer" if r.status is None else str(r.status) for r in self.requests)

    def during(self) -> list[Sent]:
        return [
            r for r in self.requests if r.answered_at and self.fault.begin <= r.answered_at <= self.fault.end
        ]

    def bad_5xx(self) -> int:
        return sum(1 for r in self.requests if r.status is not None and r.status >= 500 and r.status != 503)

    def unavailable(self) -> list[Sent]:
        return [r for r in self.requests if r.status == 503]

    def without_retry_after(self) -> int:
        return sum(1 for r in self.unavailable() if not r.retry_after)

    def not_problem_json(self) -> int:
        return sum(1 for r in self.unavailable() if "application/problem+json" not in r.content_type)

    def first_ok_after(self) -> float | None:
        oks = [
            r.answered_at
            for r in self.requests
            if r.status == 200 and r.answered_at and r.answered_at > self.fault.end
        ]
        return min(oks) - self.fault.end if oks else None

    def lost(self) -> int:
        return self.acknowledged - self.found

    def failures(self) -> list[str]:
        problems = []
        if self.lost():
            problems.append(f"{self.lost()} acknowledged change(s) not in the ledger as acknowledged")
        if self.bad_5xx():
            problems.append(f"{self.bad_5xx()} answer(s) with a 5xx other than 503")
        if self.without_retry_after():
            problems.append(f"{self.without_retry_after()} 503 answer(s) without Retry-After")
        late = sum(1 for r in self.unavailable() if (r.answered_at or 0) > self.fault.end)
        if not any(r.status == 503 for r in self.during()):
            problems.append(
                "no write was answered 503 while the database was down or locked"
                + (f" ({late} 503s came only after the fault had ended)" if late else "")
            )
        if self.first_ok_after() is None:
            problems.append("no write succeeded after the fault ended")
        if not self.same_process:
            problems.append(f"serve did not survive as the same process: {self.process_note}")
        if self.stored_foreign:
            problems.append(f"{len(self.stored_foreign)} stored event(s) match no request sent")
        if not (self.verify_ok and self.audit_ok):
            problems.append("the chain does not verify")
        return problems


def load_and_fault(cfg: Config, backend: str, url: str, work: Path, cluster: Cluster | None) -> Outcome:
    token, head = prepare(url, work, cfg.members)
    busy = None
    duration = cfg.seconds
    hold = cfg.down
    if backend == "sqlite":
        busy = busy_timeout_ms(url)
        hold = busy / 1000 + cfg.lock_extra
        duration = math.ceil(cfg.fault_at + hold + (cfg.seconds - cfg.fault_at - cfg.down))
    log(f"{backend}: {cfg.members:,} members, head seq {head:,}; serve --workers {cfg.workers}; "
        f"{duration} s of load with {cfg.connections} connections")  # fmt: skip
    port = free_port()
    logs = work / "wrk"
    logs.mkdir()
    with serving(url, port, cfg.workers, work / "serve.log") as proc:
        tree_before = process_tree(proc.pid)
        started = time.time()
        wrk = subprocess.Popen(  # noqa: S603
            [WRK, "-t", str(cfg.connections), "-c", str(cfg.connections), "-d", f"{duration}s",
             "--timeout", f"{duration + WRK_SLACK_S}s", "-s", str(LUA), f"http://127.0.0.1:{port}",
             "--", str(logs), token, str(cfg.members), str(FIRST_MEMBER_ID)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            if cluster is not None:
                fault = postgresql_fault(cluster, started, cfg)
            else:
                fault = sqlite_fault(Path(url.removeprefix("sqlite:///")), started, cfg, hold)
            for step in fault.steps:
                log(f"{backend}: {step}")
            output, _ = wrk.communicate(timeout=2 * duration + 2 * WRK_SLACK_S)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        (work / "wrk.out").write_text(output)
        alive = proc.poll() is None
        tree_after = process_tree(proc.pid) if alive else set()
    same = alive and tree_before == tree_after
    note = (
        f"pid {proc.pid}" + (f", its processes {sorted(tree_before)}" if cfg.workers > 1 else "")
        + (" unchanged" if same else f" → {'alive' if alive else 'exited'}, now {sorted(tree_after)}")
    )  # fmt: skip
    summary = {}
    for line in output.splitlines():
        if line.startswith("CG_SUMMARY"):
            summary = {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}
    requests = read_logs(logs)
    log(f"{backend}: wrk done ({len(requests):,} requests sent); serve stopped; reading the ledger")

    receipts = [
        {"key": r.key, "member": r.member, "setting": SETTING, "value": r.value, "seq": r.seq,
         "hash": r.hash, "receipt_key": r.receipt_key}
        for r in requests if r.status == 200
    ]  # fmt: skip
    check = check_ledger(url, head, receipts)
    stored = stored_api_events(url, head)
    by_key = {f"api:setting:{r.member}:{r.key}": r for r in requests}
    acked = {k for k, r in by_key.items() if r.status == 200}
    unacked: Counter[str] = Counter()
    foreign = []
    for key, event in stored.items():
        r = by_key.get(key)
        if r is None or (int(event["member_id"]), event["key"], event["value"]) != (
            r.member,
            SETTING,
            "true" if r.value else "false",
        ):
            foreign.append(key)
        elif key not in acked:
            if r.status is None:
                unacked[
                    "no answer, in flight when the load ended"
                    if r.last_of_thread
                    else "no answer, connection broken"
                ] += 1
            else:
                unacked[f"answered {r.status}"] += 1
    audit = subprocess.run(  # noqa: S603
        [str(CONSENTGATE), "--db", url, "audit", "verify"], capture_output=True, text=True, check=False
    )
    blocks = _log_blocks((work / "serve.log").read_text(errors="replace"))
    return Outcome(
        backend=backend,
        workers=cfg.workers,
        duration=duration,
        fault=fault,
        started=started,
        requests=requests,
        wrk_summary=summary,
        acknowledged=check.acknowledged,
        found=check.found,
        mismatches=check.mismatches,
        stored=len(stored),
        stored_unacked=unacked,
        stored_foreign=foreign,
        verify_ok=check.verify_ok,
        audit_verify=" ".join((audit.stdout + audit.stderr).split())[:200],
        audit_ok=audit.returncode == 0,
        same_process=same,
        process_note=note,
        log_entries=len(blocks),
        causes=Counter(
            _cause(blocks, r) for r in requests if r.status and r.status >= 500 and r.status != 503
        ),
        busy_timeout_ms=busy,
    )


def _log_blocks(text: str) -> dict[str, list[str]]:
    """The server log's entries of the error boundary, by reference: each entry's lines."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        found = re.match(r"unexpected failure \[reference (\w+)\]", line)
        if found:
            current = blocks.setdefault(found.group(1), [])
        if current is not None:
            current.append(line)
    return blocks


def _cause(blocks: dict[str, list[str]], answer: Sent) -> str:
    """What the server logged for one answer: the route, the innermost frame in src/, the exception."""
    reference = re.search(r"reference (\w+)", answer.detail)
    block = blocks.get(reference.group(1), []) if reference else []
    if not block:
        return f"HTTP {answer.status} (no log entry found): {answer.detail[:120]}"
    frames = [ln.strip() for ln in block if ln.strip().startswith('File "') and "/consentgate/" in ln]
    errors = [ln for ln in block if re.match(r"^[\w.]+(Error|Exception)\b", ln)]
    where = (
        re.sub(r'^File ".*?/(consentgate/[^"]+)", line (\d+), in (\w+)', r"\1:\2 \3", frames[-1])
        if frames
        else "?"
    )
    error = re.sub(r"port \d+", "port …", errors[0] if errors else block[-1])
    route = re.sub(r"/\d+/", "/{id}/", block[0].split(" on ", 1)[-1])
    return f"HTTP {answer.status} on {route}, raised in {where}: {error[:200]}"


def run_scenario(cfg: Config, backend: str) -> Outcome:
    cfg.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = Path(tempfile.mkdtemp(prefix=f"{backend}-w{cfg.workers}-{stamp}-", dir=cfg.out))
    try:
        if backend == "postgresql":
            with private_cluster(cfg.keep) as cluster:
                outcome = load_and_fault(cfg, backend, cluster.url, work, cluster)
                outcome.info = machine(cluster.url)
            return outcome
        return load_and_fault(cfg, backend, f"sqlite:///{work / 'ledger.db'}", work, None)
    finally:
        if not cfg.keep:  # keep the logs, drop the databases
            for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
                (work / name).unlink(missing_ok=True)


# -- report ---------------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def rows_of(outcomes: list[Outcome]) -> list[tuple[str, list[str]]]:
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, cells: list[str]) -> None:
        rows.append((name, cells))

    row("fault", [
        o.fault.what + (f" (busy timeout {o.busy_timeout_ms / 1000:g} s)" if o.busy_timeout_ms else "")
        for o in outcomes
    ])  # fmt: skip
    row("fault window (from the load's start)", [
        f"+{o.fault.begin - o.started:.1f} s → +{o.fault.end - o.started:.1f} s "
        f"({o.fault.end - o.fault.begin:.1f} s); load {o.duration} s" for o in outcomes
    ])  # fmt: skip
    row("requests sent / answered / no answer", [
        f"{_n(len(o.requests))} / {_n(sum(1 for r in o.requests if r.status is not None))} / "
        f"{_n(o.statuses['no answer'])}" for o in outcomes
    ])  # fmt: skip

    def by_status(counts: Counter[str]) -> str:
        other = {k: v for k, v in counts.items() if k not in {"200", "503", "no answer"}}
        text = f"200: {_n(counts['200'])}, 503: {_n(counts['503'])}"
        return text + "".join(f", {k}: {_n(v)}" for k, v in sorted(other.items()))

    row("statuses, whole run", [by_status(o.statuses) for o in outcomes])
    row("answered during the fault window", [
        f"{_n(len(o.during()))} ({by_status(Counter(str(r.status) for r in o.during()))})" for o in outcomes
    ])  # fmt: skip
    row("5xx other than 503", [f"**{o.bad_5xx()}**" for o in outcomes])
    row("503 with Retry-After / as problem+json", [
        f"{_n(len(o.unavailable()) - o.without_retry_after())} / "
        f"{_n(len(o.unavailable()) - o.not_problem_json())} of {_n(len(o.unavailable()))}"
        + _retry_values(o)
        for o in outcomes
    ])  # fmt: skip
    row("503 answered during / after the fault window", [
        f"{_n(sum(1 for r in o.during() if r.status == 503))} / "
        f"{_n(sum(1 for r in o.unavailable() if (r.answered_at or 0) > o.fault.end))}" for o in outcomes
    ])  # fmt: skip
    row("503 latency p50 / max (sent → answered)", [_latency(o.unavailable()) for o in outcomes])
    row("slowest answer (sent → answered)", [_slowest(o) for o in outcomes])
    row("acknowledged (200 with a receipt)", [_n(o.acknowledged) for o in outcomes])
    row("acknowledged and stored as acknowledged (seq, hash, member, value, key)", [
        f"{_n(o.found)} of {_n(o.acknowledged)}" for o in outcomes
    ])  # fmt: skip
    row("**lost** (acknowledged, not in the ledger)", [f"**{o.lost()}**" for o in outcomes])
    row("stored but not acknowledged", [
        f"{sum(o.stored_unacked.values())}" + _listing(o.stored_unacked) for o in outcomes
    ])  # fmt: skip
    row("stored events matching no request sent (half-written, foreign)", [
        str(len(o.stored_foreign)) for o in outcomes
    ])  # fmt: skip
    row("API events in the ledger", [_n(o.stored) for o in outcomes])
    row("first 200 after the fault ended", [
        "never" if o.first_ok_after() is None else f"{o.first_ok_after():.2f} s" for o in outcomes
    ])  # fmt: skip
    row("`serve` the same process throughout", [
        f"{'yes' if o.same_process else '**NO**'} ({o.process_note})" for o in outcomes
    ])  # fmt: skip
    row("server log", [
        f"{_n(o.log_entries)} failures logged with a traceback (error boundary)" for o in outcomes
    ])  # fmt: skip
    row("`Ledger.verify()` / `consentgate audit verify`", [
        f"{'ok' if o.verify_ok else '**FAILED**'} / {'ok' if o.audit_ok else '**FAILED**'}" for o in outcomes
    ])  # fmt: skip
    row("verdict", [
        "**pass**" if not o.failures() else "**FAIL**: " + "; ".join(o.failures()) for o in outcomes
    ])  # fmt: skip
    return rows


def _retry_values(o: Outcome) -> str:
    values = sorted({r.retry_after or "(none)" for r in o.unavailable()})
    return f" (Retry-After: {', '.join(values)})" if values else ""


def _listing(counts: Counter[str]) -> str:
    return " (" + "; ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")" if counts else ""


def _slowest(o: Outcome) -> str:
    answered = [r for r in o.requests if r.answered_at is not None]
    if not answered:
        return "—"
    slow = max(answered, key=lambda r: (r.answered_at or 0) - r.sent_at)
    wait = (slow.answered_at or 0) - slow.sent_at
    text = f"{wait:.1f} s (HTTP {slow.status}, sent at +{slow.sent_at - o.started:.1f} s)"
    if o.busy_timeout_ms:
        longer = sum(1 for r in answered if (r.answered_at or 0) - r.sent_at > o.busy_timeout_ms / 1000)
        text += f"; {_n(longer)} answered after more than the busy timeout"
    return text


def _latency(requests: list[Sent]) -> str:
    waits = [r.answered_at - r.sent_at for r in requests if r.answered_at is not None]
    if not waits:
        return "—"
    return f"{bench.portal.percentile(waits, 0.5) * 1000:,.0f} ms / {max(waits) * 1000:,.0f} ms"


def table_of(outcomes: list[Outcome]) -> str:
    header = ["measurement", *(f"{o.backend}, serve --workers {o.workers}" for o in outcomes)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, cells in rows_of(outcomes):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in [name, *cells]) + " |")
    return "\n".join(lines)


def notes_of(outcomes: list[Outcome]) -> list[str]:
    notes = []
    for o in outcomes:
        for step in o.fault.steps:
            notes.append(f"{o.backend}: {step}")
        if o.wrk_summary:
            s = o.wrk_summary
            notes.append(
                f"{o.backend}: wrk socket errors: connect {s.get('connect', 0)}, read {s.get('read', 0)}, "
                f"write {s.get('write', 0)}, timeout {s.get('timeout', 0)}"
            )
        notes.extend(f"{o.backend}: {n}× {cause}" for cause, n in o.causes.most_common(5))
        others = Counter(
            f"HTTP {r.status}: {r.detail[:160]}"
            for r in o.requests
            if r.status is not None and r.status < 500 and r.status != 200
        )
        notes.extend(f"{o.backend}: {n}× {what}" for what, n in others.most_common(5))
        recovering = [
            r for r in o.requests if r.answered_at and o.fault.restart <= r.answered_at <= o.fault.end
        ]
        if o.fault.restart:
            statuses = Counter(str(r.status) for r in recovering)
            notes.append(
                f"{o.backend}: answered while PostgreSQL was starting (start issued → accepting): "
                f"{len(recovering)} ({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))})"
            )
        notes.extend(f"{o.backend}: MISMATCH {m}" for m in o.mismatches[:10])
        notes.extend(f"{o.backend}: FOREIGN {k}" for k in o.stored_foreign[:10])
        if not o.audit_ok:
            notes.append(f"{o.backend}: audit verify: {o.audit_verify}")
    return notes


def machine(pg_url: str | None) -> dict[str, str]:
    """bench/portal.py's host facts. Its PostgreSQL figures come from ``pg_url`` (our private cluster,
    while it runs), never from the shared server bench/portal.py measures."""
    saved = bench.ledger.PG_DSN, bench.portal.PG_DSN
    bench.ledger.PG_DSN = bench.portal.PG_DSN = pg_url or "postgresql://postgres@127.0.0.1:1/none"
    try:
        info = bench.portal.machine()
    finally:
        bench.ledger.PG_DSN, bench.portal.PG_DSN = saved
    if pg_url is None:
        for key in ("postgresql", "pg_sync", "pg_fsync"):
            info.pop(key, None)
    return info


def append_results(
    cfg: Config, outcomes: list[Outcome], table: str, notes: list[str], info: dict[str, str]
) -> None:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    scenarios = " and ".join(cfg.backends)
    pg = ""
    if "postgresql" in cfg.backends:
        pg = (
            f", PostgreSQL {info.get('postgresql', '?')} (private cluster, "
            f"fsync={info.get('pg_fsync', '?')}, synchronous_commit={info.get('pg_sync', '?')})"
        )
    lines = [
        "",
        f"## {day} — database faults under write load (issue 12), {scenarios}, serve --workers {cfg.workers}",
        "",
        f"- Machine: {info['nproc']} cores (nproc), {info.get('memory', '?')} RAM, {info.get('cpu', '?')};"
        f" {info['os']}",
        f"- Software: Python {info['python']}, SQLite {info['sqlite']} (WAL, synchronous=FULL){pg}, "
        f"uvicorn {info['uvicorn']}, {_wrk_version()}",
        f"- Code: {info['code']}",
        f"- Command: `{cfg.command}`; finished at {datetime.now(UTC).strftime('%H:%M')} UTC;"
        f" {cfg.members:,} members; {cfg.connections} wrk connections (one per wrk thread), each PUT"
        f" a random member's `{SETTING}` with a unique Idempotency-Key",
        "- This measures fault behaviour, not throughput: every request and answer is logged to a file by "
        "the Lua script, and the machine is shared.",
        "",
        table,
        "",
        *(f"- {n}" for n in notes),
    ]
    if not cfg.results.exists():
        cfg.results.write_text(bench.ledger.RESULTS_HEADER)
    with cfg.results.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    log(f"appended to {cfg.results}")


def _wrk_version() -> str:
    done = subprocess.run([WRK, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    first = (done.stdout + done.stderr).splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else list(argv))
    if not Path(WRK).exists():
        log("wrk is needed: apt-get install -y wrk")
        return 2
    outcomes = [run_scenario(cfg, backend) for backend in cfg.backends]
    info = next((o.info for o in outcomes if o.info), None) or machine(None)
    table = table_of(outcomes)
    notes = notes_of(outcomes)
    print(table)
    print()
    print("\n".join(f"- {n}" for n in notes))
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    if cfg.append:
        append_results(cfg, outcomes, table, notes, info)
    failed = [(o.backend, f) for o in outcomes for f in o.failures()]
    for backend, problem in failed:
        log(f"FAIL {backend}: {problem}")
    hard = any(o.lost() or o.bad_5xx() for o in outcomes)
    return 1 if hard or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
