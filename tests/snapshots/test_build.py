"""``build_snapshot``: agreement with ``decide()``, determinism, atomic publication, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from consentgate.decisions.engine import DecisionEngine, decide
from consentgate.exceptions import ConsentgateError
from consentgate.ledger.mirror import EventMirror
from consentgate.ledger.schema import build_leases
from consentgate.ledger.store import Ledger
from consentgate.snapshots.engines.duckdb_engine import DuckDBEngine
from consentgate.snapshots.openlineage import FACET_KEY
from consentgate.snapshots.registry import Registry
from tests.conftest import FixedClock, at
from tests.snapshots.conftest import (
    CHANGE,
    T_NEXT_DAY,
    MakeNetwork,
    Network,
    assert_nothing_published,
    build,
    hidden,
    openlineage_events,
    visible,
)

SCENARIOS = [
    ("genai.training", "2025-10-01T00:00:00Z"),
    ("genai.training", CHANGE),
    ("genai.training", T_NEXT_DAY),
    ("ads.affiliate_sharing", T_NEXT_DAY),
    ("ads.affiliate_sharing", "2025-10-01T00:00:00Z"),
    ("ads.personalization", T_NEXT_DAY),
    ("ads.affiliate_data", "2025-12-01T00:00:00Z"),  # the inbound gate
]


def snapshot_rows(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for part in sorted((path / "records").glob("*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


def digests(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# -- 1. the bulk path agrees with decide() ----------------------------------------------------------


@pytest.mark.parametrize("older_watermark", [False, True], ids=["head", "older-watermark"])
@pytest.mark.parametrize(("purpose", "as_of"), SCENARIOS)
def test_snapshot_agrees_with_decide_record_by_record(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    purpose: str,
    as_of: str,
    older_watermark: bool,
) -> None:
    """A record is in the snapshot iff decide() allows it; every exclusion is counted under decide()'s
    first denying reason; included counts per category, lineage and payload match too."""
    net = make_network(ledger)
    watermark = net.watermark_early if older_watermark else None
    # The mirror already holds events beyond the watermark (as after an earlier build at the head):
    # the build must still read only up to its watermark.
    EventMirror(ledger, tmp_path / "events").sync(net.head)
    result = build(
        ledger, engine, net.root, tmp_path / "out", purpose=purpose, as_of=as_of, watermark=watermark
    )
    when = at(as_of)

    expected_rows: list[dict[str, object]] = []
    included: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    lineage: Counter[tuple[int, str]] = Counter()
    for row in net.rows():
        member, category, created = row["member_id"], row["category"], row["created_at"]
        assert isinstance(member, int) and isinstance(category, str) and isinstance(created, datetime)
        decision = decide(
            engine, ledger, member, category, purpose, when, watermark=watermark, created_at=created
        )
        if decision.allowed:
            expected_rows.append(row)
            included[category] += 1
            lineage[(member, category)] += 1
        else:
            excluded[next(str(r.code) for r in decision.reasons if r.denies)] += 1

    assert snapshot_rows(result.path) == expected_rows  # the same records, payload intact, in input order
    counts = result.manifest["counts"]
    assert counts["excluded_by_reason"] == dict(sorted(excluded.items()))
    assert counts["included_by_category"] == dict(sorted(included.items()))
    assert counts["records_in"] == net.records.num_rows
    assert counts["records_included"] == len(expected_rows)
    assert counts["members_included"] == len({m for m, _ in lineage})
    members = pq.read_table(result.path / "members.parquet").to_pylist()
    assert {(r["member_id"], r["category"]): r["records"] for r in members} == dict(lineage)
    assert result.manifest["ledger"]["watermark"] == (net.head if watermark is None else watermark)
    assert result.manifest["purpose"] == purpose
    assert result.manifest["as_of"] == as_of


def test_the_network_exercises_every_reason(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """The agreement test means something: the network hits every exclusion reason and both policies."""
    net = make_network(sqlite_ledger)
    genai = build(sqlite_ledger, engine, net.root, tmp_path / "a")
    assert set(genai.manifest["counts"]["excluded_by_reason"]) >= {
        "category_never_used",
        "category_out_of_scope",
        "member_minor",
        "objection_pending",
        "objection_upheld",
        "record_after_as_of",
        "region_excluded",
        "setting_off",
        "unknown_category",
        "unknown_member",
    }
    before = build(sqlite_ledger, engine, net.root, tmp_path / "b", as_of="2025-10-01T00:00:00Z")
    assert before.manifest["policy"]["id"] == "linkedin-2024-09"
    assert genai.manifest["policy"]["id"] == "linkedin-2025-11"
    ads = build(sqlite_ledger, engine, net.root, tmp_path / "c", purpose="ads.personalization")
    assert {"setting_off", "objection_upheld", "consent_not_given"} <= set(
        ads.manifest["counts"]["excluded_by_reason"]
    )
    older = build(sqlite_ledger, engine, net.root, tmp_path / "d", watermark=net.watermark_early)
    assert older.manifest["counts"] != genai.manifest["counts"]  # the back-dated opt-out and more


def test_edges_at_the_change_instant(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """As of exactly 2025-11-03T00:00Z: a record created at T is in, one a microsecond later is not; a
    member turning 18 that day is in; an opt-out effective at T holds; an EEA adult is in."""
    net = make_network(sqlite_ledger)
    result = build(sqlite_ledger, engine, net.root, tmp_path / "out", as_of=CHANGE)
    rows = snapshot_rows(result.path)
    by_member = Counter(r["member_id"] for r in rows)
    assert by_member[net.ids["eea_adult"]] > 0
    assert by_member[net.ids["eea_turns_18_on_change"]] > 0
    assert by_member[net.ids["uk_optout_at_change"]] == 0
    assert by_member[net.ids["row_registered_after_change"]] == 0
    created = {r["created_at"] for r in rows}
    assert at(CHANGE) in created
    assert all(c <= at(CHANGE) for c in created)  # type: ignore[operator]


# -- 2. determinism ---------------------------------------------------------------------------------


def test_same_inputs_give_the_same_bytes_and_a_reproduced_build(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """Two builds into two OUT folders: byte-identical files; the second reports reproduced; the id
    changes with the watermark, the as-of time and the purpose."""
    net = make_network(sqlite_ledger)
    first = build(sqlite_ledger, engine, net.root, tmp_path / "a")
    second = build(sqlite_ledger, engine, net.root, tmp_path / "b")
    assert first.snapshot_id == second.snapshot_id
    assert (first.reproduced, second.reproduced) == (False, True)
    assert first.path == tmp_path / "a" / first.snapshot_id
    one, two = digests(first.path), digests(second.path)
    assert sorted(one) == [
        "manifest.json",
        "members.parquet",
        "records/part-00000.parquet",
        "records/part-00001.parquet",
    ]
    assert one == two
    assert json.loads(one["manifest.json"]) == first.manifest
    ids = {
        first.snapshot_id,
        build(sqlite_ledger, engine, net.root, tmp_path / "c", watermark=net.watermark_early).snapshot_id,
        build(sqlite_ledger, engine, net.root, tmp_path / "d", as_of="2025-11-05T00:00:00Z").snapshot_id,
        build(sqlite_ledger, engine, net.root, tmp_path / "e", purpose="ads.personalization").snapshot_id,
    }
    assert len(ids) == 4
    assert len(Registry(sqlite_ledger).snapshots()) == 4


# -- 3. atomic publication ------------------------------------------------------------------------


def test_failed_builds_publish_and_register_nothing(
    sqlite_ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A corrupt records file, a duplicate record id, an engine crash after writing and a failed
    registration after the rename: no OUT/<id>, no .partial folder, nothing registered."""
    net = make_network(sqlite_ledger)
    out = tmp_path / "out"
    good = net.record_files[1].read_bytes()

    net.record_files[1].write_bytes(os.urandom(4000))
    with pytest.raises(ConsentgateError, match="not a readable Parquet file"):
        build(sqlite_ledger, engine, net.root, out)
    assert_nothing_published(out, sqlite_ledger)

    table = pq.read_table(net.record_files[0])
    pq.write_table(table.slice(0, 10), net.record_files[1])  # the same record ids again
    with pytest.raises(ConsentgateError, match="duplicate value"):
        build(sqlite_ledger, engine, net.root, out)
    assert_nothing_published(out, sqlite_ledger)
    net.record_files[1].write_bytes(good)

    original_run = DuckDBEngine.run

    def crash(self: DuckDBEngine, job: object, progress: object = None) -> object:
        original_run(self, job, progress)  # type: ignore[arg-type]
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(DuckDBEngine, "run", crash)
        with pytest.raises(OSError, match="disk full"):
            build(sqlite_ledger, engine, net.root, out)
    assert_nothing_published(out, sqlite_ledger)

    def register_then_fail(self: Registry, entry: object, *, publish: Callable[[], None]) -> None:
        publish()
        assert visible(out) != []  # the rename happened ...
        raise RuntimeError("commit failed")  # ... and the transaction did not

    with monkeypatch.context() as patch:
        patch.setattr(Registry, "register", register_then_fail)
        with pytest.raises(ConsentgateError, match=r"registering .* failed, nothing published"):
            build(sqlite_ledger, engine, net.root, out)
    assert_nothing_published(out, sqlite_ledger)

    result = build(sqlite_ledger, engine, net.root, out)  # and then it works
    assert visible(out) == [result.snapshot_id]
    assert [e.snapshot_id for e in Registry(sqlite_ledger).snapshots()] == [result.snapshot_id]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    env["COLUMNS"] = "200"
    return env


