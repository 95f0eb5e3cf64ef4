"""Snapshot benchmark: ``build_snapshot`` beside DuckDB, a per-record ``decide()`` loop and PySpark.

    .venv/bin/python bench/snapshot.py [--records 10M,50M,100M] [--members 2000000] [--only a,b,build]

Data: ``consentgate synth --seed 1 --payload-bytes 16`` (one ledger, one network folder per size, the
same members in each) and ``consentgate ledger export`` of its events; made once, reused by reruns.
At the reference size (``--reference``, default 50M) every measurement runs; at the other sizes (b)
and the warm DuckDB build (time linear in records). Purpose genai.training as of 2025-11-03.

  a      DuckDB: count the records of the purpose's categories (the scan + filter floor)
  b      hand-written DuckDB query: as-of state from the events export, member facts, regions,
         objections, joins; writes the eligible records to Parquet
  f      the filtered copy floor: ``COPY (SELECT * … WHERE category IN (…) AND created_at <= T)``,
         no consent at all (what any build must at least read and write)
  fs     (f) semi-joined to the eligible members (computed beforehand, untimed): exactly the
         build's rows, the cheapest write of them DuckDB knows
  t      (b) tuned: the eligible members first (a temp table), then one semi-join copy
  c      ``decide()`` per record on a 1-in-50 sample (record_id % 50 = 0), extrapolated
  d      query (b) in PySpark, local[2] (session start reported apart from the query)
  build  ``build_snapshot`` with the DuckDB engine, cold (event mirror deleted) and warm
  spark  ``build_snapshot`` with the Spark engine, local[2]

Every measurement runs in a fresh subprocess; its peak RSS is the child's ``ru_maxrss`` (wait4). The
record files are read once before each size so that every run starts from the same page cache. Results
go to the terminal (Markdown) and to ``OUT/results.json``; OUT is under bench/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from consentgate.ledger.mirror import file_sha256

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"
AS_OF = datetime(2025, 11, 3, tzinfo=UTC)
T_SQL = "TIMESTAMP '2025-11-03 00:00:00'"  # compared in UTC (both sessions run in UTC)
PURPOSE, SEED, PAYLOAD, SAMPLE_EVERY = "genai.training", 1, 16, 50
REGIONS = ("EEA", "CH", "UK", "CA", "HK", "ROW")  # genai.training as of 2025-11-03 (not CN)
STEPS = ("a", "b", "f", "fs", "t", "c", "d", "build", "spark")


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else str(n)


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


# -- the hand-written query, shared by (b) DuckDB and (d) Spark ----------------------------------


def categories() -> list[str]:
    from consentgate.policy import load_timeline

    policy = load_timeline([], include_builtin=True).in_force(AS_OF)
    assert policy is not None
    rule = policy.purposes[PURPOSE]
    return sorted(set(rule.categories) - set(rule.never_used))


def country_regions() -> list[tuple[str, str]]:
    from consentgate.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    return [(c, str(taxonomy.region_of(c))) for c in sorted(taxonomy.assigned_countries)]


def eligible_sql(events: str, records: str, spark: bool) -> str:
    """Records of the purpose's categories, created by T, of members eligible as of T."""
    latest = "max_by" if spark else "arg_max"
    first = "min_by" if spark else "arg_min"
    covers = (
        f"array_contains(from_json(value, 'purposes array<string>').purposes, '{PURPOSE}')"
        if spark
        else f"list_contains(CAST(json_extract(value, '$.purposes') AS VARCHAR[]), '{PURPOSE}')"
    )
    outcome = "get_json_object(value, '$.outcome')" if spark else "json_extract_string(value, '$.outcome')"
    adult = "add_months(m.birth, 216)" if spark else "m.birth + INTERVAL 18 YEAR"
    order = "struct(effective_at, seq)" if spark else "{'e': effective_at, 's': seq}"
    cats = ", ".join(f"'{c}'" for c in categories())
    regions = ", ".join(f"'{r}'" for r in REGIONS)
    return f"""
    WITH ev AS (
      SELECT member_id, kind, key, value, seq FROM {events} WHERE effective_at <= {T_SQL}
    ), latest AS (  -- the latest event per member and key as of T; same instant: the higher seq
      SELECT member_id, kind, key, {latest}(value, {order}) AS value
      FROM {events}
      WHERE effective_at <= {T_SQL} AND (kind IN ('member_registered', 'member_fact')
        OR (kind = 'setting_changed' AND key = 'genai_improvement'))
      GROUP BY member_id, kind, key
    ), members AS (
      SELECT member_id,
        max(value) FILTER (WHERE kind = 'member_registered') AS registered,
        max(value) FILTER (WHERE kind = 'member_fact' AND key = 'country') AS country,
        try_cast(nullif(max(value) FILTER (WHERE kind = 'member_fact' AND key = 'birth_date'), '')
          AS DATE) AS birth,
        max(value) FILTER (WHERE kind = 'member_fact' AND key = 'believed_minor') AS believed_minor,
        coalesce(max(value) FILTER (WHERE kind = 'setting_changed'), 'true') AS genai
      FROM latest GROUP BY member_id
    ), decided AS (  -- the first decision of each objection, as of T
      SELECT key, {first}({outcome}, seq) AS outcome FROM ev WHERE kind = 'objection_decided' GROUP BY key
    ), objecting AS (  -- pending objections restrict on receipt; upheld ones stop processing
      SELECT DISTINCT o.member_id FROM ev o LEFT JOIN decided d ON d.key = o.key
      WHERE o.kind = 'objection_received' AND {covers} AND (d.outcome IS NULL OR d.outcome = 'upheld')
    ), eligible AS (
      SELECT m.member_id FROM members m JOIN country_region c ON c.country = m.country
      WHERE m.registered = 'true' AND c.region IN ({regions}) AND m.genai = 'true'
        AND coalesce(m.believed_minor, '') <> 'true'
        AND (m.birth IS NULL OR DATE '2025-11-03' >= CASE WHEN month(m.birth) = 2 AND day(m.birth) = 29
              THEN make_date(year(m.birth) + 18, 3, 1) ELSE {adult} END)
        AND NOT EXISTS (SELECT 1 FROM objecting o WHERE o.member_id = m.member_id)
    )
    SELECT r.* FROM {records} r JOIN eligible e ON e.member_id = r.member_id
    WHERE r.category IN ({cats}) AND r.created_at <= {T_SQL}
    """


