"""A Spark ``DataFrame`` over a verified snapshot (``pip install 'consentgate[spark]'``).

``read_spark`` is one ``open_snapshot`` (one verification, one recorded read), then
``spark.read.parquet`` of exactly the record files the manifest lists, as ``file:`` URIs with
Hadoop's glob characters escaped; the files Spark says it will read (``DataFrame.inputFiles``)
must be those files, or nothing is returned. The driver and every executor must see the snapshot
under the same path (local disk for ``local[*]``, a shared mount on a cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Unpack
from urllib.parse import unquote, urlsplit

from consentgate.exceptions import ProofError
from consentgate.snapshots.engines.base import spark_uri
from consentgate.training.extras import missing_extra
from consentgate.training.loader import OpenOptions, open_snapshot_run

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def read_spark(
    spark: SparkSession,
    snapshot_id: str,
    *,
    purpose: str,
    **options: Unpack[OpenOptions],
) -> DataFrame:
    """The snapshot's records as a DataFrame of ``spark`` (other arguments as ``open_snapshot``)."""
    try:
        import pyspark.sql  # noqa: F401 (only to say which extra is missing, before the read is recorded)
    except ImportError:
        raise missing_extra("PySpark", "spark", "consentgate.training.spark") from None
    verified = open_snapshot_run(snapshot_id, purpose=purpose, **options)
    frame = spark.read.parquet(*[spark_uri(p) for p in verified.files])
    found = {Path(unquote(urlsplit(uri).path)) for uri in frame.inputFiles()}
    listed = set(verified.files)
    if found != listed:
        extra = sorted(str(p) for p in found - listed)
        missing = sorted(str(p) for p in listed - found)
        raise ProofError(
            f"snapshot {snapshot_id}: Spark would read other files than the manifest lists"
            f" (not listed: {extra or 'none'}; listed but not read: {missing or 'none'})"
        )
    return frame
