"""The lakehouse: the one place that reads and writes regrow's Delta tables.

Tables are named ``layer.name`` (``bronze.events``) and live at ``{root}/{layer}/{name}``
under one root, a local path or ``s3://bucket/prefix``. Two engines write the same Delta
protocol, so a table written by one is read by the other:

- ``delta-spark``: Spark's native ``format("delta")``, when the Delta JVM connector is on
  the classpath (the Docker image bakes it in).
- ``delta-rs``: for a pip-only install. Spark still does all the compute: each task writes
  its rows as one Parquet file per partition value, straight into the table's folder, and
  returns the file's metadata; the driver then commits every file as one Delta transaction
  through the ``deltalake`` package. A writer killed before that commit leaves only
  unreferenced files, so the table stays at its last version (``vacuum`` removes them).

Writes are ``append``, ``overwrite`` of exactly the partitions given (idempotent daily
writes), or ``merge`` on keys. Additive columns are merged into the table schema; a type
change is refused with an error that names the column. ``derive`` reads a table, maps its
Arrow batches and writes another in one pass of Spark tasks (with delta-rs, the rows never
enter the JVM).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from regrow.settings import LakehouseSettings

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark import RDD
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructField, StructType

logger = logging.getLogger(__name__)

WriteMode = Literal["append", "overwrite", "merge"]
Engine = Literal["delta-spark", "delta-rs"]
PartitionSpec = Mapping[str, Any]

# Commit retries on a concurrent-writer conflict (delta-rs checks that the other commit
# touched none of our partitions before it retries).
_MAX_COMMIT_RETRIES = 20
# Rows per Arrow batch a derive task reads (and per row group it writes).
_BATCH_ROWS = 65_536
# File name endings per lakehouse.compression, as Spark names its files (pyarrow's "lz4"
# writes the LZ4_RAW codec, Spark's "lz4raw"; Spark reads both ways).
_FILE_SUFFIX = {
    "lz4": ".lz4raw.parquet",
    "zstd": ".zstd.parquet",
    "snappy": ".snappy.parquet",
    "none": ".parquet",
}
# Spark's spark.sql.parquet.compression.codec for each (its "lz4" is the Hadoop framing).
_SPARK_CODEC = {"lz4": "lz4_raw", "zstd": "zstd", "snappy": "snappy", "none": "none"}
# A table as SQL names it: layer.name, with regrow's layers.
_TABLE_REF = re.compile(r"\b(bronze|silver|gold)\.([A-Za-z_][A-Za-z0-9_]*)\b")


class LakehouseError(RuntimeError):
    """A table operation that cannot be done as asked."""


class TableNotFoundError(LakehouseError):
    pass


class MissingPartitionError(LakehouseError):
    """A job needs a partition of an upstream table that is not there (not built yet, or empty)."""


class SchemaChangeError(LakehouseError):
    """A write whose column types differ from the table's (only additive changes merge)."""


@dataclass(frozen=True)
class CommitInfo:
    table: str
    version: int
    operation: str
    files_added: int
    rows_written: int
    engine: str


@dataclass(frozen=True)
class TableInfo:
    table: str
    uri: str
    version: int
    rows: int
    partition_by: list[str]