def eligible_members_sql(events: str) -> str:
    """The eligible members of (b) alone (its CTEs up to ``eligible``)."""
    full = eligible_sql(events, "records", False)
    return full[: full.rindex("SELECT r.*")] + "SELECT member_id FROM eligible"


def filtered_copy_sql(records: str, members: str | None) -> str:
    """(f): the purpose's categories created by T; with ``members``, only those members' records."""
    cats = ", ".join(f"'{c}'" for c in categories())
    semi = "" if members is None else f" AND member_id IN (SELECT member_id FROM {members})"
    return f"SELECT * FROM {records} WHERE category IN ({cats}) AND created_at <= {T_SQL}{semi}"


# -- the measurements (each in its own process) ---------------------------------------------------


def run_a(data: Path, out: Path) -> dict[str, Any]:
    cats = ", ".join(f"'{c}'" for c in categories())
    con = duckdb.connect()
    start = time.perf_counter()
    row = con.execute(
        f"SELECT count(*) FROM read_parquet('{data}/records/*.parquet') WHERE category IN ({cats})"
    ).fetchone()
    assert row is not None
    return {"seconds": time.perf_counter() - start, "rows": int(row[0]), "what": "count(*) of the categories"}


def run_b(data: Path, out: Path) -> dict[str, Any]:
    target = out / "b.parquet"
    target.unlink(missing_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    start = time.perf_counter()
    con.execute("CREATE TEMP TABLE country_region(country VARCHAR, region VARCHAR)")
    con.executemany("INSERT INTO country_region VALUES (?, ?)", country_regions())
    sql = eligible_sql(
        f"read_parquet('{out.parent / 'events.parquet'}')", f"read_parquet('{data}/records/*.parquet')", False
    )
    con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)")  # snappy, as consentgate's DuckDB engine
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(scalar(f"SELECT count(*) FROM '{target}'"))}


