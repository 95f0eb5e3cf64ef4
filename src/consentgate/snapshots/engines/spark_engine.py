"""The Spark engine (``--engine spark``): the same join as the DuckDB engine, on ``local[*]`` or a cluster.

It reads the eligibility tables that the build exported to ``job.eligibility`` and gives exactly the
DuckDB engine's output: per input file one ``records/part-NNNNN.parquet`` with the eligible rows in
input order (sorted by the hidden ``_metadata.row_index``), the ``groups`` for the manifest's counts,
and ``members.parquet``. Spark writes a folder per result; the engine writes it under
``_scratch/spark`` and moves the one part file to its name. Same inputs, same bytes, in any process: the
rows are in a fixed order, Spark's Parquet writer adds no time or host, and ``canonical_footer``
sorts the one list that parquet-mr writes in a per-JVM order.

Limits: the dataset and OUT must be on a file system that the driver and every executor see under
the same path (local disk for ``local[*]``; a shared mount on a cluster). The eligibility tables are
sent from the driver. An executor whose output the driver cannot see (a private disk) fails the
build with a clear error and nothing published, never an empty or short snapshot. Spark has no unsigned
integers, nanosecond timestamps or large strings: a payload column of type ``uint8/16/32`` comes
back as the next wider signed integer, ``uint64`` as ``decimal(20, 0)``, ``large_string`` as
``string``, ``timestamp[ms]`` as ``timestamp[us]`` (same instants), and ``timestamp[ns]`` is
refused by Spark's reader. ``int64``, ``int32``, ``string``, ``bool``, ``double``, ``date32``,
``decimal``, ``binary`` and ``timestamp[us]`` (with or without time zone) keep their type, and a
column the input declares required stays required (``_as_declared``). Column
names are case-sensitive, as in the input files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JError
from pyspark import SparkContext
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql import types as T  # noqa: N812 (PySpark's own spelling)

from consentgate.crashlog import crash_folder, trace_note, write_trace
from consentgate.exceptions import EngineFailure, EngineOutputError, InputError
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
    """The process's Spark session: created with ``SETTINGS`` (and ``extra``, ``--spark-conf``) on
    ``master``, or the one already running (which keeps its master and static settings; the SQL
    settings, ours and ``extra``'s, are applied to it).
    """
    settings = {**SETTINGS, **(extra or {})}
    check_master(master or DEFAULT_MASTER)
    check_java()
    with tempfile.TemporaryDirectory(prefix="consentgate-spark-") as folder:
        # Only errors on the console: the JVM reads this file once, while the session starts.
        log4j = Path(folder) / "log4j2.properties"
        log4j.write_text(_LOG4J)
        options = f"-Dlog4j2.configurationFile={log4j.as_uri()} {settings.get(_JAVA_OPTIONS, '')}"
        builder = SparkSession.builder.master(master or DEFAULT_MASTER)
        for key, value in {**settings, _JAVA_OPTIONS: options.strip()}.items():
            builder = builder.config(key, value)
        try:
            with jvm_output():
                session = builder.getOrCreate()
        except Exception as exc:  # py4j and the JVM raise many kinds; the user needs one sentence
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log = write_trace(exc, sys.argv[1:])
            raise EngineFailure(
                f"--engine spark: cannot start Spark on {master or DEFAULT_MASTER} ({first[:300]});"
                " PySpark 4 needs Java 17 or newer (Debian: apt-get install default-jre-headless);"
                f" {trace_note(log)}"
            ) from exc
    for key, value in settings.items():
        if key.startswith("spark.sql."):
            session.conf.set(key, value)
    return session


JVM_LOG: Path | None = None
"""The file the driver JVM of this process writes its own output to (set when it starts)."""


@contextlib.contextmanager
def jvm_output() -> Iterator[None]:
    """Start the driver JVM with its stdout and stderr on a log file, not the user's terminal:
    the JVM keeps the descriptors it was started with, so the terminal gets consentgate's lines
    only (Spark's banner, its warnings and its task errors go to the file). Falls back to the
    terminal when no log file can be made."""
    global JVM_LOG
    if SparkContext._gateway is not None:  # the JVM runs already: nothing is started
        yield
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = crash_folder().parent / "spark" / f"driver-{stamp}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        JVM_LOG = path
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log):
            os.close(fd)


def check_java() -> None:
    """PySpark starts ``$JAVA_HOME/bin/java`` or the ``java`` on PATH; without one it fails with
    "Java gateway process exited" and nothing else."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return
    if shutil.which("java") is None:
        where = f"JAVA_HOME={home} has no bin/java" if home else "JAVA_HOME is not set"
        raise InputError(
            f"--engine spark needs a Java runtime (17 or newer): {where} and no java is on PATH"
            " (Debian: apt-get install default-jre-headless); nothing was built"
        )


_STAGE = re.compile(r"in stage (\d+(?:\.\d+)?)")
_EXECUTOR = re.compile(r"\(([^()\s]+) executor ([\w.-]+)\)")
_LOST = re.compile(r"executor ([\w.-]+) exited|ExecutorLostFailure \(executor ([\w.-]+)")
_JAVA = re.compile(r"^(?::\s*)?((?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b:?.*)$", re.M)
_CAUSED = re.compile(r"^Caused by: (.*)$", re.M)
_LOST_TASK = re.compile(r"most recent failure: (Lost task .*?\)): (.*)$", re.M)


def describe_failure(exc: BaseException, doing: str) -> str:
    """One line for a failed Spark job: what was being done, the stage and executor when Spark
    names them, the failure, and its deepest cause (``java.io.FileNotFoundException: File … does
    not exist``)."""
    text = str(exc)
    parts = [f"--engine spark: {doing} failed"]
    stage = _STAGE.search(text)
    if stage:
        parts.append(f"in stage {stage[1]}")
    executor = _EXECUTOR.search(text)
    lost = _LOST.search(text)
    if executor:
        parts.append(f"on executor {executor[2]} ({executor[1]})")
    elif lost:
        parts.append(f"on executor {lost[1] or lost[2]}")
    task = _LOST_TASK.search(text)
    java = _JAVA.search(text)
    if task:
        what = task[2]
    elif java:
        what = java[1]
    else:
        what = next((ln for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    what = re.sub(r"^org\.apache\.spark\.SparkException: ", "", what)
    causes = _CAUSED.findall(text)
    if causes and causes[-1] not in what:
        what = f"{what[:300]} (caused by {causes[-1][:300]})"
    if lost and "exited" in text:
        what = f"the executor was lost: {what}"
    flat = re.sub(r"\s+", " ", what).strip()
    return " ".join(parts) + f": {flat[:700]}"


def spark_failure(exc: BaseException, doing: str) -> EngineFailure:
    """The one-line error for a Spark failure, its full trace (Python's and the JVM's) in a log."""
    driver = f"the Spark driver's own log is {JVM_LOG}" if JVM_LOG is not None else ""
    log = write_trace(exc, sys.argv[1:], detail=driver)
    return EngineFailure(f"{describe_failure(exc, doing)}; nothing published; {trace_note(log)}")


def from_spark(exc: BaseException) -> bool:
    """Whether ``exc`` came out of the JVM or py4j (not one of consentgate's own errors)."""
    return isinstance(exc, Py4JError | PySparkException)


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

    def __init__(
        self, master: str | None = None, batch_files: int = 64, conf: Mapping[str, str] | None = None
    ) -> None:
        self.master = master or DEFAULT_MASTER
        self.batch_files = batch_files
        self.conf = dict(conf or {})

    def run(self, job: Job, progress: ProgressFn | None = None) -> EngineOutput:
        spark = spark_session(self.master, self.conf)
        self.doing = "reading the input"
        try:
            return self._run(spark, job, progress)
        except Exception as exc:
            if not from_spark(exc):
                raise
            raise spark_failure(exc, self.doing) from exc

    def _run(self, spark: SparkSession, job: Job, progress: ProgressFn | None) -> EngineOutput:
        records = job.out / "records"
        records.mkdir(parents=True)
        scratch = job.out / "_scratch" / "spark"
        scratch.mkdir(parents=True, exist_ok=True)
        # The eligibility tables go to the executors from the driver (as Arrow), not through OUT:
        # an executor needs to see only the input files and the output folder.
        member_file = job.eligibility / "member_class.parquet"
        classes = pq.read_table(member_file)
        member_class = spark.createDataFrame(classes).select(
            sf.col("member_id").cast("long").alias("__cg_member"), sf.col("class_id").alias("__cg_class")
        )
        if classes.num_rows <= BROADCAST_MAX_MEMBERS:
            member_class = sf.broadcast(member_class)
        rules = sf.broadcast(
            spark.createDataFrame(pq.read_table(job.eligibility / "rules.parquet"))
            .where(sf.col("allowed"))
            .select(sf.col("class_id").alias("__cg_rule_class"), sf.col("category").alias("__cg_rule_cat"))
        )
        columns = [sf.col(_quote(c)) for c in job.dataset.columns]
        late = sf.unix_micros(sf.col("created_at")) > sf.lit(job.at_us)
        inputs = []
        for i, f in enumerate(job.dataset.records):
            frame = spark.read.parquet(spark_uri(f.path))
            inputs.append(
                frame.select(
                    *(_as_declared(frame, field) for field in job.dataset.schema),
                    sf.col("_metadata.row_index").alias(_ROW),
                    sf.lit(i).alias(_FILE),
                )
            )
        # The groups first: they say how many rows each output file must hold, so a file whose
        # task output never reached OUT is an error, not "no eligible rows".
        groups_by_file: list[list[Group]] = [[] for _ in inputs]
        self.doing = "counting the input records per member class and category"
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
            names = [f.path.name for f in job.dataset.records[first : first + len(batch)]]
            self.doing = f"writing the eligible records of {', '.join(names[:3])}" + (
                f" and {len(names) - 3} more files" if len(names) > 3 else ""
            )
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
            self.doing = "writing the lineage (members.parquet)"
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


def _as_declared(frame: DataFrame, field: pa.Field) -> Column:
    """The input column with the input's nullability: Spark reads every Parquet column as nullable
    and writes it so; a column the input declares required (NOT NULL) is coalesced with a literal
    of its own type, which Spark knows is never null, so the output declares it required too, as
    the embedded engine's does. The literal is never used: no input row holds a null there."""
    column = sf.col(_quote(field.name))
    if field.nullable:
        return column
    kind = frame.schema[field.name].dataType
    if isinstance(kind, T.StringType):
        default = sf.lit("")
    elif isinstance(kind, T.BooleanType):
        default = sf.lit(False)
    elif isinstance(kind, T.BinaryType):
        default = sf.lit(bytearray())
    elif isinstance(kind, T.DateType):
        default = sf.make_date(sf.lit(1970), sf.lit(1), sf.lit(1))
    elif isinstance(kind, T.TimestampType | T.TimestampNTZType):
        default = sf.timestamp_micros(sf.lit(0))
    elif isinstance(kind, T.NumericType):
        default = sf.lit(0)
    else:
        return column  # no literal of this type at hand: the output keeps Spark's nullable column
    return sf.coalesce(column, default.cast(kind)).alias(field.name)


def _union(frames: list[DataFrame]) -> DataFrame:
    return functools.reduce(DataFrame.unionAll, frames)
