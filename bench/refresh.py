"""Refresh benchmark: ``snapshot refresh`` of a snapshot with 1% of its members in debt, beside a full
rebuild at the same T and a plain filtered copy (the floor), in one run.

    .venv/bin/python bench/refresh.py [--records 50M] [--debt 0.01] [--rounds 2] [--engine duckdb|spark]

Data: the network and ledger of ``bench/snapshot.py`` (run ``bench/snapshot.py --records 50M --only a``
first). The ledger is copied to ``bench/out/refresh/`` so the opt-outs added here stay out of the other
benchmarks. Set-up, not timed: S = genai.training as of 2026-07-01 (after the synthetic history's last
event); then ``--debt`` of S's members (by a seeded hash of the id) switch gen-AI off effective
2026-07-15, appended to the ledger, so they are exactly the debt at T; the event mirror is synced.
Timed, each in a fresh interpreter, alternating, ``--rounds`` times:

  rebuild   ``build_snapshot`` from the raw network as of T = 2026-08-01 (warm mirror)
  refresh   ``refresh_snapshot`` of S to T (warm mirror)
  copy      the floor: PyArrow reads S's files, drops the records of the members in debt (known in
            advance, no ledger), writes the rest (same writer settings as the engine)

Afterwards (not timed) the refresh is checked against the rebuild: the refresh's record ids are the
rebuild's among S's, and no member in debt is in it. Results: terminal (Markdown) and
``bench/out/refresh/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PURPOSE = "genai.training"
# After the synthetic history's last event (2026-06-30), so the debt at T is exactly the opt-outs
# this benchmark adds.
AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
OPT_OUT = datetime(2026, 7, 15, tzinfo=UTC)
T = datetime(2026, 8, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _engine() -> Any:
    from consentgate.decisions import DecisionEngine
    from consentgate.policy import load_timeline
    from consentgate.taxonomy import load_taxonomy

    return DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))


def _forget(db: Path, folder: Path) -> None:
    """Unregister every snapshot under ``folder`` (each timed run publishes anew)."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("DELETE FROM model_snapshots WHERE snapshot_id IN (SELECT snapshot_id FROM snapshots"
                    " WHERE path LIKE ?)", (f"{folder}/%",))  # fmt: skip
        con.execute("DELETE FROM snapshots WHERE path LIKE ?", (f"{folder}/%",))


# -- set-up -----------------------------------------------------------------------------------------


def prepare(work: Path, net: Path, source_db: Path, share: float) -> dict[str, Any]:
    import duckdb

    from consentgate.ledger.events import EventDraft, EventKind, Source
    from consentgate.ledger.mirror import EventMirror, default_mirror_dir
    from consentgate.ledger.store import Ledger
    from consentgate.snapshots.build import BuildRequest, build_snapshot
    from consentgate.snapshots.registry import Registry
    from consentgate.timeutil import to_micros

    work.mkdir(parents=True, exist_ok=True)
    db = work / "ledger.db"
    state_file = work / "state.json"
    if state_file.exists():
        state: dict[str, Any] = json.loads(state_file.read_text())
        if state.get("share") == share and Path(state["source_path"]).is_dir():
            return state
    log(f"copying {source_db} ...")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.name + ".events"), ignore_errors=True)
    shutil.copyfile(source_db, db)
    url = f"sqlite:///{db}"
    ledger = Ledger.open(url)
    engine = _engine()
    log("building the source snapshot S ...")
    source = build_snapshot(
        BuildRequest(data=net, purpose=PURPOSE, as_of=AS_OF, out=work / "source"),
        ledger=ledger,
        engine=engine,
    )
    con = duckdb.connect()
    members = [
        int(m)
        for (m,) in con.execute(
            f"SELECT DISTINCT member_id FROM read_parquet('{source.path / 'members.parquet'}')"
            f" WHERE hash(member_id + 7) % 1000000 < {int(share * 1_000_000)} ORDER BY 1"
        ).fetchall()
    ]
    con.close()
    log(f"{len(members):,} of {source.manifest['counts']['members_included']:,} members opt out ...")
    at = to_micros(OPT_OUT)
    for first in range(0, len(members), 10_000):
        ledger.append(
            [
                EventDraft(
                    m,
                    EventKind.setting_changed,
                    "genai_improvement",
                    "false",
                    at,
                    Source.import_,
                    "bench",
                    f"bench-refresh:{m}",
                )
                for m in members[first : first + 10_000]
            ]
        )
    log("syncing the event mirror ...")
    EventMirror(ledger, default_mirror_dir(url)).sync(ledger.watermark())
    entry = Registry(ledger).require(source.snapshot_id)
    ledger.close()
    (work / "debt_members.json").write_text(json.dumps(members))
    state = {
        "share": share,
        "source_id": source.snapshot_id,
        "source_path": str(entry.path),
        "source_records": int(source.manifest["counts"]["records_included"]),
        "debt_members": len(members),
    }
    state_file.write_text(json.dumps(state))
    return state


