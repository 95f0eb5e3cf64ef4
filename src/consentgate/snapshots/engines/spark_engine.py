"""The Spark engine (``--engine spark``): the same join as the DuckDB engine, on ``local[*]`` or a cluster.

It reads the eligibility tables that the build exported to ``job.eligibility`` and gives exactly the
DuckDB engine's output: per input file one ``records/part-NNNNN.parquet`` with the eligible rows in
input order (sorted by the hidden ``_metadata.row_index``), the ``groups`` for the manifest's counts,
and ``members.parquet``. Spark writes a folder per result; the engine writes it under
``_scratch/spark`` and moves the one part file to its name. Same inputs, same bytes, in any process: the
rows are in a fixed order, Spark's Parquet writer adds no time or host, and ``canonical_footer``
sorts the one list that parquet-mr writes in a per-JVM order.

Limits: the dataset and OUT must be on a file system that the driver and every executor see under
the same path (local disk for ``local[*]``; a shared mount on a cluster). Spark has no unsigned
integers, nanosecond timestamps or large strings: a payload column of type ``uint8/16/32`` comes
back as the next wider signed integer, ``uint64`` as ``decimal(20, 0)``, ``large_string`` as
``string``, ``timestamp[ms]`` as ``timestamp[us]`` (same instants), and ``timestamp[ns]`` is
refused by Spark's reader. ``int64``, ``int32``, ``string``, ``bool``, ``double``, ``date32``,
``decimal``, ``binary`` and ``timestamp[us]`` (with or without time zone) keep their type. Column
names are case-sensitive, as in the input files.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf

from consentgate.exceptions import EngineOutputError, InputError
from consentgate.snapshots.engines.base import (
    LINEAGE_COLUMNS,
    EngineOutput,
    Group,
    Job,
    ProgressFn,
    allowed_pairs,
    included_rows,
    spark_uri,
)

DEFAULT_MASTER = "local[*]"
DRIVER_MEMORY = os.environ.get("CONSENTGATE_SPARK_DRIVER_MEMORY", "1g")
"""The JVM heap of the driver (which, in local mode, is also the executor): 1g keeps RSS near 2 GB."""
BROADCAST_MAX_MEMBERS = 5_000_000
"""Up to this many members, ``member_class`` is broadcast to the tasks; beyond, Spark joins by shuffle."""

SETTINGS: dict[str, str] = {
    "spark.app.name": "consentgate",
    "spark.driver.memory": DRIVER_MEMORY,
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.caseSensitive": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
    # Write dates and instants as they are (proleptic Gregorian), never rebased to the Julian calendar.
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.hadoop.parquet.enable.summary-metadata": "false",
}
"""The settings every consentgate session gets (tests share one session built with them)."""

_ROW = "__cg_row"
_FILE = "__cg_file"
_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


def spark_session(master: str | None = None, extra: Mapping[str, str] | None = None) -> SparkSession:
    """The process's Spark session: created with ``SETTINGS`` (and ``extra``) on ``master``, or the one
    already running (which keeps its master and static settings; the SQL settings are applied to it).
    """
    settings = {**SETTINGS, **(extra or {})}
    check_master(master or DEFAULT_MASTER)
    with tempfile.TemporaryDirectory(prefix="consentgate-spark-") as folder:
        # Only errors on the console: the JVM reads this file once, while the session starts.
        log4j = Path(folder) / "log4j2.properties"
        log4j.write_text(_LOG4J)
        options = f"-Dlog4j2.configurationFile={log4j.as_uri()} {settings.get(_JAVA_OPTIONS, '')}"
        builder = SparkSession.builder.master(master or DEFAULT_MASTER)
        for key, value in {**settings, _JAVA_OPTIONS: options.strip()}.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # py4j and the JVM raise many kinds; the user needs one sentence
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"--engine spark: cannot start Spark on {master or DEFAULT_MASTER} ({first});"
                " PySpark 4 needs Java 17 or newer (Debian: apt-get install default-jre-headless)"
            ) from exc
    for key, value in SETTINGS.items():
        if key.startswith("spark.sql."):
            session.conf.set(key, value)
    return session


def check_master(master: str, timeout: float = 3.0) -> None:
    """A standalone master (``spark://host:port``, or several for high availability) must answer
    before a session is tried: Spark itself retries an unreachable master for a minute and more and
    then fails deep in the JVM. Other masters (``local[*]``, ``yarn``, ``k8s://…``) are Spark's."""
    if not master.startswith("spark://"):
        return
    hosts = [h for h in master.removeprefix("spark://").split(",") if h]
    tried: list[str] = []
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise InputError(f"--spark-master: expected spark://HOST:PORT, got {master!r}")
        try:
            with socket.create_connection((name.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as exc:
            tried.append(f"{host}: {exc.strerror or exc}")
    raise InputError(
        f"--spark-master: no Spark master answers at {master} ({'; '.join(tried)}); nothing was built"
    )


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _write_one(frame: DataFrame, folder: Path, target: Path) -> None:
    """Write ``frame`` (one partition, already in order) as the single Parquet file ``target``."""
    frame.write.mode("overwrite").parquet(spark_uri(folder))
    _move_part(folder, target)


def _move_part(folder: Path, target: Path) -> None:
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) != 1:
        raise EngineOutputError(
            f"Spark left {len(parts)} part files in {folder}, expected one: the executors' output did"
            " not reach the driver's disk (OUT must be shared by the driver and every executor);"
            " nothing published"
        )
    canonical_footer(parts[0])
    parts[0].replace(target)


def canonical_footer(path: Path) -> None:
    """Sort each column chunk's ``encodings`` list in the Parquet footer, in place.

    parquet-mr collects them in a ``HashSet`` of enums, whose order follows identity hashes and so
    changes from one JVM to the next: without this, two processes write different bytes. Sorting
    permutes varints of the same sizes, so no offset moves.
    """
    with path.open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        tail = handle.read(8)
        if tail[4:] != b"PAR1":
            raise RuntimeError(f"{path}: not a Parquet file")
        length = int.from_bytes(tail[:4], "little")
        handle.seek(-8 - length, os.SEEK_END)
        footer = bytearray(handle.read(length))
        _Thrift(footer).struct(())
        handle.seek(-8 - length, os.SEEK_END)
        handle.write(footer)


_ENCODINGS = (4, 1, 3, 2)  # FileMetaData.row_groups / RowGroup.columns / ColumnChunk.meta_data / encodings


class _Thrift:
    """Just enough of Thrift's compact protocol to walk a Parquet footer and sort the encodings."""

    def __init__(self, data: bytearray) -> None:
        self.data, self.pos = data, 0

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    def struct(self, path: tuple[int, ...]) -> None:
        field = 0
        while (header := self.data[self.pos]) != 0:
            self.pos += 1
            delta, kind = header >> 4, header & 0x0F
            if delta:
                field += delta
            else:
                zigzag = self.varint()
                field = (zigzag >> 1) ^ -(zigzag & 1)
            self.value(kind, (*path, field))
        self.pos += 1

    def value(self, kind: int, path: tuple[int, ...]) -> None:
        if kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            size = self.varint()
            self.pos += size
        elif kind in (9, 10):
            header = self.data[self.pos]
            self.pos += 1
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            start, items = self.pos, []
            for _ in range(size):
                begin = self.pos
                if element in (1, 2):  # a bool in a list takes one byte
                    self.pos += 1
                else:
                    self.value(element, path)
                items.append(bytes(self.data[begin : self.pos]))
            if path == _ENCODINGS and element == 5:
                self.data[start : self.pos] = b"".join(sorted(items))
        elif kind == 11:
            size = self.varint()
            if size:
                types = self.data[self.pos]
                self.pos += 1
                for _ in range(size):
                    self.value(types >> 4, path)
                    self.value(types & 0x0F, path)
        elif kind == 12:
            self.struct(path)
        elif kind not in (1, 2):
            raise RuntimeError(f"unexpected Thrift type {kind} in a Parquet footer")


class SparkEngine:
    """Joins the input files to the eligibility tables and writes the eligible rows in input order.

    Files go in batches of ``batch_files``: one Spark job writes a batch (one task per file, so the
    files of a batch are written in parallel), and ``progress`` is called after each batch.
    """

    name = "spark"

    def __init__(self, master: str | None = None, batch_files: int = 64) -> None:
        self.master = master or DEFAULT_MASTER
        self.batch_files = batch_files

    def run(self, job: Job, progress: ProgressFn | None = None) -> EngineOutput:
        spark = spark_session(self.master)
        records = job.out / "records"
        records.mkdir(parents=True)
        scratch = job.out / "_scratch" / "spark"
        scratch.mkdir(parents=True, exist_ok=True)
        member_file = job.eligibility / "member_class.parquet"
        member_class = spark.read.parquet(spark_uri(member_file)).select(
            sf.col("member_id").cast("long").alias("__cg_member"), sf.col("class_id").alias("__cg_class")
        )
        if pq.ParquetFile(member_file).metadata.num_rows <= BROADCAST_MAX_MEMBERS:
            member_class = sf.broadcast(member_class)
        rules = sf.broadcast(
            spark.read.parquet(spark_uri(job.eligibility / "rules.parquet"))
            .where(sf.col("allowed"))
            .select(sf.col("class_id").alias("__cg_rule_class"), sf.col("category").alias("__cg_rule_cat"))
        )
        columns = [sf.col(_quote(c)) for c in job.dataset.columns]
        late = sf.unix_micros(sf.col("created_at")) > sf.lit(job.at_us)
        inputs = [
            spark.read.parquet(spark_uri(f.path)).select(
                *columns, sf.col("_metadata.row_index").alias(_ROW), sf.lit(i).alias(_FILE)
            )
            for i, f in enumerate(job.dataset.records)
        ]
        # The groups first: they say how many rows each output file must hold, so a file whose
        # task output never reached OUT is an error, not "no eligible rows".
        groups_by_file: list[list[Group]] = [[] for _ in inputs]
        for r in (
            _union([frame.select("member_id", "category", "created_at", _FILE) for frame in inputs])
            .join(member_class, sf.col("member_id").cast("long") == sf.col("__cg_member"), "left")
            .groupBy(
                sf.col(_FILE),
                sf.coalesce(sf.col("__cg_class"), sf.lit(0)).alias("class_id"),
                sf.col("category"),
                late.alias("late"),
            )
            .count()
            .collect()
        ):
            groups_by_file[int(r[_FILE])].append(
                (
                    int(r["class_id"]),
                    None if r["category"] is None else str(r["category"]),
                    bool(r["late"]),
                    int(r["count"]),
                )
            )
        allowed = allowed_pairs(job.eligibility / "rules.parquet")
        out = EngineOutput(
            record_files=[records / f"part-{i:05d}.parquet" for i in range(len(inputs))],
            groups_by_file=groups_by_file,
        )
        done = 0
        for first in range(0, len(inputs), self.batch_files):
            batch = inputs[first : first + self.batch_files]
            folder = scratch / f"batch-{first:05d}"
            # A join does not keep input order; sorting by the row's position in its file does.
            (
                _union(batch)
                .join(member_class, sf.col("member_id").cast("long") == sf.col("__cg_member"))
                .join(
                    rules,
                    (sf.col("__cg_class") == sf.col("__cg_rule_class"))
                    & (sf.col("category") == sf.col("__cg_rule_cat")),
                )
                .where(~late)
                .select(*columns, _ROW, _FILE)
                .repartition(len(batch), _FILE)
                .sortWithinPartitions(_FILE, _ROW)
                .drop(_ROW)
                .write.partitionBy(_FILE)
                .mode("overwrite")
                .parquet(spark_uri(folder))
            )
            for index in range(first, first + len(batch)):
                part = folder / f"{_FILE}={index}"
                expected = included_rows(groups_by_file[index], allowed)
                if part.is_dir():
                    _move_part(part, out.record_files[index])
                elif expected == 0:  # no eligible row: an empty file with the columns and types
                    _write_one(
                        inputs[index].select(*columns).limit(0).coalesce(1), part, out.record_files[index]
                    )
                else:
                    raise EngineOutputError(
                        f"{job.dataset.records[index].path}: {expected:,} eligible records, but Spark's"
                        f" output for them is not in {folder}: the executors wrote to a disk the driver"
                        " does not see (OUT must be a filesystem that the driver and every executor"
                        " share); nothing published"
                    )
            shutil.rmtree(folder)
            done += sum(f.rows for f in job.dataset.records[first : first + len(batch)])
            if progress is not None:
                progress(done)
        if job.lineage:
            member, category, count = LINEAGE_COLUMNS
            lineage = (
                spark.read.parquet(*(spark_uri(f) for f in out.record_files))
                .groupBy(sf.col("member_id").cast("long").alias(member), sf.col("category").alias(category))
                # sum, not count: Spark marks a count NOT NULL, and members.parquet has one schema
                # for both engines, every column nullable (LINEAGE_SCHEMA).
                .agg(sf.sum(sf.lit(1)).cast("long").alias(count))
                .repartition(1)
                .sortWithinPartitions(member, category)
            )
            _write_one(lineage, scratch / "members", job.out / "members.parquet")
        shutil.rmtree(scratch, ignore_errors=True)
        return out


def _union(frames: list[DataFrame]) -> DataFrame:
    return functools.reduce(DataFrame.unionAll, frames)