def _duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TEMP TABLE country_region(country VARCHAR, region VARCHAR)")
    con.executemany("INSERT INTO country_region VALUES (?, ?)", country_regions())
    return con


def run_f(data: Path, out: Path) -> dict[str, Any]:
    target = out / "f.parquet"
    target.unlink(missing_ok=True)
    con = _duck()
    start = time.perf_counter()
    sql = filtered_copy_sql(f"read_parquet('{data}/records/*.parquet')", None)
    con.execute(f"COPY ({sql}) TO '{target}'")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(scalar(f"SELECT count(*) FROM '{target}'"))}


def run_fs(data: Path, out: Path) -> dict[str, Any]:
    target, members = out / "fs.parquet", out / "eligible-members.parquet"
    target.unlink(missing_ok=True)
    con = _duck()
    if not members.exists():  # untimed: the consent part is what (f) + semi-join leaves out
        events = f"read_parquet('{out.parent / 'events.parquet'}')"
        con.execute(f"COPY ({eligible_members_sql(events)}) TO '{members}'")
    start = time.perf_counter()
    sql = filtered_copy_sql(f"read_parquet('{data}/records/*.parquet')", f"read_parquet('{members}')")
    con.execute(f"COPY ({sql}) TO '{target}'")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(scalar(f"SELECT count(*) FROM '{target}'"))}


def run_t(data: Path, out: Path) -> dict[str, Any]:
    target = out / "t.parquet"
    target.unlink(missing_ok=True)
    con = _duck()
    start = time.perf_counter()
    events = f"read_parquet('{out.parent / 'events.parquet'}')"
    con.execute(f"CREATE TEMP TABLE eligible_members AS {eligible_members_sql(events)}")
    sql = filtered_copy_sql(f"read_parquet('{data}/records/*.parquet')", "eligible_members")
    con.execute(f"COPY ({sql}) TO '{target}'")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(scalar(f"SELECT count(*) FROM '{target}'"))}


def run_c(data: Path, out: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from consentgate.decisions import DecisionEngine
    from consentgate.decisions.engine import decide
    from consentgate.ledger.store import Ledger
    from consentgate.policy import load_timeline
    from consentgate.taxonomy import load_taxonomy

    ledger = Ledger.open(f"sqlite:///{out.parent / 'ledger.db'}")
    engine = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))
    start = time.perf_counter()
    sample = pq.read_table(out / "sample.parquet")
    ids, members, cats, created = (sample[c].to_pylist() for c in sample.column_names)
    allowed = [
        rid
        for rid, member, category, at in zip(ids, members, cats, created, strict=True)
        if decide(engine, ledger, member, category, PURPOSE, AS_OF, created_at=at).allowed
    ]
    seconds = time.perf_counter() - start
    pq.write_table(pa.table({"record_id": pa.array(allowed, pa.int64())}), out / "c-allowed.parquet")
    return {"seconds": seconds, "rows": len(allowed), "sample": len(ids), "per_second": len(ids) / seconds}


def run_d(data: Path, out: Path) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    target = out / "d"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session = time.perf_counter() - start
    start = time.perf_counter()
    spark.read.parquet(str(out.parent / "events.parquet")).createOrReplaceTempView("events")
    spark.read.parquet(str(data / "records")).createOrReplaceTempView("records")
    spark.createDataFrame(country_regions(), "country string, region string").createOrReplaceTempView(
        "country_region"
    )
    spark.sql(eligible_sql("events", "records", True)).write.parquet(str(target))
    seconds = time.perf_counter() - start
    spark.stop()
    rows = scalar(f"SELECT count(*) FROM '{target}/*.parquet'")
    return {"seconds": seconds, "session_seconds": session, "rows": int(rows)}


