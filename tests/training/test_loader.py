"""``open_snapshot``: a training job gets a snapshot's rows only if it may, and every read is kept.

Refused, each with a sentence naming what to do: an unregistered id, a snapshot of another
purpose, files that are not what the manifest lists, members in debt at the read (unless an
override covers them). Each successful open is a row of ``training_reads``, an OpenLineage run
(START, COMPLETE; a refused one ends in FAIL) and a line of ``lineage member``.
"""

from __future__ import annotations

import importlib
import json
import shutil
import socket
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from consentgate.cli import app
from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import (
    DebtOutstanding,
    InputError,
    NotFoundError,
    ProofError,
    PublishError,
    TimestampError,
)
from consentgate.snapshots.lineage import member_lineage
from consentgate.snapshots.openlineage import FACET_KEY
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.training_runs import register_trained_model
from consentgate.timeutil import format_instant, parse_instant
from consentgate.training import VerifiedSnapshot, open_snapshot, open_snapshot_run
from tests.conftest import at, set_setting
from tests.helpers import Receiver, flat
from tests.snapshots.conftest import build
from tests.training.conftest import AS_OF, PURPOSE, Published

OPT_OUT = "2025-12-10T00:00:00Z"
LATER = "2025-12-20T00:00:00Z"
RUN_STATES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}


def open_run(published: Published, **options: Any) -> VerifiedSnapshot:
    options.setdefault("purpose", PURPOSE)
    return open_snapshot_run(
        published.snapshot_id, db=published.url, events_dir=published.events_dir, **options
    )


def reads(published: Published) -> list[Any]:
    return Registry(published.ledger).reads([published.snapshot_id])


def in_snapshot(published: Published) -> set[int]:
    return set(pq.read_table(published.snapshot.path / "members.parquet")["member_id"].to_pylist())