def cg(db: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "consentgate", "--db", db, *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=cwd, env=_env(), check=False
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2, one ``error: …`` line on stderr, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def write_big_records(folder: Path, member_ids: list[int], rows: int, files: int) -> None:
    """Millions of short records, written fast (uncompressed): the build then takes a few seconds."""
    (folder / "records").mkdir(parents=True)
    categories = pa.array(
        ["profile.skills", "content.posts", "messages.private", "profile.name", "x.unknown"]
    )
    rng = np.random.default_rng(7)
    per = rows // files
    members = np.array([*member_ids, 999_999], dtype=np.int64)
    for index in range(files):
        created = rng.integers(1_700_000_000_000_000, 1_765_000_000_000_000, per, dtype=np.int64)
        table = pa.table(
            {
                "record_id": np.arange(index * per + 1, (index + 1) * per + 1, dtype=np.int64),
                "member_id": members[rng.integers(0, len(members), per)],
                "category": categories.take(pa.array(rng.integers(0, len(categories), per))),
                "created_at": pa.array(created, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            }
        )
        pq.write_table(table, folder / "records" / f"part-{index}.parquet", compression="none")


def test_a_killed_build_leaves_nothing_visible_and_the_next_build_cleans_up(
    tmp_path: Path, engine: DecisionEngine, make_network: MakeNetwork
) -> None:
    """SIGKILL in the middle of writing records: only the hidden partial folder (and the lineage log)
    remain, nothing is registered; the next build removes the partial folder and publishes the same
    bytes as a reference build."""
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    ledger = Ledger.open(url, clock=FixedClock(), initialise=True)
    try:
        net = make_network(ledger)
        data = tmp_path / "big"
        write_big_records(data, sorted(net.ids.values()), rows=4_000_000, files=4)
        out = tmp_path / "out"
        args = ["snapshot", "build", "--data", str(data), "--purpose", "genai.training"]
        args += ["--as-of", T_NEXT_DAY, "--watermark", str(net.head), "--out", str(out), "--json"]
        process = subprocess.Popen(
            [sys.executable, "-m", "consentgate", "--db", url, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=_env(),
        )
        deadline = time.monotonic() + 60
        partial: Path | None = None
        while time.monotonic() < deadline and process.poll() is None:
            found = sorted(out.glob(".snapshot-*.partial/records/part-*.parquet")) if out.exists() else []
            if found:
                partial = found[0].parent.parent
                break
            time.sleep(0.005)
        assert partial is not None, f"no partial records appeared; exit {process.poll()}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert process.stderr is not None
        process.stderr.close()

        assert sorted(p.name for p in out.iterdir()) == sorted([partial.name, "openlineage.jsonl"])
        assert visible(out) == []
        assert Registry(ledger).snapshots() == []

        # The killed build's lease is still running: the same build into the same OUT waits for it
        # or says who holds it; its folder is not touched (it could be a live build on another host).
        refused = cg(url, *args, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "is in progress: lease" in refused.stderr and f"pid {process.pid} on" in refused.stderr
        assert partial.is_dir()
        # Once the lease has run out (not renewed for LEASE_SECONDS), the next build cleans up.
        with ledger.engine.begin() as conn:
            conn.execute(update(build_leases).values(expires_at=0))

        reference = build(ledger, engine, data, tmp_path / "reference", watermark=net.head)
        assert not reference.reproduced
        rebuilt = json.loads(_ok(cg(url, *args, cwd=tmp_path)))
        assert rebuilt["reproduced"] is True
        assert rebuilt["snapshot_id"] == reference.snapshot_id
        assert sorted(p.name for p in out.iterdir()) == sorted([reference.snapshot_id, "openlineage.jsonl"])
        assert digests(out / reference.snapshot_id) == digests(reference.path)
        assert [e.snapshot_id for e in Registry(ledger).snapshots()] == [reference.snapshot_id]
    finally:
        ledger.close()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


# -- 4. bad input -----------------------------------------------------------------------------------

Mutation = Callable[[Network], object]


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table], **options: object) -> None:
    pq.write_table(change(pq.read_table(path)), path, **options)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _null_first(table: pa.Table, name: str) -> pa.Table:
    values = table[name].to_pylist()
    values[0] = None
    return _set(table, name, pa.array(values, table.schema.field(name).type))


BAD_INPUT: dict[str, tuple[Mutation, list[str]]] = {
    "missing column": (
        lambda n: _rewrite(n.record_files[0], lambda t: t.drop_columns(["category"])),
        ["part-0.parquet: missing column(s) category"],
    ),
    "extra column in one file": (
        lambda n: _rewrite(n.record_files[1], lambda t: t.append_column("extra", pa.array([1] * t.num_rows))),
        ["part-1.parquet: columns differ from part-0.parquet: extra column(s) extra"],
    ),
    "member_id as string": (
        lambda n: _rewrite(
            n.record_files[0], lambda t: _set(t, "member_id", t["member_id"].cast(pa.string()))
        ),
        ["part-0.parquet: column 'member_id': expected an integer (int64), got string"],
    ),
    "created_at naive": (
        lambda n: _rewrite(
            n.record_files[1], lambda t: _set(t, "created_at", t["created_at"].cast(pa.timestamp("us")))
        ),
        ["part-1.parquet: column 'created_at': expected a timestamp with time zone UTC, got timestamp[us]"],
    ),
    "created_at as string": (
        lambda n: _rewrite(
            n.record_files[1], lambda t: _set(t, "created_at", t["created_at"].cast(pa.string()))
        ),
        ["part-1.parquet: column 'created_at': expected a timestamp with time zone UTC, got string"],
    ),
    "null record_id": (
        lambda n: _rewrite(n.record_files[1], lambda t: _null_first(t, "record_id")),
        ["part-1.parquet: column 'record_id': 1 row(s) without a value"],
    ),
    "null record_id, no statistics": (
        lambda n: _rewrite(n.record_files[1], lambda t: _null_first(t, "record_id"), write_statistics=False),
        ["part-1.parquet: column 'record_id': 1 row(s) without a value"],
    ),
    "null created_at, no statistics": (
        lambda n: _rewrite(n.record_files[0], lambda t: _null_first(t, "created_at"), write_statistics=False),
        ["part-0.parquet: column 'created_at': 1 row(s) without a value"],
    ),
    "duplicate record_id across files": (
        lambda n: _rewrite(
            n.record_files[1], lambda t: _set(t, "record_id", pa.array([1, *t["record_id"].to_pylist()[1:]]))
        ),
        ["part-0.parquet", "part-1.parquet", "column 'record_id': duplicate value 1"],
    ),
    "corrupt parquet": (
        lambda n: n.record_files[1].write_bytes(os.urandom(2048)),
        ["part-1.parquet: not a readable Parquet file"],
    ),
    "a damaged data page (the footer intact)": (
        lambda n: _damage_pages(n.record_files[1]),
        ["part-1.parquet: a damaged Parquet file (", "nothing was published"],
    ),
    "no records folder": (
        lambda n: shutil.rmtree(n.records_dir),
        ["no records in", "records (expected records/*.parquet)"],
    ),
    "members.parquet with an extra column": (
        lambda n: _rewrite(n.members_file, lambda t: t.append_column("email", pa.array(["x"] * t.num_rows))),
        ["members.parquet: expected columns member_id, country, birth_date, believed_minor; extra email"],
    ),
}


def _damage_pages(path: Path) -> None:
    """Overwrite the first data page's header: the footer (schema, row groups) still reads."""
    data = bytearray(path.read_bytes())
    data[4:200] = b"\xff" * 196
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_naming_file_and_column(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path, case: str
) -> None:
    """Each defect is refused with a message that names the file and the column; nothing is published."""
    net = make_network(sqlite_ledger)
    mutate, expected = BAD_INPUT[case]
    mutate(net)
    out = tmp_path / "out"
    with pytest.raises(ConsentgateError) as error:
        build(sqlite_ledger, engine, net.root, out)
    message = str(error.value)
    for part in expected:
        assert part in message, message
    assert visible(out) == [] and hidden(out) == []
    assert Registry(sqlite_ledger).snapshots() == []


def test_unknown_purpose_and_a_watermark_beyond_the_head_are_refused(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(sqlite_ledger)
    with pytest.raises(ConsentgateError, match=r"unknown purpose 'genai\.trainig'"):
        build(sqlite_ledger, engine, net.root, tmp_path / "out", purpose="genai.trainig")
    with pytest.raises(
        ConsentgateError,
        match=rf"--watermark: expected a seq between 0 and the ledger's head {net.head}, got {net.head + 1}",
    ):
        build(sqlite_ledger, engine, net.root, tmp_path / "out", watermark=net.head + 1)
    assert visible(tmp_path / "out") == []
    assert Registry(sqlite_ledger).snapshots() == []


def test_unknown_categories_and_members_are_excluded_and_counted_not_errors(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(sqlite_ledger)
    result = build(sqlite_ledger, engine, net.root, tmp_path / "out")
    rows = net.rows()
    unknown_category = Counter(r["category"] for r in rows if r["category"] in net.unknown_categories)
    unknown_member = [
        r
        for r in rows
        if r["member_id"] in net.unknown_members and r["category"] not in net.unknown_categories
    ]
    counts = result.manifest["counts"]
    assert counts["unknown_categories"] == dict(unknown_category)
    assert counts["unknown_categories_not_listed"] == 0
    assert counts["excluded_by_reason"]["unknown_category"] == sum(unknown_category.values())
    assert counts["excluded_by_reason"]["unknown_member"] == len(unknown_member) > 0
    kept = snapshot_rows(result.path)
    assert not {r["member_id"] for r in kept} & set(net.unknown_members)
    assert not {r["category"] for r in kept} & set(net.unknown_categories)


def test_bad_input_through_the_cli_is_one_error_line(
    sqlite_ledger: Ledger, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """``consentgate snapshot build`` with bad input: ``error: …`` on stderr, exit status 2, no traceback."""
    net = make_network(sqlite_ledger)
    url = str(sqlite_ledger.engine.url)
    out = tmp_path / "out"
    common = ("snapshot", "build", "--data", str(net.root), "--as-of", T_NEXT_DAY, "--out", str(out))

    line = error_line(cg(url, *common, "--purpose", "genai.training", "--watermark", "100000", cwd=tmp_path))
    assert f"--watermark: expected a seq between 0 and the ledger's head {net.head}, got 100000" in line

    _rewrite(net.record_files[0], lambda t: _set(t, "member_id", t["member_id"].cast(pa.string())))
    line = error_line(cg(url, *common, "--purpose", "genai.training", cwd=tmp_path))
    assert f"{net.record_files[0]}: column 'member_id': expected an integer (int64), got string" in line

    down = cg("postgresql://nobody@127.0.0.1:1/none", *common, "--purpose", "genai.training", cwd=tmp_path)
    assert down.returncode == 69 and "Traceback" not in down.stderr  # a database that is down: try again
    assert down.stderr.startswith("error: the ledger postgresql://nobody@127.0.0.1:1/none is not reachable")
    assert visible(out) == [] and hidden(out) == []
    assert Registry(sqlite_ledger).snapshots() == []


# -- 6. OpenLineage -----------------------------------------------------------------------------------


def test_openlineage_start_and_complete_with_the_consentgate_facet(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(sqlite_ledger)
    out = tmp_path / "out"
    result = build(sqlite_ledger, engine, net.root, out, watermark=net.watermark_early)
    start, complete = openlineage_events(out)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]  # type: ignore[index]
    inputs = {(d["namespace"], d["name"]) for d in complete["inputs"]}  # type: ignore[attr-defined]
    host = f"file://{socket.gethostname()}"  # OpenLineage's naming: the storage, then the path
    assert (host, str((net.root / "records").resolve())) in inputs
    assert (host, str(net.members_file.resolve())) in inputs
    ledger_file = str(Path(str(sqlite_ledger.engine.url.database)).resolve())
    assert (host, ledger_file) in inputs
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [  # type: ignore[attr-defined]
        (host, str(result.path.resolve()))
    ]
    assert start["outputs"] == []
    facet = complete["run"]["facets"][FACET_KEY]  # type: ignore[index]
    assert facet["policyId"] == "linkedin-2025-11"
    assert facet["policyVersion"] == result.manifest["policy"]["version"]
    assert facet["asOf"] == T_NEXT_DAY
    assert facet["watermark"] == net.watermark_early
    assert facet["purpose"] == "genai.training"
    assert facet["snapshotId"] == result.snapshot_id
    assert start["run"]["facets"][FACET_KEY]["watermark"] == net.watermark_early  # type: ignore[index]
    job = complete["job"]
    assert isinstance(job, dict)
    assert (job["namespace"], job["name"]) == ("consentgate", "snapshot.genai.training")


def test_openlineage_start_and_fail_for_a_failed_build(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(sqlite_ledger)
    _rewrite(
        net.record_files[1], lambda t: _set(t, "record_id", pa.array([1, *t["record_id"].to_pylist()[1:]]))
    )
    out = tmp_path / "out"
    with pytest.raises(ConsentgateError):
        build(sqlite_ledger, engine, net.root, out)
    start, fail = openlineage_events(out)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert start["run"]["runId"] == fail["run"]["runId"]  # type: ignore[index]
    assert fail["outputs"] == []
    assert fail["run"]["facets"][FACET_KEY]["asOf"] == T_NEXT_DAY  # type: ignore[index]


def test_created_at_in_nanoseconds_builds_the_same_snapshot(
    sqlite_ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """timestamp[ns, UTC] (pandas' default) is read like timestamp[us, UTC], not a binder error."""
    net = make_network(sqlite_ledger)
    micro = build(sqlite_ledger, engine, net.root, tmp_path / "us")
    for path in net.record_files:
        _rewrite(
            path, lambda t: _set(t, "created_at", pc.cast(t["created_at"], pa.timestamp("ns", tz="UTC")))
        )
    nano = build(sqlite_ledger, engine, net.root, tmp_path / "ns")
    assert nano.manifest["counts"] == micro.manifest["counts"]
