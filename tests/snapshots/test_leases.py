"""Leases, not PIDs: a build in progress is known by its lease in the registry database, on every
host that shares OUT and the database; only a lease that ran out lets its folder be removed.

Each test runs against SQLite and PostgreSQL (the ``ledger`` fixture).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import ConsentgateError
from consentgate.ledger.schema import build_leases
from consentgate.ledger.store import Ledger
from consentgate.snapshots import build as build_module
from consentgate.snapshots.build import BuildRequest, build_snapshot
from consentgate.snapshots.leases import (
    LEASE_SECONDS,
    ORPHAN_SECONDS,
    BuildInProgress,
    Lease,
    LeaseLost,
    build_key,
)
from consentgate.snapshots.registry import Registry
from consentgate.timeutil import now_utc, to_micros
from tests.conftest import at
from tests.snapshots.conftest import (
    T_NEXT_DAY,
    MakeNetwork,
    assert_nothing_published,
    build,
    openlineage_events,
    visible,
)

OTHER_DAY = "2025-11-05T00:00:00Z"


def _foreign_lease(ledger: Ledger, out: Path, *, watermark: int, as_of: str, expires_in: float) -> Path:
    """A lease as another host's build holds it, with its unpublished folder in OUT."""
    lease_id = "ab" * 16
    folder = out / f".snapshot-{lease_id}.partial"
    (folder / "records").mkdir(parents=True)
    (folder / "records" / "part-00000.parquet").write_bytes(b"half written")
    now = to_micros(now_utc())
    with ledger.engine.begin() as conn:
        conn.execute(
            insert(build_leases).values(
                lease_id=lease_id,
                build_key=build_key(out, "snapshot", "genai.training", at(as_of), watermark),
                folder=str(folder),
                description="snapshot of genai.training",
                host="builder-b.example",
                pid=4242,
                acquired_at=now,
                expires_at=now + int(expires_in * 1_000_000),
            )
        )
    return folder


