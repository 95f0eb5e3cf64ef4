"""Archive inspector benchmark: ``consentgate inspect --json`` beside Python's ``csv`` and ``pyarrow.csv``.

    .venv/bin/python bench/archive_inspect.py [--messages 1000000] [--connections 100000]

Data (made once under bench/out/inspect/, reused): an archive shaped like a newer export (everything
quoted, CRLF, a BOM on messages.csv, a top folder) with ``--messages`` rows in messages.csv (multi-line
contents, about 500 bytes a row: 1M rows ≈ 500 MB), ``--connections`` rows in Connections.csv (with the
Notes preamble), a Profile.csv and a few small files; stored uncompressed in the ZIP, as a member's
unpacked-then-rezipped archive would be read at disk speed. Each measurement runs in a fresh process;
peak RSS is that process's ``ru_maxrss`` (wait4):

  inspect   ``inspect_archive`` and its JSON, what ``consentgate inspect ARCHIVE --country DE --at
            2025-11-04 --json`` does after the CLI has started
  csv       the floor: Python's csv module reads every row of every file from the ZIP (one core)
  pyarrow   ``pyarrow.csv.read_csv`` of each file from the ZIP (multi-threaded, whole file in memory)

(Not ``bench/inspect.py``, as issue 11 names it: run as a script, that name shadows the standard
library's ``inspect`` for everything the script imports.)

Goals (issue 11): ≥ 50 MB/s on one core; peak RSS ≤ 200 MB, flat in archive size.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "inspect"
TOP = "Basic_LinkedInDataExport_01-02-2026"
MESSAGES_HEADER = [
    *("CONVERSATION ID", "CONVERSATION TITLE", "FROM", "SENDER PROFILE URL", "TO", "RECIPIENT PROFILE URLS"),
    *("DATE", "SUBJECT", "CONTENT", "FOLDER"),
]


def make(path: Path, messages: int, connections: int) -> None:
    rng = random.Random(7)
    words = [f"word{i}" for i in range(500)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:

        def member(name: str, header: list[str], rows: object, bom: bool = False) -> None:
            with archive.open(f"{TOP}/{name}", "w", force_zip64=True) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig" if bom else "utf-8", newline="")
                writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
                writer.writerow(header)
                for row in rows:  # type: ignore[attr-defined]
                    writer.writerow(row)
                text.flush()
                text.detach()

        member(
            "Profile.csv",
            ["First Name", "Last Name", "Birth Date", "Headline"],
            [["Ada", "L", "Mar 3, 1985", "x"]],
        )
        member(
            "messages.csv",
            MESSAGES_HEADER,
            (
                [f"c{i % 5000}", "", f"Sender {i % 97}", f"https://example.invalid/in/s{i % 97}", "Ada L",
                 "https://example.invalid/in/ada", f"2025-06-{1 + i % 28:02d} 14:03:22 UTC", "",
                 " ".join(rng.choices(words, k=40)) + "\n" + " ".join(rng.choices(words, k=20)), "INBOX"]
                for i in range(messages)
            ),
            bom=True,
        )  # fmt: skip
        with archive.open(f"{TOP}/Connections.csv", "w") as raw:
            raw.write(
                b'Notes:\r\n"When exporting your connection data, some email addresses are missing."\r\n\r\n'
            )
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
            writer.writerow(
                ["First Name", "Last Name", "URL", "Email Address", "Company", "Position", "Connected On"]
            )
            for i in range(connections):
                url = f"https://example.invalid/in/{i}"
                writer.writerow([f"F{i}", f"L{i}", url, "", f"Co {i % 300}", "Dev", "08 Feb 2026"])
            text.flush()
            text.detach()
        member("Skills.csv", ["Name"], [[w] for w in words[:30]])


def worker(step: str, archive: Path) -> dict[str, object]:
    start = time.perf_counter()
    if step == "csv":
        rows = 0
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                with z.open(info) as raw:
                    for _ in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")):
                        rows += 1
        return {"seconds": time.perf_counter() - start, "rows": rows}
    if step == "pyarrow":
        import pyarrow.csv as pacsv

        rows = 0
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                with z.open(info) as raw:
                    skip = 3 if info.filename.endswith("Connections.csv") else 0
                    table = pacsv.read_csv(
                        raw,
                        read_options=pacsv.ReadOptions(skip_rows=skip),
                        parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    )
                    rows += table.num_rows
        return {"seconds": time.perf_counter() - start, "rows": rows}
    from consentgate.decisions import DecisionEngine
    from consentgate.inspect.inspector import inspect_archive
    from consentgate.policy import load_timeline
    from consentgate.taxonomy import load_taxonomy
    from consentgate.timeutil import parse_instant

    engine = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))
    result = inspect_archive([archive], engine=engine, at=parse_instant("2025-11-04"), country="DE")
    files = json.loads(json.dumps(result.to_dict()))["files"]  # what `inspect --json` prints
    return {"seconds": time.perf_counter() - start, "rows": sum(f["records"] for f in files)}


def measure(step: str, archive: Path) -> dict[str, object]:
    argv = [sys.executable, __file__, "--worker", step, "--archive", str(archive)]
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert child.stdout is not None
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    result: dict[str, object] = json.loads(stdout)
    result.update(process_seconds=wall, peak_rss_mb=usage.ru_maxrss / 1024)
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--connections", type=int, default=100_000)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--archive", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.archive)))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    archive = OUT / f"export-{args.messages}-{args.connections}.zip"
    if not archive.exists():
        print(f"making {archive} ...", file=sys.stderr)
        make(archive, args.messages, args.connections)
    size = archive.stat().st_size
    with archive.open("rb") as handle:  # the same page cache for every step
        while handle.read(1 << 24):
            pass
    results = {}
    for step in ("csv", "pyarrow", "inspect"):
        results[step] = measure(step, archive)
        print(f"{step}: {json.dumps(results[step])}", file=sys.stderr)
    print(f"\n{size / 1e6:,.0f} MB archive, {args.messages:,} messages, {args.connections:,} connections\n")
    print("| step | seconds | MB/s | rows | peak RSS | vs csv |")
    print("|---|---|---|---|---|---|")
    base = float(results["csv"]["seconds"])  # type: ignore[arg-type]
    for step, r in results.items():
        seconds = float(r["seconds"])  # type: ignore[arg-type]
        rss = float(r["peak_rss_mb"])  # type: ignore[arg-type]
        print(
            f"| {step} | {seconds:.2f} | {size / 1e6 / seconds:,.0f} | {r['rows']:,} | {rss:,.0f} MB"
            f" | {seconds / base:.2f}× |"
        )
    (OUT / "results.json").write_text(json.dumps({"size": size, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