class Lakehouse:
    """Delta tables under one root; ``engine`` is resolved on first use when ``auto``."""

    def __init__(self, settings: LakehouseSettings, root: str | None = None) -> None:
        self.settings = settings
        self.root = (root or settings.root).rstrip("/")
        self._engine: Engine | None = None if settings.engine == "auto" else settings.engine

    # ---------------------------------------------------------------- naming and options
    def uri(self, table: str) -> str:
        parts = table.split(".")
        if len(parts) != 2 or not all(p.isidentifier() for p in parts):
            raise LakehouseError(f"table name {table!r} is not of the form layer.name")
        return f"{self.root}/{parts[0]}/{parts[1]}"

    @property
    def is_remote(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")

    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options: params.yaml's non-secret ones over the environment's."""
        options = dict(self.settings.storage_options)
        if self.root.startswith("s3://"):
            endpoint = options.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL", "")
            if endpoint.startswith("http://"):
                # object_store refuses plain HTTP unless told (a local S3 server, e.g. moto).
                options.setdefault("AWS_ALLOW_HTTP", "true")
            if endpoint:
                options.setdefault("AWS_ENDPOINT_URL", endpoint)
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if region:
                options.setdefault("AWS_REGION", region)
        return options

    def task_storage_options(self) -> dict[str, str]:
        """Storage options shipped to Spark tasks: the driver's, plus the AWS credentials of
        the driver's environment when it has them. Python workers inherit the environment
        of the JVM, which may predate those variables; without them in the environment,
        tasks fall back to their own credential chain (instance role, profile)."""
        options = self.storage_options()
        if self.root.startswith("s3://"):
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                if os.environ.get(key):
                    options.setdefault(key, os.environ[key])
        return options

    def engine(self, spark: SparkSession | None = None) -> Engine:
        """The engine in use: the configured one, or for ``auto`` delta-spark if its
        connector is loaded in this Spark session, else delta-rs."""
        if self._engine is None:
            self._engine = (
                "delta-spark" if spark is not None and _spark_has_delta(spark) else "delta-rs"
            )
            logger.info("lakehouse engine: %s (auto)", self._engine)
        if self._engine == "delta-spark" and spark is not None and not _spark_has_delta(spark):
            raise LakehouseError(
                "lakehouse.engine is delta-spark but the Delta Lake JVM connector is not on "
                "Spark's classpath; add delta-spark jars (the Docker image has them) or set "
                "lakehouse.engine: delta-rs"
            )
        return self._engine

    # ------------------------------------------------------------------------ metadata
    def delta_table(self, table: str, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError as DeltaNotFound

        try:
            return DeltaTable(
                self.uri(table), version=version, storage_options=self.storage_options()
            )
        except DeltaNotFound as err:
            raise TableNotFoundError(f"table {table} does not exist at {self.uri(table)}") from err
        except Exception as err:  # deltalake raises a bare exception for a missing version
            if version is not None and "version" in str(err).lower():
                raise LakehouseError(f"table {table} has no version {version}: {err}") from err
            raise

    def exists(self, table: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri(table), storage_options=self.storage_options())

    def table_version(self, table: str) -> int:
        return self.delta_table(table).version()

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits of a table, newest first (version, timestamp, operation, parameters)."""
        return self.delta_table(table).history(limit)

    def spark_schema(self, table: str, version: int | None = None) -> StructType:
        """The Spark schema of ``table`` (at ``version``) from its Delta log, without making
        a DataFrame: the schema :meth:`read` gives with the delta-rs engine (delta-spark
        reads every column as nullable)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(_table_schema(self.delta_table(table, version)))

    def partition_by(self, table: str) -> list[str]:
        return list(self.delta_table(table).metadata().partition_columns)

    def partition_rows(self, table: str, column: str | None = None) -> dict[str, int]:
        """Rows per value of a partition column of ``table`` (``{"2026-01-01": n}``), from
        the Delta log's file statistics (no data is read); ``{}`` if there is no table.

        Args:
            column: the partition column to count by; default: the first one.
        """
        if not self.exists(table):
            return {}
        dt_ = self.delta_table(table)
        columns = list(dt_.metadata().partition_columns)
        column = column or (columns[0] if columns else None)
        if column not in columns:
            raise LakehouseError(f"{table} is not partitioned by {column} ({columns})")
        adds = dt_.get_add_actions(flatten=True)
        adds = pa.table(adds) if not isinstance(adds, pa.Table) else adds
        counts: dict[str, int] = {}
        for row in adds.select([f"partition.{column}", "num_records"]).to_pylist():
            value = str(row[f"partition.{column}"])
            counts[value] = counts.get(value, 0) + int(row["num_records"] or 0)
        return counts

    def require_days(
        self, table: str, days: Sequence[dt.date], column: str, hint: str = ""
    ) -> None:
        """Raise :class:`MissingPartitionError` naming every one of ``days`` that has no rows
        in ``table``'s ``column`` partitions."""
        present = self.partition_rows(table, column) if self.exists(table) else {}
        missing = [d for d in days if str(d) not in present]
        if missing:
            names = ", ".join(f"{column}={d}" for d in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise MissingPartitionError(
                f"{table} has no partition {names}{more} (missing or empty){hint}"
            )

    def tables(self) -> list[TableInfo]:
        """Every Delta table found under the root (``layer/name/_delta_log``)."""
        fs, root = _fs_and_path(self.root, self.storage_options())
        infos = []
        for log_dir in sorted(fs.glob(f"{root}/*/*/_delta_log")):
            layer, name = log_dir.rstrip("/").split("/")[-3:-1]
            table = f"{layer}.{name}"
            dt_ = self.delta_table(table)
            rows = _count_rows(dt_)
            infos.append(
                TableInfo(
                    table,
                    self.uri(table),
                    dt_.version(),
                    rows,
                    list(dt_.metadata().partition_columns),
                )
            )
        return infos

    def to_arrow(
        self, table: str, version: int | None = None, partitions: PartitionSpec | None = None
    ) -> pa.Table:
        """A table (or some partitions of it) as Arrow, without Spark (queries, small reads)."""
        dt_ = self.delta_table(table, version)
        schema = _table_schema(dt_)
        pieces = [
            _read_delta_file(spec, schema, self.storage_options())
            for spec in _file_specs(dt_, _partition_filters(partitions))
        ]
        return pa.concat_tables(pieces) if pieces else schema.empty_table()

    def sql(self, query: str) -> pa.Table:
        """Run SQL (DuckDB) over the tables the query names as ``layer.name``.

        Only the named tables are loaded (as Arrow, at their latest version); a name that is
        no table under the root is an error that lists the tables there are.
        """
        import duckdb

        names = sorted(set(_TABLE_REF.findall(query)))
        con = duckdb.connect()
        try:
            for layer, name in names:
                table = f"{layer}.{name}"
                if not self.exists(table):
                    known = ", ".join(i.table for i in self.tables()) or "none"
                    raise TableNotFoundError(
                        f"query names {table}, which does not exist (tables: {known})"
                    )
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
                con.register(f"__{layer}__{name}", self.to_arrow(table))
                con.execute(f'CREATE VIEW "{layer}"."{name}" AS SELECT * FROM "__{layer}__{name}"')
            try:
                return con.sql(query).to_arrow_table()
            except duckdb.Error as err:
                raise LakehouseError(f"query failed: {err}") from err
        finally:
            con.close()

    def vacuum(self, table: str, retention_hours: int = 168, dry_run: bool = True) -> list[str]:
        """Files no longer referenced by versions younger than ``retention_hours``, and files
        older than that which no commit ever referenced (those of a killed writer).

        ``full=True``: delta-rs's default "lite" vacuum only lists files removed in the log,
        so a killed writer's files would stay forever. The retention also protects the files
        of a writer that is still running.
        """
        return self.delta_table(table).vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=False,
            full=True,
        )

    def append_records(
        self, table: str, rows: pa.Table, partition_by: Sequence[str] | None = None
    ) -> CommitInfo:
        """Append a few rows (decisions, audit records) without Spark, as one Delta commit.

        For small records made on the driver: starting Spark to append one row would cost
        more than the decision it records. New columns are merged into the schema; a type
        change is refused like any other write.
        """
        from deltalake import write_deltalake
        from deltalake.exceptions import SchemaMismatchError

        if self.exists(table):
            current = _table_schema(self.delta_table(table))
            for name in rows.column_names:
                if name in current.names and not current.field(name).type.equals(
                    rows.schema.field(name).type
                ):
                    raise SchemaChangeError(
                        f"append to {table}: column {name} is {rows.schema.field(name).type}, "
                        f"the table has {current.field(name).type}"
                    )
        try:
            write_deltalake(
                self.uri(table), rows, mode="append", partition_by=list(partition_by or []) or None,
                schema_mode="merge", storage_options=self.storage_options(),
            )  # fmt: skip
        except SchemaMismatchError as err:
            raise SchemaChangeError(f"append to {table}: {err}") from err
        dt_ = self.delta_table(table)
        return CommitInfo(table, dt_.version(), "append", 1, rows.num_rows, "delta-rs")

    # --------------------------------------------------------------------------- reads
    def read(
        self,
        spark: SparkSession,
        table: str,
        version: int | None = None,
        where: str | None = None,
        partitions: PartitionSpec | None = None,
    ) -> DataFrame:
        """A table as a Spark DataFrame.

        Args:
            version: the Delta version to read (time travel); latest when None.
            where: a Spark SQL predicate applied after loading (pushed down to Parquet).
            partitions: ``{column: value or [values]}``; only those partitions' files are read.
        """
        if self.engine(spark) == "delta-spark":
            reader = spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            df = reader.load(self.uri(table))
            for column, values in (partitions or {}).items():
                values = values if isinstance(values, list | tuple | set) else [values]
                df = df.where(df[column].isin([_partition_str(v) for v in values]))
        else:
            df = self._read_delta_rs(spark, table, version, partitions)
        return df.where(where) if where else df

    def _read_delta_rs(
        self, spark: SparkSession, table: str, version: int | None, partitions: PartitionSpec | None
    ) -> DataFrame:
        from pyspark.sql.pandas.types import from_arrow_schema

        dt_ = self.delta_table(table, version)
        partition_cols = list(dt_.metadata().partition_columns)
        spark_schema = from_arrow_schema(_table_schema(dt_))  # as spark_schema() gives it
        files = dt_.file_uris(file_pruning_predicate=_partition_filters(partitions))
        if not files:
            return spark.createDataFrame([], spark_schema)
        if not self.is_remote and _hive_layout(files, partition_cols):
            # Spark's own Parquet reader is several times faster than reading through Python.
            # Partition values come from the hive-style folders, typed by the table schema.
            local = [f.removeprefix("file://") for f in files]
            ordered = [f.name for f in spark_schema.fields]
            return (
                spark.read.schema(spark_schema)
                .option("basePath", self.uri(table).removeprefix("file://"))
                .parquet(*local)
                .select(*ordered)
            )
        return _read_files_via_arrow(
            spark, table, dt_, _partition_filters(partitions), self.task_storage_options()
        )

    # -------------------------------------------------------------------------- writes
    def write(
        self,
        df: DataFrame,
        table: str,
        mode: WriteMode = "append",
        partition_by: Sequence[str] | None = None,
        partition: PartitionSpec | None = None,
        keys: Sequence[str] | None = None,
    ) -> CommitInfo:
        """Write a DataFrame to a table as one Delta commit.

        Args:
            mode: ``append``; ``overwrite`` replaces exactly the rows of ``partition`` (or the
                whole table when ``partition`` is None); ``merge`` upserts on ``keys``.
            partition_by: partition columns when the table is created (checked afterwards).
            partition: ``{column: value}`` of the partition an overwrite replaces; every row
                of ``df`` must belong to it.
            keys: the columns a merge matches on.
        """
        df, partition_by, exists = self._check_write(df, table, mode, partition_by, partition, keys)
        engine = self.engine(df.sparkSession)
        if engine == "delta-spark":
            return self._write_delta_spark(df, table, mode, partition_by, partition, keys)
        if mode == "merge":
            return self._merge_delta_rs(df, table, list(keys or []), partition_by, exists)
        return self._write_delta_rs(df, table, mode, partition_by, partition, exists)

    def derive(
        self,
        spark: SparkSession,
        source: str,
        target: str,
        function: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
        schema: StructType,
        columns: Sequence[str],
        version: int | None = None,
        partitions: PartitionSpec | None = None,
        mode: WriteMode = "append",
        partition_by: Sequence[str] | None = None,
        partition: PartitionSpec | None = None,
    ) -> CommitInfo:
        """Write ``function`` of ``source``'s rows to ``target`` as one Delta commit: the
        same as ``write(read(...).select(*columns).mapInArrow(function, schema), ...)``,
        in one pass over the data.

        With the delta-spark engine it is exactly that. With delta-rs, each Spark task
        reads its share of the source's Parquet row groups with pyarrow, hands them to
        ``function`` and writes what it yields as the target's files; the driver commits
        them. The rows never enter the JVM: read -> mapInArrow -> write would carry them
        JVM -> Python -> JVM -> Python, and on the scoring benchmark those crossings alone
        took longer than the predictions.

        Args:
            function: Arrow batches of ``columns`` (in ``source``'s types) to Arrow batches
                of ``schema``; it runs in the executors, so it must pickle. A column may
                come dictionary-encoded (cheapest for one value repeated): the delta-rs
                writer keeps it so, and it is decoded for Spark.
            columns: the source columns ``function`` reads (partition columns included).
            version, partitions: as in :meth:`read`.
            mode, partition_by, partition: as in :meth:`write` (``append`` or ``overwrite``).
        """
        if mode == "merge":
            raise LakehouseError(f"derive into {target}: merge is not supported; use write")
        if self.engine(spark) == "delta-spark":
            rows = self.read(spark, source, version, partitions=partitions).select(*columns)
            mapped = rows.mapInArrow(lambda b: decode_dictionaries(function(b)), schema)
            return self.write(mapped, target, mode, partition_by, partition)
        from pyspark.sql.types import StructType

        # write's checks on the output schema; the target's columns it lacks become nulls.
        partition_by, exists, lacking = self._write_plan(
            schema, target, mode, partition_by, partition, None
        )
        arrow_schema = _nullable(_arrow_schema(StructType([*schema.fields, *lacking])))
        source_table = self.delta_table(source, version)
        units = _row_groups(
            source_table, _partition_filters(partitions), self.task_storage_options()
        )
        shares = _shares(units, spark.sparkContext.defaultParallelism)
        read_rows = _unit_reader(
            source, _table_schema(source_table), list(columns), shares, self.task_storage_options()
        )
        expected = {c: _partition_str(v) for c, v in partition.items()} if partition else None
        write_files = _file_writer(
            self.uri(target),
            target,
            partition_by,
            expected,
            pa.schema([f for f in arrow_schema if f.name not in partition_by]),
            self.task_storage_options(),
            self.settings.compression,
        )
        added = [f for f in arrow_schema if f.name not in schema.names]

        def run(share_ids: Iterator[int]) -> Iterator[dict[str, Any]]:
            batches = function(read_rows(share_ids))
            if added:  # the target's columns the function does not make: nulls
                batches = (_with_nulls(b, added) for b in batches)
            for actions in write_files(batches):
                yield from actions.to_pylist()

        # One task per share. An RDD job, not spark.range(...).mapInArrow: nothing but share
        # ids and Add actions pass through Spark, and SQL planning and Arrow framing made
        # an empty job take 0.12-0.24 s instead of 0.08-0.11 s (two local tasks).
        shares_rdd = spark.sparkContext.parallelize(range(len(shares)), max(1, len(shares)))
        return self._commit_written(
            shares_rdd.mapPartitions(run),
            target,
            mode,
            partition_by,
            partition,
            exists,
            arrow_schema,
        )

    def _check_write(
        self,
        df: DataFrame,
        table: str,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        partition: PartitionSpec | None,
        keys: Sequence[str] | None,
    ) -> tuple[DataFrame, list[str], bool]:
        """The write's arguments checked against the table: ``df`` aligned to it (the
        table's columns it lacks added as nulls), the partition columns, and whether the
        table exists."""
        from pyspark.sql import functions as F

        partition_by, exists, lacking = self._write_plan(
            df.schema, table, mode, partition_by, partition, keys
        )
        if lacking:
            df = df.select("*", *(F.lit(None).cast(f.dataType).alias(f.name) for f in lacking))
        return df, partition_by, exists

    def _write_plan(
        self,
        schema: StructType,
        table: str,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        partition: PartitionSpec | None,
        keys: Sequence[str] | None,
    ) -> tuple[list[str], bool, list[StructField]]:
        """:meth:`_check_write` on the schema of the rows, without a DataFrame: the
        partition columns, whether the table exists, and the table's fields the rows lack.

        Raises:
            SchemaChangeError: a column of the rows has another type in the table.
        """
        from pyspark.sql.pandas.types import from_arrow_type
        from pyspark.sql.types import StructField

        partition_by = list(partition_by or [])
        if mode == "merge" and not keys:
            raise LakehouseError(f"merge into {table} needs keys")
        if mode not in ("append", "overwrite", "merge"):
            raise LakehouseError(f"unknown write mode {mode!r} for {table}")
        columns = {f.name: f.dataType for f in schema.fields}
        lacking: list[StructField] = []
        try:  # one load of the log answers "exists", the partitioning and the schema
            current = self.delta_table(table)
        except TableNotFoundError:
            current = None
        if current is not None:
            existing = list(current.metadata().partition_columns)
            if partition_by and partition_by != existing:
                raise LakehouseError(f"{table} is partitioned by {existing}, not {partition_by}")
            partition_by = existing
            for field in _table_schema(current):
                expected = from_arrow_type(field.type)
                if field.name not in columns:
                    lacking.append(StructField(field.name, expected, nullable=True))
                elif columns[field.name] != expected:
                    raise SchemaChangeError(
                        f"write to {table}: column {field.name!r} is "
                        f"{columns[field.name].simpleString()} in the data but "
                        f"{expected.simpleString()} in the table; only new columns may be "
                        "added (cast the column, or write a new table)"
                    )
        missing = [c for c in partition_by if c not in columns]
        if missing:
            raise LakehouseError(f"write to {table}: partition column(s) {missing} not in the data")
        if partition:
            unknown = [c for c in partition if c not in partition_by]
            if unknown:
                raise LakehouseError(
                    f"overwrite of {table}: {unknown} are not partition columns ({partition_by})"
                )
        return partition_by, current is not None, lacking

    def _write_delta_spark(
        self,
        df: DataFrame,
        table: str,
        mode: WriteMode,
        partition_by: list[str],
        partition: PartitionSpec | None,
        keys: Sequence[str] | None,
    ) -> CommitInfo:
        uri = self.uri(table)
        # Delta writes (merges too) through Spark's Parquet source, which reads its codec here.
        df.sparkSession.conf.set(
            "spark.sql.parquet.compression.codec", _SPARK_CODEC[self.settings.compression]
        )
        if mode == "merge" and self.exists(table):
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
        last = self.history(table, 1)[0]
        metrics = last.get("operationMetrics") or {}
        return CommitInfo(
            table,
            int(last["version"]),
            str(last.get("operation", mode)),
            int(metrics.get("numFiles", metrics.get("numTargetFilesAdded", 0)) or 0),
            int(metrics.get("numOutputRows", 0) or 0),
            "delta-spark",
        )

    def _write_delta_rs(
        self,
        df: DataFrame,
        table: str,
        mode: WriteMode,
        partition_by: list[str],
        partition: PartitionSpec | None,
        exists: bool,
    ) -> CommitInfo:
        arrow_schema = _nullable(_arrow_schema(df.schema))
        data_schema = pa.schema([f for f in arrow_schema if f.name not in partition_by])
        expected = {c: _partition_str(v) for c, v in partition.items()} if partition else None
        write_files = _file_writer(
            self.uri(table),
            table,
            partition_by,
            expected,
            data_schema,
            self.task_storage_options(),
            self.settings.compression,
        )
        return self._commit_written(
            df.mapInArrow(write_files, _ADD_ACTION_SCHEMA),
            table,
            mode,
            partition_by,
            partition,
            exists,
            arrow_schema,
        )

    def _commit_written(
        self,
        written: DataFrame | RDD,
        table: str,
        mode: WriteMode,
        partition_by: list[str],
        partition: PartitionSpec | None,
        exists: bool,
        arrow_schema: pa.Schema,
    ) -> CommitInfo:
        """Run the Spark job whose tasks write ``table``'s files (``written``: their
        Add actions, as rows or dicts) and commit the files as one transaction, creating
        the table with ``arrow_schema`` if it does not exist."""
        from deltalake import CommitProperties, Schema, transaction

        uri = self.uri(table)
        started = time.perf_counter()
        try:
            rows = written.collect()
        except Exception as err:
            raise _task_error(err, table) from err
        actions = [
            transaction.AddAction(
                r["path"],
                r["size"],
                json.loads(r["partition_values"]),
                r["modification_time"],
                True,
                r["stats"],
            )
            for r in rows
        ]
        n_rows = sum(int(r["num_records"]) for r in rows)
        operation = "WRITE" if mode == "append" else "OVERWRITE"
        commit_id = uuid.uuid4().hex
        props = CommitProperties(
            custom_metadata={
                "regrow.operation": operation,
                "regrow.rows": str(n_rows),
                "regrow.commit_id": commit_id,
            },
            max_commit_retries=_MAX_COMMIT_RETRIES,
        )
        delta_schema = Schema.from_arrow(arrow_schema)
        if not exists:
            try:
                transaction.create_table_with_add_actions(
                    uri,
                    delta_schema,
                    actions,
                    mode="error",
                    partition_by=partition_by or None,
                    storage_options=self.storage_options(),
                    commit_properties=props,
                )
                version = self._version_of(table, commit_id)
                return self._commit_info(table, version, operation, actions, n_rows, started)
            except Exception as err:  # another writer created it first: commit as usual below
                if not self.exists(table):
                    raise LakehouseError(f"could not create {table} at {uri}: {err}") from err
        current = self.delta_table(table)
        if self._merge_new_columns(current, table, arrow_schema):
            current = None  # the first commit attempt reloads the altered table
        committed = self._commit_files(
            table, actions, mode, partition_by, partition, delta_schema, props, current
        )
        return self._commit_info(
            table, self._version_of(table, commit_id, committed), operation, actions, n_rows,
            started,
        )  # fmt: skip

    def _commit_files(
        self,
        table: str,
        actions: list,
        mode: WriteMode,
        partition_by: list[str],
        partition: PartitionSpec | None,
        schema: Any,
        props: Any,
        current: DeltaTable | None = None,
    ) -> DeltaTable:
        """Commit written files, replacing the partition's current files on overwrite.
        ``current``: the table as just loaded, for the first attempt (saves a log load).
        Returns the table the commit went through.

        An overwrite is committed as explicit Remove actions for the files it replaces
        rather than delta-rs's predicate overwrite: delta-rs's conflict check treats a
        predicate overwrite as having read the whole table, so two writers of *different*
        partitions would fail each other. With explicit removes, only a writer that
        removed the same files conflicts; then we re-list the partition and try again,
        so the last overwrite of a partition wins and none is half-applied.
        """
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import RemoveAction

        for attempt in range(1, _MAX_COMMIT_RETRIES + 1):
            dt_ = current if attempt == 1 and current is not None else self.delta_table(table)
            removes = []
            if mode == "overwrite":
                now = int(time.time() * 1000)
                removes = [
                    RemoveAction(f["path"], True, now, f["size"], f["partition_values"])
                    for f in _files_of(dt_, partition)
                ]
            try:
                dt_.create_write_transaction(
                    actions + removes,
                    mode="append",
                    schema=_table_schema(dt_) if mode == "overwrite" else schema,
                    partition_by=partition_by or None,
                    commit_properties=props,
                )
                return dt_
            except CommitFailedError as err:
                if attempt == _MAX_COMMIT_RETRIES:
                    raise LakehouseError(
                        f"{table}: commit failed {attempt} times on concurrent writes: {err}"
                    ) from err
                logger.warning("%s: concurrent commit (%s); retrying (%d)", table, err, attempt)
                time.sleep(0.05 * attempt)

    def _version_of(self, table: str, commit_id: str, loaded: DeltaTable | None = None) -> int:
        """The version our commit landed at (other writers may have committed since).
        ``loaded``: the table as loaded before the commit; reading only the commits since
        saves loading the log again."""
        if loaded is None:
            loaded = self.delta_table(table)
        else:
            loaded.update_incremental()
        for commit in loaded.history(2 * _MAX_COMMIT_RETRIES):
            if commit.get("regrow.commit_id") == commit_id:
                return int(commit["version"])
        raise LakehouseError(f"{table}: commit {commit_id} not found in the recent history")

    def _merge_new_columns(self, dt_: DeltaTable, table: str, arrow_schema: pa.Schema) -> bool:
        """Add ``arrow_schema``'s columns the table lacks; whether there were any."""
        from deltalake import Field, Schema

        current = {f.name for f in _table_schema(dt_)}
        new = [f for f in arrow_schema if f.name not in current]
        if new:
            logger.info("%s: adding column(s) %s", table, [f.name for f in new])
            fields = Schema.from_arrow(pa.schema(new)).fields
            dt_.alter.add_columns([Field(f.name, f.type, nullable=True) for f in fields])
        return bool(new)

    def _merge_delta_rs(
        self, df: DataFrame, table: str, keys: list[str], partition_by: list[str], exists: bool
    ) -> CommitInfo:
        """Upsert on keys. delta-rs merges in the driver, so the source is collected as Arrow:
        fine for label/decision-sized updates, not for bulk loads (use append/overwrite)."""
        from deltalake import CommitProperties

        if not exists:
            return self._write_delta_rs(df, table, "append", partition_by, None, False)
        started = time.perf_counter()
        source = df.toArrow()
        source = source.cast(_nullable(source.schema))
        predicate = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
        dt_ = self.delta_table(table)
        metrics = (
            dt_.merge(
                source,
                predicate,
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                commit_properties=CommitProperties(max_commit_retries=_MAX_COMMIT_RETRIES),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        logger.info("merge into %s in %.2fs: %s", table, time.perf_counter() - started, metrics)
        return CommitInfo(
            table,
            self.table_version(table),
            "MERGE",
            int(metrics.get("num_target_files_added", 0)),
            int(metrics.get("num_source_rows", source.num_rows)),
            "delta-rs",
        )

    def _commit_info(
        self, table: str, version: int, operation: str, actions: list, rows: int, started: float
    ) -> CommitInfo:
        logger.info(
            "%s v%d: %s %d rows in %d files (%.2fs)",
            table,
            version,
            operation,
            rows,
            len(actions),
            time.perf_counter() - started,
        )
        return CommitInfo(table, version, operation, len(actions), rows, "delta-rs")


# ------------------------------------------------------------------------------ helpers
_ADD_ACTION_SCHEMA = (
    "path string, size long, partition_values string, modification_time long, "
    "stats string, num_records long"
)


def decode_dictionaries(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches`` with their dictionary-encoded columns decoded to the value type, for
    Spark's ``mapInArrow``: its JVM side cannot read a dictionary-encoded string column
    (``UNSUPPORTED_CALL`` of ``ArrowColumnVector$ArrowVectorAccessor.getUTF8String``)."""
    for batch in batches:
        if any(pa.types.is_dictionary(t) for t in batch.schema.types):
            batch = pa.RecordBatch.from_arrays(
                [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch],
                names=batch.schema.names,
            )
        yield batch


def _task_error(err: Exception, table: str) -> Exception:
    """A LakehouseError raised inside a Spark task, unwrapped from the worker's traceback."""
    marker = "LakehouseError: "
    text = str(err)
    if marker in text:
        return LakehouseError(text.split(marker, 1)[1].splitlines()[0])
    # A Python worker's error: its exception line says more than Spark's first line.
    python = [line for line in text.splitlines() if _PYTHON_ERROR.match(line)]
    reason = python[0] if python else (text.splitlines()[0] if text else repr(err))
    return LakehouseError(f"writing files of {table} failed: {reason}")


# The exception line of a Python traceback (not a JVM one: those start with a package).
_PYTHON_ERROR = re.compile(r"^(?!(org|java|scala|py4j)\.)[A-Za-z_][\w.]*(Error|Exception): ")


def _spark_has_delta(spark: SparkSession) -> bool:
    from py4j.protocol import Py4JError

    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
        return True
    except (Py4JError, AttributeError):  # class not found; Spark Connect sessions have no _jvm
        return False


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _table_schema(dt_: DeltaTable) -> pa.Schema:
    schema = dt_.schema().to_arrow()
    return pa.schema(schema) if not isinstance(schema, pa.Schema) else schema


def _partition_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _partition_filters(partitions: PartitionSpec | None) -> list[tuple[str, str, Any]] | None:
    if not partitions:
        return None
    filters = []
    for column, value in partitions.items():
        if isinstance(value, list | tuple | set):
            filters.append((column, "in", [_partition_str(v) for v in value]))
        else:
            filters.append((column, "=", _partition_str(value)))
    return filters


def _replace_where(partition: PartitionSpec) -> str:
    return " AND ".join(f"`{c}` = '{_partition_str(v)}'" for c, v in partition.items())


def _files_of(dt_: DeltaTable, partition: PartitionSpec | None) -> list[dict[str, Any]]:
    """Path, size and partition values of the table's current files in ``partition``.

    The log stores paths URL-encoded and ``get_add_actions`` returns them so, while a
    Remove action takes the decoded path (delta-rs encodes it again on commit): an encoded
    path would name no file, and an overwrite would keep the rows it should replace.
    """
    from urllib.parse import unquote

    wanted = {c: _partition_str(v) for c, v in (partition or {}).items()}
    found = []
    for row in _add_actions(dt_):
        values = {k: _partition_str(v) for k, v in (row.get("partition") or {}).items()}
        if all(values.get(c) == v for c, v in wanted.items()):
            found.append(
                {
                    "path": unquote(row["path"]),
                    "size": row["size_bytes"],
                    "partition_values": values,
                }
            )
    return found


def _add_actions(dt_: DeltaTable) -> list[dict[str, Any]]:
    """The current files: path, size_bytes, and ``partition`` (a dict) when partitioned."""
    adds = dt_.get_add_actions(flatten=False)
    adds = pa.table(adds) if not isinstance(adds, pa.Table) else adds
    columns = [c for c in ("path", "size_bytes", "partition") if c in adds.column_names]
    return adds.select(columns).to_pylist()


def _hive_layout(files: list[str], partition_cols: list[str]) -> bool:
    """Whether Spark may read the files by path and take partition values from the folders.

    Not when a folder holds a %-escaped non-ASCII value (``city=%C3%A9``, as delta-rs
    writes them): Spark unescapes byte by byte and would read ``Ã©``.
    """
    from urllib.parse import unquote

    if not partition_cols:
        return True
    marker = f"/{partition_cols[0]}="
    return all(marker in f and unquote(f.split(marker, 1)[1]).isascii() for f in files)


def _fs_and_path(uri: str, storage_options: Mapping[str, str]):
    import fsspec

    if uri.startswith("s3://"):
        endpoint = storage_options.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
        fs = fsspec.filesystem("s3", client_kwargs=client_kwargs)
        return fs, uri.removeprefix("s3://").rstrip("/")
    fs = fsspec.filesystem("file")
    return fs, uri.removeprefix("file://").rstrip("/")


def _arrow_fs(uri: str, storage_options: Mapping[str, str]):
    """A pyarrow filesystem and the path inside it (local or S3)."""
    from pyarrow import fs as pafs

    if uri.startswith("s3://"):
        endpoint = storage_options.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs |= {"endpoint_override": host, "scheme": scheme}
        region = (
            storage_options.get("AWS_REGION")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )
        if region:
            kwargs["region"] = region
        if storage_options.get("AWS_ACCESS_KEY_ID"):
            kwargs["access_key"] = storage_options["AWS_ACCESS_KEY_ID"]
            kwargs["secret_key"] = storage_options.get("AWS_SECRET_ACCESS_KEY")
            kwargs["session_token"] = storage_options.get("AWS_SESSION_TOKEN")
        return pafs.S3FileSystem(**kwargs), uri.removeprefix("s3://")
    return pafs.LocalFileSystem(), uri.removeprefix("file://")


def _count_rows(dt_: DeltaTable) -> int:
    """Row count from the log's file statistics (no data read); falls back to a scan."""
    try:
        adds = dt_.get_add_actions(flatten=True)
        adds = pa.table(adds) if not isinstance(adds, pa.Table) else adds
        counts = adds.column("num_records").to_pylist()
        if counts and all(c is not None for c in counts):
            return int(sum(counts))
        if not counts:
            return 0
    except KeyError:  # the log has no row-count statistics: count by scanning
        pass
    return sum(
        _read_delta_file(spec, _table_schema(dt_), {}).num_rows for spec in _file_specs(dt_, None)
    )


def _stats(batch_stats: dict[str, list], num_records: int) -> str:
    """Delta file statistics: row count, null counts, and min/max of every column that
    has values of a type with bounds (numbers, booleans, dates, timestamps, strings).

    A bound must never let a reader skip a file it must read: a long string's bounds are
    a prefix below and a just-greater string above, timestamps are rounded outwards to
    Delta's milliseconds. And a column must not go without bounds where it can have them:
    deltalake's ``to_pyarrow_dataset`` (1.x) turns a missing min or max into ``col >=
    null``, so any filter on that column skipped every file (``filestats_to_expression_next``
    in delta-rs's python/src/lib.rs).
    """
    mins, maxs, nulls = {}, {}, {}
    for name, (lo, hi, n_null) in batch_stats.items():
        nulls[name] = n_null
        # JSON has no infinity or NaN (and a NaN bound would be wrong anyway): no bound.
        finite = all(not isinstance(v, float) or math.isfinite(v) for v in (lo, hi))
        if lo is None or hi is None or not finite:
            continue
        lower, upper = _lower_bound(lo), _upper_bound(hi)
        if upper is not None:
            mins[name], maxs[name] = lower, upper
    return json.dumps(
        {"numRecords": num_records, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        default=str,
    )


def _file_writer(
    uri: str,
    table: str,
    partition_by: list[str],
    expected: dict[str, str | None] | None,
    data_schema: pa.Schema,
    storage_options: Mapping[str, str],
    compression: str,
):
    """The function each Spark task runs: write its rows, one Parquet file per partition
    value, and return one row of Add-action metadata per file. With ``expected`` (an
    overwrite of one partition), a row of any other partition fails the write: an
    overwrite must not smuggle in rows it would not replace on a rerun.

    Files use ``compression`` (``lakehouse.compression``) and no Parquet dictionaries: on
    regrow's tables (unique ids, a few repeated strings) dictionaries cost a third more
    write time and made the files larger (1M prediction rows: 0.16 s and 5.9 MB without,
    0.24 s and 9.3 MB with, zstd). The exception is a column that arrives
    dictionary-encoded (the caller knows it repeats, e.g. one value per batch): it is
    written as dictionary pages as it is, with no hashing or per-value statistics.

    The files carry no Arrow schema (``ARROW:schema``), as Spark's do not: every reader
    gets each column's table type (a string stays a string where it was written as a
    dictionary)."""
    suffix = _FILE_SUFFIX[compression]

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        fs, base = _arrow_fs(uri, storage_options)
        open_files: dict[tuple, dict[str, Any]] = {}
        for batch in batches:
            if batch.num_rows == 0:
                continue
            for key, part in _split_by_partition(batch, partition_by):
                entry = open_files.get(key)
                if entry is None:
                    values = dict(zip(partition_by, key, strict=True))
                    if expected and any(
                        _partition_str(values[c]) != v for c, v in expected.items()
                    ):
                        raise LakehouseError(
                            f"overwrite of {table} partition {expected}: the data holds rows of "
                            f"partition { ({c: _partition_str(v) for c, v in values.items()}) }"
                        )
                    folder = "/".join(f"{c}={_escape(v)}" for c, v in values.items())
                    rel = f"{folder}/" if folder else ""
                    rel += f"part-{uuid.uuid4().hex}{suffix}"
                    fs.create_dir(f"{base}/{rel}".rsplit("/", 1)[0], recursive=True)
                    sink = fs.open_output_stream(f"{base}/{rel}")
                    file_schema = _file_schema(data_schema, part.schema)
                    encoded = [f.name for f in file_schema if pa.types.is_dictionary(f.type)]
                    entry = {
                        "rel": rel,
                        "values": values,
                        "sink": sink,
                        "schema": file_schema,
                        "writer": pq.ParquetWriter(
                            sink,
                            file_schema,
                            compression=compression,
                            use_dictionary=encoded or False,
                            store_schema=False,
                        ),
                        "rows": 0,
                        "stats": {},
                    }
                    open_files[key] = entry
                chunk = pa.Table.from_batches([part.select(data_schema.names)])
                chunk = chunk.cast(entry["schema"])
                entry["writer"].write_table(chunk)
                entry["rows"] += chunk.num_rows
                for name in data_schema.names:
                    column = chunk.column(name)
                    lo, hi = _min_max(column)
                    old = entry["stats"].get(name)
                    if old is not None:
                        lo = old[0] if lo is None else (lo if old[0] is None else min(lo, old[0]))
                        hi = old[1] if hi is None else (hi if old[1] is None else max(hi, old[1]))
                        entry["stats"][name] = (lo, hi, old[2] + column.null_count)
                    else:
                        entry["stats"][name] = (lo, hi, column.null_count)
        rows = []
        for entry in open_files.values():
            entry["writer"].close()
            entry["sink"].close()
            size = fs.get_file_info(f"{base}/{entry['rel']}").size
            rows.append(
                {
                    "path": entry["rel"],
                    "size": size,
                    "partition_values": json.dumps(
                        {k: _partition_str(v) for k, v in entry["values"].items()}
                    ),
                    "modification_time": int(time.time() * 1000),
                    "stats": _stats(entry["stats"], entry["rows"]),
                    "num_records": entry["rows"],
                }
            )
        if rows:
            yield pa.RecordBatch.from_pylist(rows)

    return write


def _file_schema(data_schema: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """The schema a file is written with: ``data_schema``, except that a column arriving
    dictionary-encoded over values of its type stays dictionary-encoded."""
    fields = []
    for field in data_schema:
        type_ = incoming.field(field.name).type
        keep = pa.types.is_dictionary(type_) and type_.value_type == field.type
        fields.append(field.with_type(type_) if keep else field)
    return pa.schema(fields)


def _min_max(column: pa.ChunkedArray) -> tuple[Any, Any]:
    """The least and greatest non-null values of ``column`` (None, None if it has none or
    its type gets no file statistics: binary, decimal, nested). A dictionary-encoded
    column gives its dictionary's range: it holds every value, so the range bounds them."""
    import pyarrow.compute as pc

    if column.null_count == len(column):
        return None, None
    if pa.types.is_dictionary(column.type):
        column = pa.chunked_array([c.dictionary for c in column.chunks], column.type.value_type)
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.string())
    type_ = column.type
    if not (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_date(type_)
        or pa.types.is_timestamp(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
    ):
        return None, None
    mm = pc.min_max(column)
    return mm["min"].as_py(), mm["max"].as_py()


# Strings longer than this get a prefix as their lower bound and a just-greater string
# as their upper bound (Delta Spark's dataSkippingStringPrefixLength is 32 too).
_STRING_BOUND_CHARS = 32


def _lower_bound(value: Any) -> Any:
    """A JSON value for minValues that is <= ``value`` as readers compare it."""
    if isinstance(value, str):
        return value[:_STRING_BOUND_CHARS]
    if isinstance(value, dt.datetime):  # Delta keeps milliseconds: round down
        return _timestamp_stat(_floor_ms(value))
    return value


def _upper_bound(value: Any) -> Any:
    """A JSON value for maxValues that is >= ``value`` as readers compare it (None: none)."""
    if isinstance(value, str):
        if len(value) <= _STRING_BOUND_CHARS:
            return value
        # The prefix with its last character that can grow grown by one code point: greater
        # than every string that starts with the prefix (code point order = UTF-8 byte order).
        prefix = value[:_STRING_BOUND_CHARS]
        for i in range(len(prefix) - 1, -1, -1):
            code = ord(prefix[i]) + 1
            if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters
                code = 0xE000
            if code <= 0x10FFFF:
                return prefix[:i] + chr(code)
        return None
    if isinstance(value, dt.datetime):  # Delta keeps milliseconds: round up
        floor = _floor_ms(value)
        return _timestamp_stat(floor if floor == value else floor + dt.timedelta(milliseconds=1))
    return value


def _floor_ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _timestamp_stat(value: dt.datetime) -> str:
    """A timestamp as delta-rs writes it in file statistics: UTC with a Z, or (without a
    time zone, timestamp_ntz) local with a space."""
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _escape(value: Any) -> str:
    """Hive-style partition folder value (the Add action keeps the real value)."""
    from urllib.parse import quote

    text = _partition_str(value)
    return "__HIVE_DEFAULT_PARTITION__" if text is None else quote(text, safe=" -_.:")


def _split_by_partition(
    batch: pa.RecordBatch, partition_by: list[str]
) -> Iterator[tuple[tuple, pa.RecordBatch]]:
    if not partition_by:
        yield (), batch
        return
    import pyarrow.compute as pc

    table = pa.Table.from_batches([batch])
    keys = table.select(partition_by).group_by(partition_by).aggregate([])
    if keys.num_rows == 1:  # the usual case (a day's write): no copy
        key = keys.to_pylist()[0]
        yield tuple(key[c] for c in partition_by), batch
        return
    for key in keys.to_pylist():
        mask = None
        for column, value in key.items():
            cond = pc.is_null(table[column]) if value is None else pc.equal(table[column], value)
            mask = cond if mask is None else pc.and_(mask, cond)
        part = table.filter(mask).combine_chunks()
        yield tuple(key[c] for c in partition_by), part.to_batches()[0]


def _file_specs(dt_: DeltaTable, filters: list | None) -> list[dict[str, Any]]:
    """Each current file (absolute URI) with its partition values, as the Delta log has them.

    Files are read with pyarrow directly rather than ``DeltaTable.to_pyarrow_*``: that path
    runs deltalake's Rust filesystem under pyarrow's threads and can abort the interpreter
    at exit ("terminate called without an active exception", delta-rs#2184, polars#24169).
    """
    from urllib.parse import unquote

    by_path = {row["path"]: row.get("partition") or {} for row in _add_actions(dt_)}
    by_path |= {unquote(p): v for p, v in by_path.items()}
    table_uri = dt_.table_uri.rstrip("/")
    local_root = table_uri.removeprefix("file://")
    specs = []
    for uri in dt_.file_uris(file_pruning_predicate=filters):
        rel = uri.removeprefix(table_uri).removeprefix(local_root).lstrip("/")
        values = by_path.get(rel) or by_path.get(unquote(rel)) or {}
        specs.append({"uri": uri, "values": {k: _partition_str(v) for k, v in values.items()}})
    return specs


def _read_delta_file(
    spec: dict[str, Any], target: pa.Schema, storage_options: Mapping[str, str]
) -> pa.Table:
    """One Delta data file as Arrow in the table's schema: partition values added from
    the log, columns added since the file was written filled with nulls."""
    import pyarrow.parquet as pq

    fs, path = _arrow_fs(spec["uri"], storage_options)
    return _complete(pq.read_table(path, filesystem=fs), spec["values"], target)


def _complete(data, values: Mapping[str, str | None], target: pa.Schema):
    """Rows of a data file (Table or RecordBatch) in ``target``'s columns and types: the
    partition ``values`` added, columns the file predates filled with nulls."""
    for field in target:
        if field.name in values:
            value = pa.array([values[field.name]], pa.string()).cast(field.type)[0]
            data = data.append_column(field.name, pa.repeat(value, data.num_rows))
        elif field.name not in data.schema.names:
            data = data.append_column(field.name, pa.nulls(data.num_rows, field.type))
    return data.select(target.names).cast(target)


def _with_nulls(batch: pa.RecordBatch, fields: Sequence[pa.Field]) -> pa.RecordBatch:
    for field in fields:
        batch = batch.append_column(field, pa.nulls(batch.num_rows, field.type))
    return batch


def _arrow_schema(schema: StructType) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema, timezone="UTC")


def _row_groups(
    dt_: DeltaTable, filters: list | None, storage_options: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every row group of the table's current files (in ``filters``' partitions): its
    file's URI and partition values, its index in the file, and its rows (from the
    Parquet footer, one small read per file)."""
    import pyarrow.parquet as pq

    units = []
    for spec in _file_specs(dt_, filters):
        fs, path = _arrow_fs(spec["uri"], storage_options)
        meta = pq.read_metadata(path, filesystem=fs)
        units += [
            {**spec, "row_group": i, "rows": meta.row_group(i).num_rows}
            for i in range(meta.num_row_groups)
        ]
    return units


def _shares(units: list[dict[str, Any]], tasks: int) -> list[list[dict[str, Any]]]:
    """``units`` (row groups) cut into at most ``tasks`` shares of about the same rows (the
    largest row group goes to the share with the fewest rows so far). A share is a list
    of files, each with its row groups in file order."""
    shares: list[tuple[list[int], dict[str, dict[str, Any]]]] = [
        ([0], {}) for _ in range(max(1, min(tasks, len(units))))
    ]
    for unit in sorted(units, key=lambda u: -u["rows"]):
        rows, files = min(shares, key=lambda share: share[0][0])
        rows[0] += unit["rows"]
        entry = files.setdefault(
            unit["uri"], {"uri": unit["uri"], "values": unit["values"], "row_groups": []}
        )
        entry["row_groups"].append(unit["row_group"])
    for _, files in shares:
        for entry in files.values():
            entry["row_groups"].sort()
    return [list(files.values()) for _, files in shares if files]


def _unit_reader(
    table: str,
    target: pa.Schema,
    columns: list[str],
    shares: list[list[dict[str, Any]]],
    storage_options: Mapping[str, str],
):
    """The function a task runs on its shares: given share numbers, the shares' row groups
    (all of a file's when ``row_groups`` is None) as Arrow batches of ``columns``, in the
    table's types (``target``)."""
    unknown = [c for c in columns if c not in target.names]
    if unknown:
        raise LakehouseError(f"columns {unknown} are not in {table} (it has {target.names})")
    wanted = pa.schema([target.field(c) for c in columns])

    def read(share_ids: Iterable[int]) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        for share in share_ids:
            for spec in shares[share]:
                fs, path = _arrow_fs(spec["uri"], storage_options)
                parquet = pq.ParquetFile(path, filesystem=fs)
                stored = parquet.schema_arrow.names
                present = [c for c in columns if c in stored and c not in spec["values"]]
                # One thread: a task shares the machine with as many tasks as cores.
                for batch in parquet.iter_batches(
                    batch_size=_BATCH_ROWS,
                    row_groups=spec["row_groups"],
                    columns=present,
                    use_threads=False,
                ):
                    yield _complete(batch, spec["values"], wanted)

    return read


def _read_files_via_arrow(
    spark: SparkSession, table: str, dt_: DeltaTable, filters: list | None, storage_options
) -> DataFrame:
    """Read Delta files in Spark tasks through pyarrow (for stores Spark's JVM can't reach,
    e.g. S3 without hadoop-aws): each file whole, partition values from the Delta log, the
    files spread over up to twice as many tasks as cores."""
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = _table_schema(dt_)
    shares = [[{**spec, "row_groups": None}] for spec in _file_specs(dt_, filters)]
    read = _unit_reader(table, schema, schema.names, shares, storage_options)

    def read_files(tasks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return read(i for task in tasks for i in task.column("id").to_pylist())

    tasks = max(1, min(len(shares), spark.sparkContext.defaultParallelism * 2))
    # spark.range gives each task a run of ids, so every file is read exactly once.
    return spark.range(0, len(shares), 1, tasks).mapInArrow(read_files, from_arrow_schema(schema))
