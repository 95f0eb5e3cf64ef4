"""Snapshots to and from an object store: a real S3 endpoint (moto's server mode), and a proxy in
front of it for the faults real stores have (500s, slowness, refused keys, read-only buckets).

Publication on a store (docs/snapshots.md): the files under ``OUT/<id>.<lease>`` with the manifest
last, the registry commit, then ``_PUBLISHED``; readers ignore a prefix without the marker.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import ConsentgateError, InputError, ProofError
from consentgate.ledger.store import Ledger
from consentgate.snapshots import stores
from consentgate.snapshots.build import BuildRequest, BuildResult, build_snapshot
from consentgate.snapshots.leases import BuildInProgress, Lease
from consentgate.snapshots.refresh import RefreshRequest, refresh_snapshot
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.verify import verify_snapshot
from consentgate.training.loader import open_snapshot_run
from tests.conftest import FixedClock, Store, at
from tests.helpers import FaultyStore, cg, ok, one_error_line
from tests.snapshots.conftest import T_NEXT_DAY, MakeNetwork


def _ledger(tmp_path: Path, name: str) -> Ledger:
    return Ledger.open(f"sqlite:///{tmp_path / name}", clock=FixedClock(), initialise=True)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = _ledger(tmp_path, "ledger.db")
    yield opened
    opened.close()


LATER = "2025-12-01T00:00:00Z"
"""An as-of after every opt-out of the network: a snapshot without debt now, which training may read."""


def _build(
    ledger: Ledger,
    decisions: DecisionEngine,
    data: Path | str,
    out: Path | str,
    events: Path,
    as_of: str = T_NEXT_DAY,
    **extra: Any,
) -> BuildResult:
    request = BuildRequest(
        data=data, purpose="genai.training", as_of=at(as_of), out=out, events_dir=events, **extra
    )
    return build_snapshot(request, ledger=ledger, engine=decisions)


def _prefixes(store: Store, under: str) -> list[str]:
    found = {key[len(under) + 1 :].split("/", 1)[0] for key in store.keys(under + "/")}
    return sorted(found - {""})  # "snaps/" itself: pyarrow's marker of an emptied folder


def _nothing_published(store: Store, ledger: Ledger) -> None:
    assert Registry(ledger).snapshots() == []
    # pyarrow keeps an empty "snaps/" marker when it deletes the last object under it (the probe)
    assert [k for k in store.keys("snaps/") if not k.endswith("/")] == []


# -- end to end ---------------------------------------------------------------------------------


def test_a_build_from_and_to_s3_equals_the_local_build_byte_for_byte(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine
) -> None:
    here = _ledger(tmp_path, "here.db")
    there = _ledger(tmp_path, "there.db")
    net = make_network(here)
    make_network(there, root=tmp_path / "unused")  # the same events in a second ledger
    store.put_tree(net.root, "net")
    local = _build(here, engine, net.root, tmp_path / "out", tmp_path / "ev-here")
    remote = _build(there, engine, store.uri("net"), store.uri("snaps"), tmp_path / "ev-there")

    # Two ledgers hash their (equal) histories differently (event ids); all else is equal: the
    # inputs by name and fingerprint, not by place, and the outputs byte for byte.
    a, b = local.manifest, remote.manifest
    ledger_bound = {"ledger", "identity_digest", "snapshot_id"}
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == ledger_bound
    assert a["content_digest"] == b["content_digest"] and a["inputs"] == b["inputs"]
    assert remote.reproduced is False
    [prefix] = _prefixes(store, "snaps")
    assert prefix.startswith(remote.snapshot_id + ".")
    assert remote.location == store.uri("snaps", prefix)
    names = store.keys(f"snaps/{prefix}/")
    listed = json.loads((local.path / "manifest.json").read_bytes())["outputs"]
    expected = sorted(
        f"snaps/{prefix}/{name}"
        for name in [*(r["file"] for r in listed["records"]), listed["members"]["file"], "manifest.json"]
    )
    assert names == sorted([*expected, f"snaps/{prefix}/_PUBLISHED"])
    for key in expected:
        name = key.split("/", 2)[2]
        if name == "manifest.json":
            assert json.loads(store.get(key)) == remote.manifest
        else:
            assert store.get(key) == (local.path / name).read_bytes(), name
    marker = json.loads(store.get(f"snaps/{prefix}/_PUBLISHED"))
    entry = Registry(there).require(remote.snapshot_id)
    assert marker == {"snapshot_id": remote.snapshot_id, "manifest_sha256": entry.manifest_sha256}
    assert entry.uri == remote.location and entry.to_dict()["path"] == remote.location
    # The staged inputs and the unpublished folder are gone; the local copy is the published bytes.
    assert not list((tmp_path / "cache" / "consentgate" / "staging").rglob("*.parquet"))
    assert (entry.path / "manifest.json").read_bytes() == store.get(f"snaps/{prefix}/manifest.json")
    here.close()
    there.close()


def test_readers_use_a_published_snapshot_and_ignore_a_prefix_without_its_marker(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine
) -> None:
    db = tmp_path / "ledger.db"
    ledger = _ledger(tmp_path, "ledger.db")
    net = make_network(ledger)
    ledger.close()
    store.put_tree(net.root, "net")
    url = f"sqlite:///{db}"
    common = ("--events-dir", str(tmp_path / "events"))
    built = json.loads(
        ok(
            cg(
                url, "snapshot", "build", "--data", store.uri("net"), "--purpose", "genai.training",
                "--as-of", LATER, "--out", store.uri("snaps"), *common, "--json", cwd=tmp_path, **store.env,
            )
        )
    )  # fmt: skip
    snapshot_id = built["snapshot_id"]
    assert built["path"].startswith(store.uri("snaps", snapshot_id + "."))
    shown = json.loads(ok(cg(url, "snapshot", "show", snapshot_id, cwd=tmp_path, **store.env)))
    assert shown["registered"]["path"] == built["path"]
    assert shown["manifest"]["counts"] == built["counts"]
    assert "ok" in ok(cg(url, "snapshot", "verify", snapshot_id, cwd=tmp_path, **store.env))
    member = net.ids["eea_adult"]
    lineage = ok(cg(url, "lineage", "member", str(member), cwd=tmp_path, **store.env))
    assert snapshot_id in lineage

    # The training loader reads the published files (through the local copy it verified).
    loaded = open_snapshot_run(snapshot_id, purpose="genai.training", db=url, events_dir=tmp_path / "events")
    assert (
        sum(pq.ParquetFile(f).metadata.num_rows for f in loaded.files) == built["counts"]["records_included"]
    )
    assert loaded.dataset.count_rows() == built["counts"]["records_included"]

    # Without the marker the prefix is not a published snapshot: every reader refuses it.
    prefix = built["path"].removeprefix(f"s3://{store.bucket}/")
    store.delete(f"{prefix}/_PUBLISHED")
    fresh_cache = str(tmp_path / "cache2")
    env = {**store.env, "XDG_CACHE_HOME": fresh_cache}
    verified = cg(url, "snapshot", "verify", snapshot_id, cwd=tmp_path, **env)
    assert verified.returncode != 0
    assert f"{built['path']} has no _PUBLISHED marker" in verified.stdout + verified.stderr
    assert "warning" in ok(cg(url, "lineage", "member", str(member), cwd=tmp_path, **env))
    refused = one_error_line(cg(url, "snapshot", "show", snapshot_id, cwd=tmp_path, **env))
    assert "_PUBLISHED" in refused
    # A build of the same snapshot finds the registered upload intact and writes the marker.
    again = json.loads(
        ok(
            cg(
                url, "snapshot", "build", "--data", store.uri("net"), "--purpose", "genai.training",
                "--as-of", LATER, "--out", store.uri("snaps"), *common, "--json", cwd=tmp_path, **env,
            )
        )
    )  # fmt: skip
    assert again["reproduced"] is True and again["path"] == built["path"]
    assert f"{prefix}/_PUBLISHED" in store.keys(prefix)
    assert "ok" in ok(cg(url, "snapshot", "verify", snapshot_id, cwd=tmp_path, **env))


def test_verify_reads_the_store_not_the_local_copy(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    result = _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events", LATER)
    entry = Registry(ledger).require(result.snapshot_id)
    assert verify_snapshot(entry).ok
    prefix = entry.uri.removeprefix(f"s3://{store.bucket}/")  # type: ignore[union-attr]
    part = next(k for k in store.keys(prefix) if "/records/" in k)
    store.put(part, store.get(part)[:-40] + b"\0" * 40)  # same size, other bytes
    store.put(f"{prefix}/records/part-99999.parquet", store.get(part))
    found = verify_snapshot(entry)
    assert f"hash: s3://{store.bucket}/{part} differs from the manifest (sha256)" in found.problems
    assert f"hash: s3://{store.bucket}/{prefix}/records/part-99999.parquet is not listed in the manifest" in (
        found.problems
    )
    # The training loader checks its local copy, which still holds the published bytes ...
    assert (entry.path / "manifest.json").is_file()
    # ... but a reader on another machine (no copy yet) downloads the tampered file and refuses it.
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(ProofError, match="differs from the manifest"):
        open_snapshot_run(
            result.snapshot_id,
            purpose="genai.training",
            db=f"sqlite:///{tmp_path / 'ledger.db'}",
            events_dir=tmp_path / "events",
        )
    # An edited manifest is named too.
    store.put(f"{prefix}/manifest.json", store.get(f"{prefix}/manifest.json") + b" ")
    assert any("changed since the snapshot was registered" in p for p in verify_snapshot(entry).problems)


def test_openlineage_names_the_bucket_and_the_key(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    store.put_tree(net.root, "net")
    log = tmp_path / "lineage.jsonl"
    result = _build(
        ledger, engine, store.uri("net"), store.uri("snaps"), tmp_path / "events", lineage_url=None
    )
    staging = next((tmp_path / "cache" / "consentgate" / "staging").glob("*/openlineage.jsonl"))
    events = [json.loads(line) for line in staging.read_text().splitlines()]
    complete = next(e for e in events if e["eventType"] == "COMPLETE")
    assert {(d["namespace"], d["name"]) for d in complete["inputs"][:2]} == {
        (f"s3://{store.bucket}", "net/records"),
        (f"s3://{store.bucket}", "net/members.parquet"),
    }
    [output] = complete["outputs"]
    assert output["namespace"] == f"s3://{store.bucket}"
    assert output["name"] == result.location.removeprefix(f"s3://{store.bucket}/")
    assert not log.exists()


def test_refresh_of_a_snapshot_on_s3_publishes_beside_it(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    source = _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events")
    refreshed = refresh_snapshot(
        RefreshRequest(
            snapshot_id=source.snapshot_id, as_of=at("2025-12-01T00:00:00Z"), events_dir=tmp_path / "events"
        ),
        ledger=ledger,
        engine=engine,
    )
    assert refreshed.build.location.startswith(store.uri("snaps", refreshed.snapshot_id + "."))
    assert refreshed.removed  # the late opt-outs are debt at December
    entry = Registry(ledger).require(refreshed.snapshot_id)
    assert entry.derived_from == source.snapshot_id
    assert verify_snapshot(entry).ok


# -- what is left behind, and who builds -------------------------------------------------------


def test_uploads_whose_build_is_gone_are_removed_and_published_ones_stay(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    first = _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events")
    dead = "snaps/genai.training-20251104T000000Z-0123456789ab.0123456789abcdef"
    store.put(f"{dead}/records/part-00000.parquet", b"half an upload")
    unrelated = "snaps/notes/readme.txt"
    store.put(unrelated, b"not ours")
    _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events", watermark=net.watermark_early)
    keys = store.keys("snaps/")
    assert not any(k.startswith(dead) for k in keys)
    assert unrelated in keys
    published = first.location.removeprefix(f"s3://{store.bucket}/")
    assert f"{published}/_PUBLISHED" in keys and f"{published}/manifest.json" in keys


def test_a_build_into_a_prefix_that_another_host_is_building_into_is_refused(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    held = Lease.acquire(
        ledger,
        out=tmp_path / "elsewhere",
        place=store.uri("snaps"),
        kind="snapshot",
        purpose="genai.training",
        as_of=at(T_NEXT_DAY),
        watermark=net.head,
    )
    try:
        with pytest.raises(BuildInProgress, match=f"into {store.uri('snaps')} is in progress"):
            _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events")
    finally:
        held.release()
    _nothing_published(store, ledger)


# -- faults: each a clear error, nothing published, and a later build succeeds -----------------


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"fail": 500}, "the store failed (a 5xx answer)"),
        ({"fail": 503, "only": "manifest.json"}, "the store failed (a 5xx answer)"),
        ({"delay": 3.0}, "the store did not answer in time"),
        ({"access_key": "someone-else"}, "the store refused access"),
        ({"read_only": True}, "the store refused access"),
    ],
    ids=["500", "503-on-the-manifest", "slow", "wrong-key", "read-only"],
)
def test_a_failing_store_publishes_nothing_and_a_later_build_succeeds(
    fault: dict[str, Any],
    says: str,
    store: Store,
    faulty: FaultyStore,
    tmp_path: Path,
    make_network: MakeNetwork,
    engine: DecisionEngine,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = make_network(ledger)
    monkeypatch.setenv("CONSENTGATE_STORE_TIMEOUT", "1")
    for name, value in fault.items():
        setattr(faulty, name, value)
    with pytest.raises(stores.StoreError) as caught:
        _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events")
    message = str(caught.value)
    assert says in message, message
    assert store.uri("snaps") in message
    if fault.get("only") == "manifest.json":
        assert message.endswith("nothing published")
        assert any(m == "PUT" and "/records/" in p for m, p in faulty.requests)  # the parts were up
    _nothing_published(store, ledger)
    faulty.heal()
    result = _build(ledger, engine, net.root, store.uri("snaps"), tmp_path / "events")
    assert verify_snapshot(Registry(ledger).require(result.snapshot_id)).ok


def test_faults_reach_the_user_as_one_line(store: Store, tmp_path: Path, make_network: MakeNetwork) -> None:
    db = tmp_path / "ledger.db"
    ledger = _ledger(tmp_path, "ledger.db")
    net = make_network(ledger)
    ledger.close()
    args = ("snapshot", "build", "--purpose", "genai.training", "--as-of", T_NEXT_DAY)
    url = f"sqlite:///{db}"
    nobody = {**store.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "CONSENTGATE_STORE_TIMEOUT": "2"}
    line = one_error_line(
        cg(url, *args, "--data", str(net.root), "--out", store.uri("snaps"), cwd=tmp_path, **nobody)
    )
    assert "the store cannot be reached" in line and store.uri("snaps") in line
    line = one_error_line(
        cg(
            url,
            *args,
            "--data",
            store.uri("nothing"),
            "--out",
            str(tmp_path / "o"),
            cwd=tmp_path,
            **store.env,
        )
    )
    assert line == f"error: --data: no records in {store.uri('nothing')}/records (expected records/*.parquet)"
    missing_bucket = "s3://no-such-bucket-here/snaps"
    line = one_error_line(
        cg(url, *args, "--data", str(net.root), "--out", missing_bucket, cwd=tmp_path, **store.env)
    )
    assert missing_bucket in line and "bucket" in line
    half = {**store.env, "AWS_SECRET_ACCESS_KEY": ""}
    line = one_error_line(
        cg(url, *args, "--data", str(net.root), "--out", store.uri("snaps"), cwd=tmp_path, **half)
    )
    assert line == "error: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or neither"


def test_a_damaged_input_on_s3_is_named_by_its_uri(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    store.put_tree(net.root, "net")
    store.put("net/records/part-1.parquet", b"PAR1 not really")
    with pytest.raises(InputError) as caught:
        _build(ledger, engine, store.uri("net"), tmp_path / "out", tmp_path / "events")
    assert str(caught.value).startswith(
        f"{store.uri('net', 'records', 'part-1.parquet')}: not a readable Parquet file"
    )
    assert "staging" not in str(caught.value)
    assert Registry(ledger).snapshots() == []


def test_spark_on_a_cluster_with_a_store_is_refused_before_any_work(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    net = make_network(ledger)
    with pytest.raises(ConsentgateError, match="staged on the driver's disk"):
        request = BuildRequest(
            data=net.root, purpose="genai.training", as_of=at(T_NEXT_DAY), out=store.uri("snaps"),
            engine="spark", spark_master="spark://127.0.0.1:7077",
        )  # fmt: skip
        build_snapshot(request, ledger=ledger, engine=engine)
    _nothing_published(store, ledger)
    assert store.keys() == []  # not even the probe: refused before the store was touched


def test_spark_on_local_reads_and_publishes_on_s3_the_rows_duckdb_publishes(
    store: Store, tmp_path: Path, make_network: MakeNetwork, engine: DecisionEngine, ledger: Ledger
) -> None:
    pytest.importorskip("pyspark")
    from consentgate.snapshots.engines.spark_engine import spark_session

    # the engine reuses this session: tuned for tiny inputs (a faster JVM start, two partitions)
    spark_session("local[2]", {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
                               "spark.sql.shuffle.partitions": "2"})  # fmt: skip
    net = make_network(ledger)
    store.put_tree(net.root, "net")
    duck = _build(ledger, engine, net.root, tmp_path / "out", tmp_path / "events")
    spark = _build(
        ledger, engine, store.uri("net"), store.uri("snaps"), tmp_path / "events",
        engine="spark", spark_master="local[2]",
    )  # fmt: skip
    entry = Registry(ledger).require(spark.snapshot_id)
    assert entry.uri is not None and verify_snapshot(entry).ok
    prefix = entry.uri.removeprefix(f"s3://{store.bucket}/")
    assert f"{prefix}/_PUBLISHED" in store.keys(prefix)
    s3 = stores.parse(entry.uri, "test")
    parts = [item for item in stores.files(s3.child("records")) if item.name.endswith(".parquet")]
    published = pa.concat_tables([pq.read_table(item.path, filesystem=item.fs) for item in parts])
    local = pa.concat_tables([pq.read_table(p) for p in sorted((duck.path / "records").iterdir())])
    assert published.sort_by("record_id").equals(local.sort_by("record_id"))
    assert spark.manifest["counts"] == duck.manifest["counts"]


def test_a_store_failure_is_worded_by_its_cause_never_by_a_bucket_or_key_name() -> None:
    """The SDK's message quotes the bucket and the key: digits in them ("…-4031…") are no 403."""
    timeout = OSError(
        "When getting information for key 'snaps/403' in bucket 'cg-a7734031': AWS Error"
        " NETWORK_CONNECTION during HeadObject operation: curlCode: 28, Timeout was reached"
    )
    said = str(stores.store_error(timeout, "s3://cg-a7734031/snaps/403", "read"))
    assert said.startswith("cannot read s3://cg-a7734031/snaps/403: the store did not answer in time (")
    denied = OSError(
        "When reading 'timeout-bucket/x': AWS Error ACCESS_DENIED during GetObject: HTTP status 403"
    )
    assert "the store refused access" in str(stores.store_error(denied, "s3://timeout-bucket/x", "read"))
    unknown = OSError("When listing 'internalerror-bucket': something odd")
    assert str(stores.store_error(unknown, "s3://internalerror-bucket", "list")) == (
        "cannot list s3://internalerror-bucket: When listing 'internalerror-bucket': something odd"
    )
