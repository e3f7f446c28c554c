"""The delta-spark engine: reads and writes through Spark's own Delta connector
(``format("delta")``), when its JVM jars are on Spark's classpath."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from regrow.storage.commit import CommitInfo, WriteMode, task_error
from regrow.storage.delta_log import PartitionSpec, TableLocation, partition_str
from regrow.storage.errors import LakehouseError
from regrow.storage.session import is_connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

# A write that lost a race with another writer (Delta's optimistic concurrency): retried.
_CONFLICT = re.compile(
    r"DELTA_(CONCURRENT_\w+|PROTOCOL_CHANGED|METADATA_CHANGED)"
    r"|io\.delta\.exceptions\.(Concurrent\w+|ProtocolChanged|MetadataChanged)Exception"
)
_PYTHON_TASK = "org.apache.spark.api.python.PythonException"  # a Python worker's error
_MAX_ATTEMPTS = 20
_HISTORY = 50  # commits searched for a write's own (concurrent writers commit in between)
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"

# Spark's spark.sql.parquet.compression.codec for each (its "lz4" is the Hadoop framing).
_SPARK_CODEC = {"lz4": "lz4_raw", "zstd": "zstd", "snappy": "snappy", "none": "none"}


DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def spark_has_delta(spark: SparkSession) -> bool:
    """Whether the session reads and writes ``format("delta")``: its JVM has the connector
    (a Connect session has no JVM handle: its server was started with Delta's extension)."""
    from py4j.protocol import Py4JError

    if is_connect(spark):
        return DELTA_EXTENSION in (spark.conf.get("spark.sql.extensions", "") or "")
    try:
        # Through Spark's class loader: jars given by spark.jars are not on the JVM's
        # system class path, where Class.forName would look.
        utils = spark._jvm.org.apache.spark.util.Utils  # type: ignore[union-attr]
        return bool(utils.classIsLoadable("io.delta.tables.DeltaTable"))
    except (Py4JError, AttributeError):
        return False


def read_with_spark(
    spark: SparkSession, uri: str, version: int | None, partitions: PartitionSpec | None
) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    df = reader.load(uri)
    for column, values in (partitions or {}).items():
        values = values if isinstance(values, list | tuple | set) else [values]
        df = df.where(df[column].isin([partition_str(v) for v in values]))
    return df


def write_with_spark(
    df: DataFrame,
    uri: str,
    location: TableLocation,
    mode: WriteMode,
    partition_by: list[str],
    partition: PartitionSpec | None,
    keys: Sequence[str] | None,
    compression: str,
) -> CommitInfo:
    from pyspark.errors import AnalysisException, PythonException

    # Delta writes (merges too) through Spark's Parquet source, which reads its codec here.
    df.sparkSession.conf.set("spark.sql.parquet.compression.codec", _SPARK_CODEC[compression])
    if is_connect(df.sparkSession):
        df = _plain_strings(df)
    existed = location.exists()
    tag = f"regrow:{uuid.uuid4().hex}"  # finds our commit in the log (others may follow it)
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            if mode == "merge" and existed:
                _merge(df, uri, keys or [], tag)
            else:
                _save(df, uri, mode, partition_by, partition, tag)
            break
        except AnalysisException as err:
            if partition and "DELTA_REPLACE_WHERE_MISMATCH" in str(err):
                raise _outside(df, location.table, partition) from err
            if not _CONFLICT.search(str(err)) or attempt == _MAX_ATTEMPTS:
                raise
        except PythonException as err:  # a task's Python failed (a derive's function)
            raise task_error(err, location.table) from err
        except Exception as err:  # py4j or gRPC: Delta's own exceptions are not converted
            if _PYTHON_TASK in str(err):
                # The same failure inside the file writer: with concurrent writers (no sort
                # ahead of it, session_conf) the function runs as rows are written, and
                # Spark wraps its error in TASK_WRITE_FAILED, which pyspark leaves as is.
                raise task_error(err, location.table) from err
            if not _CONFLICT.search(str(err)) or attempt == _MAX_ATTEMPTS:
                raise
        # Another writer committed first (created the table, or replaced the same
        # partition): write again on the new version, as the delta-rs engine does.
        logger.warning("%s: concurrent commit; writing again (%d)", location.table, attempt)
        existed = location.exists()
        time.sleep(0.05 * attempt)
    table = location.load()
    # Delta skips the commit of a write that adds nothing to an existing table
    # (spark.databricks.delta.skipRecordingEmptyCommits): then nothing was written.
    ours = next((c for c in table.history(_HISTORY) if c.get("userMetadata") == tag), None)
    metrics = (ours or {}).get("operationMetrics") or {}
    return CommitInfo(
        location.table,
        int(ours["version"]) if ours else table.version(),
        # The operation as the delta-rs engine names it (Spark calls an overwrite WRITE).
        "MERGE" if mode == "merge" and existed else "OVERWRITE" if mode == "overwrite" else "WRITE",
        int(metrics.get("numFiles", metrics.get("numTargetFilesAdded", 0)) or 0),
        int(metrics.get("numOutputRows", 0) or 0),
        "delta-spark",
        "delta-spark",
    )


def _plain_strings(df: DataFrame) -> DataFrame:
    """``df`` with its string columns cast to Spark's default string type. A schema made
    on a Spark Connect client (``mapInArrow``'s) reaches the server with each string's
    collation spelt out, and Delta then records ``string collate UTF8_BINARY``, a type
    delta-rs (and so regrow's readers) cannot load ("Unsupported Delta table type")."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    fields = df.schema.fields
    if not any(isinstance(f.dataType, StringType) for f in fields):
        return df
    return df.select(*(F.col(f"`{f.name}`").cast("string").alias(f.name)
                       if isinstance(f.dataType, StringType) else F.col(f"`{f.name}`")
                       for f in fields))  # fmt: skip


def _merge(df: DataFrame, uri: str, keys: Sequence[str], tag: str) -> None:
    # SQL, not delta.tables.DeltaTable: that needs Delta Connect's server plugin on a
    # Spark Connect session, which Maven Central does not serve for Spark 4.2.
    session = df.sparkSession
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    session.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
    view = f"regrow_merge_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(view)
    session.conf.set(_USER_METADATA, tag)  # SQL has no write option to carry it
    try:
        session.sql(
            f"MERGE INTO delta.`{uri}` t USING {view} s ON {condition} "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        ).collect()
    finally:
        session.conf.unset(_USER_METADATA)
        session.catalog.dropTempView(view)


def _save(
    df: DataFrame,
    uri: str,
    mode: WriteMode,
    partition_by: list[str],
    partition: PartitionSpec | None,
    tag: str,
) -> None:
    writer = df.write.format("delta").option("mergeSchema", "true").option("userMetadata", tag)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if mode == "overwrite":
        writer = writer.mode("overwrite")
        if partition:
            writer = writer.option("replaceWhere", _replace_where(partition))
    else:
        writer = writer.mode("append")
    writer.save(uri)


def _outside(df: DataFrame, table: str, partition: PartitionSpec) -> LakehouseError:
    """The error of an overwrite of ``partition`` whose data holds other partitions' rows,
    as the delta-rs engine words it (Delta names only the condition and a row)."""
    others = (
        df.where(f"NOT ({_replace_where(partition)})")
        .selectExpr(*(f"CAST(`{c}` AS STRING) AS `{c}`" for c in partition))
        .distinct()
        .limit(5)
        .collect()
    )
    expected = {c: partition_str(v) for c, v in partition.items()}
    found = ", ".join(str(r.asDict()) for r in others)
    return LakehouseError(
        f"overwrite of {table} partition {expected}: the data holds rows of partition {found}"
    )


def _replace_where(partition: PartitionSpec) -> str:
    return " AND ".join(f"`{c}` = '{partition_str(v)}'" for c, v in partition.items())
