"""The Spark reader: the verified snapshot's rows, from exactly the files its manifest lists."""

from __future__ import annotations

from pyspark.sql import SparkSession

from consentgate.snapshots.registry import Registry
from consentgate.training.spark import read_spark
from tests.training.conftest import PURPOSE, Published


def test_the_dataframe_holds_exactly_the_verified_rows(spark: SparkSession, published: Published) -> None:
    frame = read_spark(
        spark, published.snapshot_id, purpose=PURPOSE, db=published.url, events_dir=published.events_dir
    )
    assert sorted(frame.inputFiles()) == sorted(p.resolve().as_uri() for p in published.files())
    table = frame.toArrow()
    assert table.column_names == published.table().column_names
    assert sorted(table.to_pylist(), key=lambda r: r["record_id"]) == published.rows()
    [read] = Registry(published.ledger).reads([published.snapshot_id])
    assert read.purpose == PURPOSE