def run_build(data: Path, out: Path, engine_name: str, cold: bool) -> dict[str, Any]:
    from consentgate.decisions import DecisionEngine
    from consentgate.ledger.mirror import EventMirror, default_mirror_dir
    from consentgate.ledger.store import Ledger
    from consentgate.policy import load_timeline
    from consentgate.snapshots.build import BuildRequest, build_snapshot
    from consentgate.taxonomy import load_taxonomy

    db = out.parent / "ledger.db"
    if cold:
        shutil.rmtree(db.with_name(db.name + ".events"), ignore_errors=True)
    target = out / f"build-{engine_name}"
    shutil.rmtree(target, ignore_errors=True)
    with contextlib.closing(sqlite3.connect(db)) as registry, registry:  # every build registers anew
        registry.execute("DELETE FROM snapshots WHERE path LIKE ?", (f"{target}/%",))
    ledger = Ledger.open(f"sqlite:///{db}")
    if not cold:  # warm: the mirror is up to date before the clock starts
        EventMirror(ledger, default_mirror_dir(f"sqlite:///{db}")).sync(ledger.watermark())
    engine = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))
    request = BuildRequest(
        data=data,
        purpose=PURPOSE,
        as_of=AS_OF,
        out=target,
        engine=engine_name,
        spark_master="local[2]" if engine_name == "spark" else None,
    )
    start = time.perf_counter()
    try:
        result = build_snapshot(request, ledger=ledger, engine=engine)
    except Exception as exc:  # reported, not raised: the other measurements still run
        return {"error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    timings = {**result.timings, "before_mirror": seconds - sum(result.timings.values())}
    counts = result.manifest["counts"]
    return {"seconds": seconds, "rows": int(counts["records_included"]), "timings": timings,
            "counts": counts, "path": str(result.path), "reproduced": result.reproduced}  # fmt: skip


def worker(step: str, data: Path, out: Path) -> dict[str, Any]:
    if step in ("build-cold", "build-warm", "spark"):
        return run_build(data, out, "spark" if step == "spark" else "duckdb", step == "build-cold")
    steps = {"a": run_a, "b": run_b, "f": run_f, "fs": run_fs, "t": run_t, "c": run_c, "d": run_d}
    return steps[step](data, out)


# -- orchestration --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tree_anon_kb(root: int) -> int:
    """RssAnon of ``root`` and its descendants (Spark's JVM is a grandchild of the worker)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, total = {root}, 0
    while grown := {p for p, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    for pid in tree:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/status").read_text().split("RssAnon:")[1].split()[0])
    return total


def cpu_busy() -> float:
    """CPU seconds used by the whole machine so far (all cores, /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure(step: str, data: Path, out: Path) -> dict[str, Any]:
    """Run ``step`` in a fresh interpreter; add its wall time and peak RSS (wait4)."""
    result_file = out / f"{step}.json"
    result_file.unlink(missing_ok=True)
    log(f"{data.name}: {step} ...")
    argv = [sys.executable, __file__, "--worker", step, "--data", str(data), "--out", str(out)]
    start, busy = time.perf_counter(), cpu_busy()
    child = subprocess.Popen(argv)  # noqa: S603
    anon = 0  # ru_maxrss also counts the ledger's mmap-ed pages (file-backed); RssAnon does not
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        anon = max(anon, tree_anon_kb(child.pid))
        time.sleep(0.2)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    others = cpu_busy() - busy - usage.ru_utime - usage.ru_stime  # noise: other jobs on the machine
    result: dict[str, Any] = (
        json.loads(result_file.read_text()) if result_file.exists() else {"error": f"exit {child.returncode}"}
    )
    result.update(
        process_seconds=wall,
        other_cpu_seconds=others,
        peak_rss_mb=usage.ru_maxrss / 1024,
        peak_anon_mb=anon / 1024,
    )
    log(f"{data.name}: {step}: {json.dumps(result)}")
    return result


def scalar(sql: str) -> Any:
    row = duckdb.connect().execute(sql).fetchone()
    assert row is not None
    return row[0]


def cli(out: Path, *args: str) -> None:
    command = [str(VENV / "consentgate"), "--db", f"sqlite:///{out / 'ledger.db'}", *args]
    subprocess.run(command, check=True)  # noqa: S603


def prepare(out: Path, sizes: list[int], members: int) -> dict[str, Any]:
    """Synthesize what is missing (same seed and members: re-runs append nothing), export the events."""
    for n in sizes:
        net = out / f"net{size_label(n)}"
        if not (net / "records").is_dir():
            log(f"synth {size_label(n)} records ...")
            cli(out, "synth", "--members", str(members), "--records", str(n), "--out", str(net),
                "--seed", str(SEED), "--payload-bytes", str(PAYLOAD))  # fmt: skip
    assert len({file_sha256(out / f"net{size_label(n)}" / "members.parquet") for n in sizes}) == 1
    with contextlib.closing(sqlite3.connect(out / "ledger.db")) as db:
        head = int(db.execute("SELECT max(seq) FROM events").fetchone()[0])
    events = out / "events.parquet"
    if not events.exists() or scalar(f"SELECT max(seq) FROM '{events}'") != head:
        log("ledger export ...")
        cli(out, "ledger", "export", "--out", str(events))
    kinds = duckdb.connect().execute(f"SELECT kind, count(*) FROM '{events}' GROUP BY ALL ORDER BY ALL")
    return {"head": head, "events": dict(kinds.fetchall())}


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", default="10M,50M,100M", help="sizes, e.g. 10M,50M,100M")
    p.add_argument("--reference", default="50M", help="the size at which every step runs (default 50M)")
    p.add_argument("--members", type=int, default=2_000_000)
    p.add_argument("--only", default=",".join(STEPS), help=f"steps to run, of {','.join(STEPS)}")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "snapshot")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.data, args.out)
        (args.out / f"{args.worker}.json").write_text(json.dumps(result, indent=2))
        return 0
    only = set(args.only.split(","))
    if only - set(STEPS):
        p.error(f"--only: unknown step(s) {', '.join(sorted(only - set(STEPS)))}")
    sizes, reference = [parse_size(s) for s in args.records.split(",")], parse_size(args.reference)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "bench/snapshot.py", *argv])
    results: dict[str, Any] = {"command": command, "members": args.members, "sizes": {}}
    git = ["git", "-C", str(ROOT)]
    for key, extra in (("commit", ["rev-parse", "--short", "HEAD"]), ("dirty", ["status", "--short", "src"])):
        results[key] = subprocess.run([*git, *extra], capture_output=True, text=True).stdout.strip()  # noqa: S603
    results.update(prepare(out, sizes, args.members))
    for n in sizes:
        label, net, run_dir = size_label(n), out / f"net{size_label(n)}", out / f"run{size_label(n)}"
        run_dir.mkdir(exist_ok=True)
        order = ("a", "b", "f", "fs", "t", "build-cold", "build-warm", "c", "d", "spark")
        linear = ("b", "f", "build-warm")  # the steps of every size (time linear in records)
        steps = [s for s in order if s.split("-")[0] in only and (n == reference or s in linear)]
        if "c" in steps and not (run_dir / "sample.parquet").exists():
            duckdb.connect().execute(
                f"COPY (SELECT record_id, member_id, category, created_at FROM '{net}/records/*.parquet'"
                f" WHERE record_id % {SAMPLE_EVERY} = 0 ORDER BY record_id) TO '{run_dir / 'sample.parquet'}'"
            )
        for f in sorted((net / "records").glob("*.parquet")):  # the same page cache for every step
            with f.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
        size: dict[str, Any] = {s: measure(s, net, run_dir) for s in steps}
        size["check"] = check(run_dir, size)
        results["sizes"][label] = size
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(report(results, size_label(reference)))
    return 0