def lineage_member(url: str, *args: str) -> str:
    result = CliRunner().invoke(app, ["--db", url, "lineage", "member", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def check_run_event(event: dict[str, Any]) -> None:
    """The fields OpenLineage 2-0-2 requires of a RunEvent (``jsonschema`` is not installed here)."""
    assert {"eventTime", "producer", "schemaURL", "run", "job", "eventType"} <= set(event)
    assert event["eventType"] in RUN_STATES
    assert parse_instant(event["eventTime"], field="eventTime")
    assert event["producer"].startswith("https://")
    assert event["schemaURL"].startswith("https://openlineage.io/spec/")
    run_id = event["run"]["runId"]
    assert str(uuid.UUID(run_id)) == run_id  # "format": "uuid", in its canonical spelling
    assert event["job"]["namespace"] and event["job"]["name"]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        assert dataset["namespace"] and dataset["name"]
    for facet in event["run"].get("facets", {}).values():
        assert facet["_producer"] and facet["_schemaURL"]


# -- what a successful open gives and records ----------------------------------------------------


def test_a_clean_snapshot_opens_with_exactly_the_rows_of_its_files(published: Published) -> None:
    verified = open_run(published)
    table = verified.dataset.to_table()
    assert table.num_rows == published.snapshot.manifest["counts"]["records_included"]
    assert table.equals(published.table())  # the same rows in the same order, value for value
    assert verified.files == tuple(p.resolve() for p in published.files())
    assert sorted(f.path for f in verified.dataset.get_fragments()) == sorted(map(str, verified.files))

    head, _ = published.ledger.head()
    [read] = reads(published)
    assert read == verified.read
    assert (read.run_id, read.snapshot_id, read.purpose, read.job) == (
        verified.run_id,
        published.snapshot_id,
        PURPOSE,
        "training",
    )
    assert (read.watermark, read.covered_by_override) == (head, 0)
    assert read.read_at <= read.recorded_at

    # open_snapshot: the same dataset, and one more read
    again = open_snapshot(
        published.snapshot_id, purpose=PURPOSE, db=published.url, events_dir=published.events_dir
    )
    assert again.to_table().equals(table)
    assert len(reads(published)) == 2


def test_each_read_is_an_openlineage_run_whose_input_is_the_built_snapshot(published: Published) -> None:
    """START and COMPLETE beside the snapshot, run id = the read's; its input is the build's output."""
    verified = open_run(published, job="llm-finetune", at=LATER)
    events = published.events()
    assert [(e["eventType"], e["run"]["runId"]) for e in events] == [
        ("START", verified.run_id),
        ("COMPLETE", verified.run_id),
    ]
    for event in events:
        check_run_event(event)
        assert (event["job"]["namespace"], event["job"]["name"]) == ("consentgate", "training.llm-finetune")
        facet = event["run"]["facets"][FACET_KEY]
        assert (facet["purpose"], facet["snapshotId"], facet["asOf"], facet["watermark"]) == (
            PURPOSE,
            published.snapshot_id,
            LATER,
            verified.read.watermark,
        )
        assert facet["policyId"] == "linkedin-2025-11"
        # The snapshot's folder and the ledger's file, each named by its storage (OpenLineage naming).
        assert [i["namespace"] for i in event["inputs"]] == [f"file://{socket.gethostname()}"] * 2
        assert event["inputs"][1]["name"].endswith(".db")
    snapshot_input = events[1]["inputs"][0]["name"]
    built = json.loads((published.out / "openlineage.jsonl").read_text().splitlines()[1])
    assert built["eventType"] == "COMPLETE"
    assert [o["name"] for o in built["outputs"]] == [snapshot_input]
    assert snapshot_input == str(published.snapshot.path.resolve())


def test_reads_go_to_openlineage_url_and_a_failed_delivery_opens_nothing(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver(200)
    try:
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url.rsplit("/", 1)[0])
        verified = open_run(published)
    finally:
        receiver.close()
    sent = [json.loads(body) for body in receiver.bodies]
    assert [(e["eventType"], e["run"]["runId"]) for e in sent] == [
        ("START", verified.run_id),
        ("COMPLETE", verified.run_id),
    ]
    assert published.events() == []  # nothing in the file when a URL is set

    refusing = Receiver(400)
    try:
        monkeypatch.setenv("OPENLINEAGE_URL", refusing.url.rsplit("/", 1)[0])
        with pytest.raises(PublishError, match=r"START event could not be sent to http://127\.0\.0\.1"):
            open_run(published)
    finally:
        refusing.close()
    assert [r.run_id for r in reads(published)] == [verified.run_id]


# -- refusals -----------------------------------------------------------------------------------


def test_an_unregistered_snapshot_is_refused(published: Published) -> None:
    with pytest.raises(NotFoundError) as refused:
        open_snapshot("genai.training-20251201T000000Z-000000000000", purpose=PURPOSE, db=published.url)
    assert "snapshot 'genai.training-20251201T000000Z-000000000000' is not registered" in str(refused.value)
    assert "consentgate snapshot list" in str(refused.value)
    assert Registry(published.ledger).reads() == []
    assert published.events() == []


def test_a_snapshot_built_for_ads_does_not_train_a_genai_model(
    published: Published, engine: DecisionEngine
) -> None:
    net, out = published.net, published.out
    ads = build(published.ledger, engine, net.root, out, purpose="ads.personalization", as_of=AS_OF)
    with pytest.raises(InputError) as refused:
        open_snapshot(ads.snapshot_id, purpose=PURPOSE, db=published.url, events_dir=published.events_dir)
    assert f"snapshot {ads.snapshot_id} was built for ads.personalization, not for 'genai.training'" in str(
        refused.value
    )
    assert Registry(published.ledger).reads() == []
    assert [e["eventType"] for e in published.events()] == ["START", "FAIL"]
    # and the genai snapshot is not for ads
    with pytest.raises(InputError, match=r"was built for genai\.training, not for 'ads\.personalization'"):
        open_run(published, purpose="ads.personalization")


def test_files_that_differ_from_the_manifest_are_refused(published: Published) -> None:
    """One row less in a part file, an unlisted file beside them, a missing one: ProofError, no read."""
    part = published.files()[0]
    original = part.read_bytes()
    rows = pq.read_table(part)
    assert rows.num_rows > 1
    pq.write_table(rows.slice(1), part)
    with pytest.raises(ProofError) as tampered:
        open_run(published)
    message = str(tampered.value)
    assert f"snapshot {published.snapshot_id} is not what its manifest says" in message
    assert f"hash: {part} differs from the manifest (sha256)" in message
    assert f"holds {rows.num_rows - 1:,} rows, the manifest lists {rows.num_rows:,}" in message
    part.write_bytes(original)

    unlisted = part.with_name("part-00099.parquet")
    shutil.copy(part, unlisted)
    with pytest.raises(ProofError, match=f"hash: {unlisted} is not listed in the manifest"):
        open_run(published)
    unlisted.unlink()

    part.unlink()
    with pytest.raises(ProofError, match=f"hash: {part} is missing"):
        open_run(published)
    part.write_bytes(original)

    assert reads(published) == []
    assert [e["eventType"] for e in published.events()] == ["START", "FAIL"] * 3
    assert open_run(published).dataset.to_table().equals(published.table())  # restored: opens


def test_a_stale_snapshot_is_refused_with_the_count_and_both_ways_out(published: Published) -> None:
    ids = published.net.ids
    quitters = [ids["eea_adult"], ids["row_adult"]]
    assert set(quitters) <= in_snapshot(published)
    for member in quitters:
        set_setting(published.ledger, member, "genai_improvement", False, OPT_OUT)

    with pytest.raises(DebtOutstanding) as refused:
        open_run(published, at=LATER)
    assert refused.value.count == 2
    message = str(refused.value)
    assert f"snapshot {published.snapshot_id} not opened for training: at {LATER}, 2 members" in message
    for member in quitters:
        assert f"member {member} (setting_off since {OPT_OUT})" in message
    assert f"`consentgate snapshot refresh {published.snapshot_id} --as-of {LATER}`" in message
    assert f"consentgate model register NAME --snapshot {published.snapshot_id}" in message
    assert "--accept-debt REASON" in message

    # Naming an instant before the opt-outs does not step around them: the read happens now.
    with pytest.raises(DebtOutstanding) as earlier:
        open_run(published, at="2025-12-05T00:00:00Z")
    assert earlier.value.count == 2
    assert "--as-of 2025-12-05" not in str(earlier.value)
    # Before the snapshot's as-of no one may use it.
    with pytest.raises(InputError, match=r"before snapshot .* as-of"):
        open_run(published, at="2025-11-30T00:00:00Z")

    assert reads(published) == []
    assert [e["eventType"] for e in published.events()] == ["START", "FAIL"] * 3


def test_an_override_lets_the_stale_snapshot_open_and_the_read_counts_it(
    published: Published, engine: DecisionEngine
) -> None:
    ids = published.net.ids
    for member in (ids["eea_adult"], ids["row_adult"]):
        set_setting(published.ledger, member, "genai_improvement", False, OPT_OUT)
    registration = register_trained_model(
        published.ledger,
        engine,
        "genai-2025-12",
        [published.snapshot_id],
        trained_at=at(LATER),
        accept_debt="DPO decision 2025-17: retraining is scheduled",
        actor="dpo",
        events_dir=published.events_dir,
    )
    assert registration.model.override is not None and registration.model.override.members == 2

    verified = open_run(published, at=LATER, job="finetune")
    assert verified.dataset.to_table().equals(published.table())  # an override filters nothing
    assert verified.read.covered_by_override == 2
    assert reads(published) == [verified.read]

    # A third opt-out is not covered by the override: refused again, for that member alone.
    third = ids["uk_adult"]
    assert third in in_snapshot(published)
    set_setting(published.ledger, third, "genai_improvement", False, "2025-12-15T00:00:00Z")
    with pytest.raises(DebtOutstanding) as refused:
        open_run(published, at=LATER)
    assert refused.value.count == 1
    assert "(2 more members in debt are covered by recorded overrides)" in str(refused.value)
    assert f"member {third} (setting_off" in str(refused.value)
    assert reads(published) == [verified.read]


def test_at_needs_a_time_zone_and_may_not_lie_ahead(published: Published) -> None:
    with pytest.raises(TimestampError, match="naive datetime"):
        open_run(published, at=datetime(2025, 12, 20))  # naive on purpose
    with pytest.raises(TimestampError, match="has no UTC offset"):
        open_run(published, at="2025-12-20T00:00:00")
    with pytest.raises(InputError, match="expected an ISO 8601 string or a datetime, got int"):
        open_run(published, at=1_766_188_800)
    with pytest.raises(InputError, match="2099-01-01T00:00:00Z is in the future"):
        open_run(published, at="2099-01-01T00:00:00Z")
    with pytest.raises(InputError, match="job: expected a printable name"):
        open_run(published, job=" ")
    assert reads(published) == []

    plus_one = datetime(2025, 12, 20, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert open_run(published, at=plus_one).read.read_at == at(LATER)
    assert open_run(published, at="2025-12-20").read.read_at == at(LATER)  # a date: 00:00 UTC


# -- lineage --------------------------------------------------------------------------------------


def test_lineage_member_lists_the_training_runs_that_read_the_members_data(published: Published) -> None:
    verified = open_run(published, job="finetune")
    member = published.net.ids["eea_adult"]
    data = json.loads(lineage_member(published.url, str(member), "--json"))
    assert set(data) == {"member_id", "snapshots", "models", "unreadable_snapshots", "training_runs"}
    assert [s["snapshot_id"] for s in data["snapshots"]] == [published.snapshot_id]
    assert data["training_runs"] == [
        {
            "run_id": verified.run_id,
            "job": "finetune",
            "read_at": format_instant(verified.read.read_at),
            "snapshot_id": published.snapshot_id,
        }
    ]
    text = flat(lineage_member(published.url, str(member)))
    assert f"{published.snapshot_id}: {PURPOSE} as of {AS_OF}" in text
    assert f"read by training run {verified.run_id} (job finetune) at" in text

    registry = Registry(published.ledger)
    outsider = published.net.ids["eea_minor"]
    assert outsider not in in_snapshot(published)
    assert member_lineage(registry, outsider).training_runs == []
    # The JSON API's object keeps its keys unless asked for the runs.
    assert "training_runs" not in member_lineage(registry, member).to_dict()


# -- the optional libraries ----------------------------------------------------------------------


def test_a_helper_without_its_library_names_the_extra_before_anything_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing_db = str(tmp_path / "no-ledger.db")  # never opened: the library is checked first
    from consentgate.training.hf import to_hf_dataset, to_hf_iterable
    from consentgate.training.spark import read_spark

    blocked = cast(Any, None)  # a None in sys.modules makes its import fail, as if not installed
    monkeypatch.setitem(sys.modules, "datasets", blocked)
    for helper in (to_hf_dataset, to_hf_iterable):
        with pytest.raises(InputError, match=r"pip install 'consentgate\[hf\]'"):
            helper("S", purpose=PURPOSE, db=missing_db)
    monkeypatch.setitem(sys.modules, "pyspark.sql", blocked)
    with pytest.raises(InputError, match=r"pip install 'consentgate\[spark\]'"):
        read_spark(cast(Any, None), "S", purpose=PURPOSE, db=missing_db)
    monkeypatch.setitem(sys.modules, "torch.utils.data", blocked)
    monkeypatch.delitem(sys.modules, "consentgate.training.torch", raising=False)
    with pytest.raises(InputError, match=r"consentgate.training.torch needs PyTorch.*\[torch\]'"):
        importlib.import_module("consentgate.training.torch")
    assert not Path(missing_db).exists()
