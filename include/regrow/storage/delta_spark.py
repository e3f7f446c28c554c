"""The delta-spark engine: reads and writes through Spark's own Delta connector
(``format("delta")``), when its JVM jars are on Spark's classpath."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from regrow.storage.commit import CommitInfo, WriteMode
from regrow.storage.delta_log import PartitionSpec, TableLocation, partition_str
from regrow.storage.session import is_connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Spark's spark.sql.parquet.compression.codec for each (its "lz4" is the Hadoop framing).
_SPARK_CODEC = {"lz4": "lz4_raw", "zstd": "zstd", "snappy": "snappy", "none": "none"}


def spark_has_delta(spark: SparkSession) -> bool:
    from py4j.protocol import Py4JError

    if is_connect(spark):  # no JVM handle to ask; Delta Connect is not wired yet
        return False
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
        return True
    except (Py4JError, AttributeError):  # class not found; Spark Connect sessions have no _jvm
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
    location: TableLocation,
    mode: WriteMode,
    partition_by: list[str],
    partition: PartitionSpec | None,
    keys: Sequence[str] | None,
    compression: str,
) -> CommitInfo:
    uri = location.uri
    # Delta writes (merges too) through Spark's Parquet source, which reads its codec here.
    df.sparkSession.conf.set("spark.sql.parquet.compression.codec", _SPARK_CODEC[compression])
    if mode == "merge" and location.exists():
        from delta.tables import DeltaTable as SparkDeltaTable

        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys or [])
        df.sparkSession.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
        (
            SparkDeltaTable.forPath(df.sparkSession, uri)
            .alias("t")
            .merge(df.alias("s"), condition)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    else:
        writer = df.write.format("delta").option("mergeSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if mode == "overwrite":
            writer = writer.mode("overwrite")
            if partition:
                writer = writer.option("replaceWhere", _replace_where(partition))
        else:
            writer = writer.mode("append")
        writer.save(uri)
    last = location.load().history(1)[0]
    metrics = last.get("operationMetrics") or {}
    return CommitInfo(
        location.table,
        int(last["version"]),
        str(last.get("operation", mode)),
        int(metrics.get("numFiles", metrics.get("numTargetFilesAdded", 0)) or 0),
        int(metrics.get("numOutputRows", 0) or 0),
        "delta-spark",
    )


def _replace_where(partition: PartitionSpec) -> str:
    return " AND ".join(f"`{c}` = '{partition_str(v)}'" for c, v in partition.items())
