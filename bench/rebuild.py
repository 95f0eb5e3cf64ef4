"""Determinism at scale: delete a published snapshot and build it again, N times; same id and bytes?

    .venv/bin/python bench/rebuild.py [--records 20M] [--times 5] [--cold-first] [--engine spark]

Uses the data of ``bench/snapshot.py`` (run it first: ``--records 20M --reference 20M --only a``
makes the 20M network and its ledger). Each build is genai.training as of 2025-11-03 into a fresh
OUT; the first is registered, every later one must be a byte-identical reproduction. With
``--cold-first`` the event mirror is deleted before the first build. Prints one line per build (id,
reproduced, seconds, phases) and the files whose bytes differ, if any.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from consentgate.decisions import DecisionEngine
from consentgate.exceptions import ConsentgateError
from consentgate.ledger.store import Ledger
from consentgate.policy import load_timeline
from consentgate.snapshots.build import BuildRequest, build_snapshot
from consentgate.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parent.parent


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", default="20M")
    p.add_argument("--times", type=int, default=5)
    p.add_argument("--cold-first", action="store_true")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    p.add_argument("--data", type=Path, default=ROOT / "bench" / "out" / "snapshot")
    args = p.parse_args(argv)
    db, net, out = args.data / "ledger.db", args.data / f"net{args.records}", args.data / "rebuild"
    if not (net / "records").is_dir():
        print(f"no {net}: run bench/snapshot.py --records {args.records} --only a first", file=sys.stderr)
        return 2
    with closing(sqlite3.connect(db)) as con, con:
        con.execute("DELETE FROM snapshots WHERE path LIKE ?", (f"{out}/%",))
    if args.cold_first:
        shutil.rmtree(db.with_name(db.name + ".events"), ignore_errors=True)
    ledger = Ledger.open(f"sqlite:///{db}")
    engine = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))
    first: dict[str, str] | None = None
    ids: set[str] = set()
    failures = 0
    for attempt in range(args.times):
        shutil.rmtree(out, ignore_errors=True)
        request = BuildRequest(
            data=net,
            purpose="genai.training",
            as_of=datetime(2025, 11, 3, tzinfo=UTC),
            out=out,
            engine=args.engine,
            spark_master="local[2]" if args.engine == "spark" else None,
        )
        start = time.perf_counter()
        try:
            result = build_snapshot(request, ledger=ledger, engine=engine)
        except ConsentgateError as exc:
            print(f"build {attempt + 1}: refused: {exc}")
            failures += 1
            continue
        seconds = time.perf_counter() - start
        phases = ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items() if v >= 0.05)
        print(
            f"build {attempt + 1}: {result.snapshot_id} reproduced={result.reproduced}"
            f" {seconds:.1f} s ({phases})"
        )
        ids.add(result.snapshot_id)
        found = digests(result.path)
        if first is None:
            first = found
        elif found != first:
            failures += 1
            print("  differs:", ", ".join(k for k in sorted(first) if found.get(k) != first[k]))
    print(f"{args.times} builds, {len(ids)} snapshot id(s), {failures} not identical to the first")
    return 1 if failures or len(ids) != 1 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