# -- the timed steps (each in its own interpreter) --------------------------------------------------


def run_rebuild(work: Path, net: Path, engine_name: str) -> dict[str, Any]:
    from consentgate.ledger.store import Ledger
    from consentgate.snapshots.build import BuildRequest, build_snapshot

    db = work / "ledger.db"
    target = work / f"rebuild-{engine_name}"
    _forget(db, target)
    ledger = Ledger.open(f"sqlite:///{db}")
    request = BuildRequest(
        data=net, purpose=PURPOSE, as_of=T, out=target, engine=engine_name,
        spark_master="local[2]" if engine_name == "spark" else None,
    )  # fmt: skip
    start = time.perf_counter()
    result = build_snapshot(request, ledger=ledger, engine=_engine())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(result.manifest["counts"]["records_included"]),
            "timings": result.timings, "path": str(result.path)}  # fmt: skip


def run_refresh(work: Path, state: dict[str, Any], engine_name: str) -> dict[str, Any]:
    from consentgate.ledger.store import Ledger
    from consentgate.snapshots.refresh import RefreshRequest, refresh_snapshot

    db = work / "ledger.db"
    target = work / f"refresh-{engine_name}"
    _forget(db, target)
    ledger = Ledger.open(f"sqlite:///{db}")
    request = RefreshRequest(
        snapshot_id=state["source_id"], as_of=T, out=target, engine=engine_name,
        spark_master="local[2]" if engine_name == "spark" else None,
    )  # fmt: skip
    start = time.perf_counter()
    result = refresh_snapshot(request, ledger=ledger, engine=_engine())
    seconds = time.perf_counter() - start
    manifest = result.build.manifest
    return {"seconds": seconds, "rows": int(manifest["counts"]["records_included"]),
            "removed": manifest["debt_removed"], "timings": result.build.timings,
            "path": str(result.build.path)}  # fmt: skip


def run_copy(work: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The floor: read S, drop the known debt members' rows, write the rest, file by file, 2 threads."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from consentgate.snapshots.engines.duckdb_engine import BATCH_ROWS, DICTIONARY_PAGE_LIMIT, ROW_GROUP_SIZE

    debt = np.array(sorted(json.loads((work / "debt_members.json").read_text())), dtype=np.int64)
    target = work / "copy"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    files = sorted((Path(state["source_path"]) / "records").glob("*.parquet"))

    def one(path: Path) -> int:
        parquet = pq.ParquetFile(path)
        kept = 0
        with pq.ParquetWriter(target / path.name, parquet.schema_arrow, compression="snappy",
                              dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT) as writer:  # fmt: skip
            pending: list[pa.RecordBatch] = []
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                ids = batch.column("member_id").to_numpy(zero_copy_only=False).astype(np.int64)
                pending.append(batch.filter(pa.array(~np.isin(ids, debt, assume_unique=False))))
                kept += pending[-1].num_rows
                if sum(b.num_rows for b in pending) >= ROW_GROUP_SIZE:
                    writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP_SIZE)
                    pending = []
            if pending:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP_SIZE)
        return kept

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        rows = sum(pool.map(one, files))
    return {"seconds": time.perf_counter() - start, "rows": rows}


# -- orchestration ----------------------------------------------------------------------------------


def measure(step: str, args: argparse.Namespace) -> dict[str, Any]:
    result_file = args.work / f"{step}.json"
    result_file.unlink(missing_ok=True)
    log(f"{step} ...")
    argv = [sys.executable, __file__, "--worker", step, "--records", args.records, "--engine", args.engine,
            "--debt", str(args.debt)]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.run(argv, check=False)  # noqa: S603
    wall = time.perf_counter() - start
    result: dict[str, Any] = (
        json.loads(result_file.read_text()) if result_file.exists() else {"error": f"exit {child.returncode}"}
    )
    result["process_seconds"] = wall
    log(f"{step}: {json.dumps({k: v for k, v in result.items() if k != 'timings'})}")
    return result