def check(run_dir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """(b) against consentgate record by record, and decide() on the sample against the build."""
    build = next((size[s] for s in ("build-warm", "build-cold") if "path" in size.get(s, {})), None)
    if build is None:
        return {}
    ours = f"read_parquet('{build['path']}/records/*.parquet')"
    checks: dict[str, Any] = {}
    for step in ("b", "fs", "t"):  # each holds exactly the build's records
        if "rows" in size.get(step, {}):
            other = f"read_parquet('{run_dir / (step + '.parquet')}')"
            for name, left, right in ((f"only_{step}", other, ours), (f"not_in_{step}", ours, other)):
                checks[name] = scalar(f"SELECT count(*) FROM {left} x ANTI JOIN {right} y USING (record_id)")
    if "rows" in size.get("c", {}):
        checks["c_disagreements"] = scalar(
            f"SELECT count(*) FROM '{run_dir / 'sample.parquet'}' s"
            f" WHERE (s.record_id IN (SELECT record_id FROM '{run_dir / 'c-allowed.parquet'}'))"
            f" <> (s.record_id IN (SELECT record_id FROM {ours}))"
        )
    log(f"checks: {checks}")
    return checks


NAMES = {
    "a": "(a) DuckDB scan + category filter + count",
    "b": "(b) hand-written DuckDB query → Parquet",
    "f": "(f) filtered copy floor (categories, created by T; no consent)",
    "fs": "(f) semi-joined to the eligible members (the build's rows; members untimed)",
    "t": "(t) tuned hand-written query: eligible members first, one semi-join",
    "c": "(c) decide() per record, extrapolated",
    "d": "(d) PySpark local[2] query (session start apart)",
    "build-cold": "consentgate DuckDB build, cold mirror",
    "build-warm": "consentgate DuckDB build, warm mirror",
    "spark": "consentgate Spark build, local[2]",
}


def report(results: dict[str, Any], reference: str) -> str:
    def sec(r: dict[str, Any] | None) -> float | None:
        return None if not r or "error" in r or "seconds" not in r else float(r["seconds"])

    def x(num: float | None, den: float | None, unit: str = "×") -> str:
        return "—" if num is None or not den else f"{num / den:,.2f}{unit}"

    ref = results["sizes"].get(reference, {})
    b, c, d, f = sec(ref.get("b")), ref.get("c", {}), sec(ref.get("d")), sec(ref.get("f"))
    c_full = None if sec(c) is None else parse_size(reference) / c["per_second"]
    lines = [
        f"{reference} records, {results['members']:,} members, ledger head {results['head']:,}",
        "",
        "| measurement | time | rows out | ÷ (b) | ÷ (f) | (c) ÷ this | ÷ (d) | peak RSS (of it anonymous) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step, name in NAMES.items():
        r = ref.get(step)
        t = c_full if step == "c" else sec(r)
        if r is None or t is None:
            lines += [] if r is None else [f"| {name} | {r.get('error', '—')} | | | | | | |"]
            continue
        note = f" + session {r['session_seconds']:.1f} s" if step == "d" else ""
        note += f" ({c['sample']:,} in {c['seconds']:.1f} s, {c['per_second']:,.0f}/s)" if step == "c" else ""
        rows = f"{r['rows']:,}" + (f" of {c['sample']:,}" if step == "c" else "")
        lines.append(
            f"| {name} | {t:,.2f} s{note} | {rows} | {x(t, b)} | {x(t, f)} | {x(c_full, t)} | {x(t, d)}"
            f" | {r['peak_rss_mb']:,.0f} MB ({r['peak_anon_mb']:,.0f} MB anon) |"
        )
    lines += [
        "",
        "| records | (b) | (f) | consentgate warm | ÷ (b) | ÷ (f) | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, size in results["sizes"].items():
        bb, ff, w = sec(size.get("b")), sec(size.get("f")), sec(size.get("build-warm"))
        rss = size.get("build-warm", {}).get("peak_rss_mb", 0)
        lines.append(
            f"| {label} | {x(bb, 1, ' s')} | {x(ff, 1, ' s')} | {x(w, 1, ' s')} | {x(w, bb)} | {x(w, ff)}"
            f" | {rss:,.0f} MB |"
        )
    for label, size in results["sizes"].items():
        for step in ("build-cold", "build-warm", "spark"):
            if "timings" in size.get(step, {}):
                phases = ", ".join(f"{k} {v:.2f}" for k, v in size[step]["timings"].items())
                lines.append(f"- {label} {step} phases (s): {phases}")
        if size.get("check"):
            lines.append(f"- {label} checks: {size['check']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