def test_a_build_on_another_host_is_neither_removed_nor_doubled(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(ledger)
    out = tmp_path / "out"
    out.mkdir()
    foreign = _foreign_lease(ledger, out, watermark=net.head, as_of=T_NEXT_DAY, expires_in=LEASE_SECONDS)

    with pytest.raises(BuildInProgress, match=r"pid 4242 on builder-b\.example since .*; nothing was built"):
        build(ledger, engine, net.root, out, watermark=net.head)
    assert foreign.is_dir() and Registry(ledger).snapshots() == []

    # Another result into the same OUT builds beside it and leaves the live build's folder alone.
    other = build(ledger, engine, net.root, out, watermark=net.head, as_of=OTHER_DAY)
    assert visible(out) == [other.snapshot_id]
    assert (foreign / "records" / "part-00000.parquet").read_bytes() == b"half written"

    # Once that lease has run out (host B is gone), the next build removes its folder and builds.
    with ledger.engine.begin() as conn:
        conn.execute(update(build_leases).values(expires_at=to_micros(now_utc()) - 1))
    built = build(ledger, engine, net.root, out, watermark=net.head)
    assert not foreign.exists()
    assert sorted(visible(out)) == sorted([other.snapshot_id, built.snapshot_id])
    with ledger.engine.connect() as conn:
        assert conn.execute(select(build_leases)).all() == []  # every build gave its lease back


def test_a_second_build_waits_for_the_first_and_reproduces_it(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    net = make_network(ledger)
    out = tmp_path / "out"
    out.mkdir()
    first = build(ledger, engine, net.root, out, watermark=net.head)
    held = Lease.acquire(
        ledger, out=out, kind="snapshot", purpose="genai.training", as_of=at(T_NEXT_DAY), watermark=net.head
    )
    threading.Timer(1.5, held.release).start()
    request = BuildRequest(
        data=net.root,
        purpose="genai.training",
        as_of=at(T_NEXT_DAY),
        out=out,
        watermark=net.head,
        events_dir=out.parent / "events",
        wait=30,
    )
    started = time.monotonic()
    again = build_snapshot(request, ledger=ledger, engine=engine)
    assert time.monotonic() - started >= 1.0  # it waited for the holder
    assert again.reproduced and again.snapshot_id == first.snapshot_id
    assert visible(out) == [first.snapshot_id]


def test_two_builds_racing_for_one_lease_never_both_win(ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for round_ in range(8):
        barrier = threading.Barrier(2)
        won: list[Lease] = []
        refused: list[BuildInProgress] = []

        def contend(
            round_: int = round_,
            barrier: threading.Barrier = barrier,
            won: list[Lease] = won,
            refused: list[BuildInProgress] = refused,
        ) -> None:
            barrier.wait()
            try:
                won.append(
                    Lease.acquire(
                        ledger,
                        out=out,
                        kind="snapshot",
                        purpose="genai.training",
                        as_of=at(T_NEXT_DAY),
                        watermark=round_,
                    )
                )
            except BuildInProgress as exc:
                refused.append(exc)

        threads = [threading.Thread(target=contend) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (len(won), len(refused)) == (1, 1), round_
        won[0].release()


def test_a_build_whose_lease_ran_out_publishes_nothing(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database was out of reach for longer than the lease: another build may own OUT now."""
    net = make_network(ledger)
    out = tmp_path / "out"

    def lease_runs_out(work: Path) -> None:
        with ledger.engine.begin() as conn:
            conn.execute(update(build_leases).values(expires_at=to_micros(now_utc()) - 1))

    monkeypatch.setattr(build_module, "AFTER_ENGINE", lease_runs_out)
    with pytest.raises(LeaseLost, match=r"ran out before it published .*; nothing published"):
        build(ledger, engine, net.root, out, watermark=net.head)
    assert_nothing_published(out, ledger)
    assert [e["eventType"] for e in openlineage_events(out)] == ["START", "FAIL"]

    monkeypatch.setattr(build_module, "AFTER_ENGINE", None)
    built = build(ledger, engine, net.root, out, watermark=net.head)
    assert visible(out) == [built.snapshot_id]


def test_a_folder_no_lease_names_is_removed_only_when_a_day_old(
    ledger: Ledger, engine: DecisionEngine, make_network: MakeNetwork, tmp_path: Path
) -> None:
    """An older consentgate's ``.snapshot-<pid>-<hex>.partial`` or a folder whose lease row is lost."""
    net = make_network(ledger)
    out = tmp_path / "out"
    young = out / f".snapshot-{'cd' * 16}.partial"
    old = out / f".snapshot-{os.getpid()}-deadbeef.partial"  # a live PID: it used to keep it forever
    for folder in (young, old):
        folder.mkdir(parents=True)
    aged = time.time() - ORPHAN_SECONDS - 60
    os.utime(old, (aged, aged))
    built = build(ledger, engine, net.root, out, watermark=net.head)
    assert young.is_dir() and not old.exists()
    assert visible(out) == [built.snapshot_id]


def test_an_output_folder_deleted_under_a_running_build_publishes_nothing(
    ledger: Ledger,
    engine: DecisionEngine,
    make_network: MakeNetwork,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone (a cleaner that ignores leases, a person) removes the unpublished folder mid-build."""
    net = make_network(ledger)
    out = tmp_path / "out"
    monkeypatch.setattr(build_module, "AFTER_ENGINE", lambda work: shutil.rmtree(work))
    with pytest.raises((ConsentgateError, OSError)):
        build(ledger, engine, net.root, out, watermark=net.head)
    assert_nothing_published(out, ledger)
    with ledger.engine.connect() as conn:
        assert conn.execute(select(build_leases)).all() == []  # the lease was given up
    monkeypatch.setattr(build_module, "AFTER_ENGINE", None)
    later = build(ledger, engine, net.root, out, watermark=net.head)
    assert visible(out) == [later.snapshot_id]