def check(
    work: Path, state: dict[str, Any], rebuild: dict[str, Any], refresh: dict[str, Any]
) -> dict[str, Any]:
    """The refresh holds exactly the rebuild's records among S's; no member in debt survives."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '4GB'")

    def files(path: str) -> str:
        return f"read_parquet('{Path(path) / 'records' / '*.parquet'}')"

    source, fresh, full = files(state["source_path"]), files(refresh["path"]), files(rebuild["path"])
    among = f"SELECT f.record_id FROM {full} f SEMI JOIN {source} s ON s.record_id = f.record_id"
    expected = con.execute(f"SELECT count(*) FROM ({among})").fetchall()[0][0]
    missing = con.execute(f"SELECT count(*) FROM ({among} EXCEPT SELECT record_id FROM {fresh})").fetchall()
    missing = missing[0][0]
    debt = json.loads((work / "debt_members.json").read_text())
    con.execute("CREATE TABLE debt AS SELECT unnest($1::BIGINT[]) AS member_id", [debt])
    survivors = con.execute(
        f"SELECT count(*) FROM {fresh} r SEMI JOIN debt d ON d.member_id = r.member_id"
    ).fetchall()[0][0]
    con.close()
    return {"refresh_rows": refresh["rows"], "rebuild_rows_among_source": int(expected),
            "missing_from_refresh": int(missing), "debt_members_in_refresh": int(survivors)}  # fmt: skip


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", default="50M")
    p.add_argument("--debt", type=float, default=0.01, help="share of S's members in debt (default 0.01)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    data = ROOT / "bench" / "out" / "snapshot"
    net = data / f"net{args.records}"
    args.work = ROOT / "bench" / "out" / "refresh" / f"{args.records}-{args.engine}"
    if args.worker:
        state = json.loads((args.work / "state.json").read_text())
        result = {
            "rebuild": lambda: run_rebuild(args.work, net, args.engine),
            "refresh": lambda: run_refresh(args.work, state, args.engine),
            "copy": lambda: run_copy(args.work, state),
        }[args.worker]()
        (args.work / f"{args.worker}.json").write_text(json.dumps(result))
        return 0
    if not (net / "records").is_dir():
        print(f"no {net}: run bench/snapshot.py --records {args.records} --only a first", file=sys.stderr)
        return 2
    state = prepare(args.work, net, data / "ledger.db", args.debt)
    # Read every input once, so that the first timed run does not pay for a cold page cache.
    for path in [*(net / "records").glob("*.parquet"), *Path(state["source_path"]).rglob("*.parquet")]:
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass
    runs: dict[str, list[dict[str, Any]]] = {"rebuild": [], "refresh": [], "copy": []}
    for _ in range(args.rounds):
        for step in runs:
            runs[step].append(measure(step, args))
    best = {step: min(r["seconds"] for r in results) for step, results in runs.items()}
    checked = check(args.work, state, runs["rebuild"][-1], runs["refresh"][-1])
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.uname().nodename} ({os.cpu_count()} cores)",
        "command": f"bench/refresh.py --records {args.records} --debt {args.debt} --rounds {args.rounds}"
        f" --engine {args.engine}",
        "state": state,
        "runs": runs,
        "best": best,
        "check": checked,
    }
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    rebuild = best["rebuild"]
    print(
        f"\n{args.records} records, S = {state['source_records']:,} records, {state['debt_members']:,}"
        f" members in debt ({args.debt:.0%} of S's), engine {args.engine}, best of {args.rounds}\n"
    )
    print("| step | seconds (each run) | best | vs rebuild | vs floor (copy) |")
    print("|---|---|---|---|---|")
    for step in ("rebuild", "refresh", "copy"):
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs[step])
        print(f"| {step} | {each} | {best[step]:.2f} s | {best[step] / rebuild:.2f}x |"
              f" {best[step] / best['copy']:.2f}x |")  # fmt: skip
    refresh_phases = runs["refresh"][-1].get("timings", {})
    print("\nrefresh phases (last run, s): " + ", ".join(f"{k} {v:.2f}" for k, v in refresh_phases.items()))
    rebuild_phases = runs["rebuild"][-1].get("timings", {})
    print("rebuild phases (last run, s): " + ", ".join(f"{k} {v:.2f}" for k, v in rebuild_phases.items()))
    print(f"check: {json.dumps(checked)}")
    ok = (
        checked["missing_from_refresh"] == 0
        and checked["debt_members_in_refresh"] == 0
        and (checked["refresh_rows"] == checked["rebuild_rows_among_source"])
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
