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

This module is the facade; the work is in the modules beside it: :mod:`.options` (where
the tables are), :mod:`.delta_log`, :mod:`.reader` and :mod:`.writer` (delta-rs files),
:mod:`.file_stats`, :mod:`.commit` (the Delta transaction and the write rules),
:mod:`.delta_spark` (the other engine) and :mod:`.sql`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from regrow.settings import LakehouseSettings, Settings
from regrow.storage.commit import (
    Commit,
    CommitInfo,
    WriteMode,
    append_rows,
    commit_adds,
    commit_collected,
    commit_written,
    merge_rows,
    plan_write,
    replace_rows,
    written_here,
)
from regrow.storage.delta_log import (
    PartitionSpec,
    TableLocation,
    nullable,
    partition_filters,
    partition_str,
    table_schema,
)
from regrow.storage.delta_spark import read_with_spark, spark_has_delta, write_with_spark
from regrow.storage.errors import (
    LakehouseError,
    MissingPartitionError,
    SchemaChangeError,
    StorageUnreachableError,
    TableNotFoundError,
)
from regrow.storage.options import (
    describe_unreachable,
    fsspec_fs,
    reaching,
    s3a_conf,
    storage_options,
    task_storage_options,
)
from regrow.storage.reader import (
    check_columns,
    count_rows,
    decode_dictionaries,
    file_specs,
    read_dataframe,
    read_delta_file,
    row_groups,
    share_row_groups,
    unit_reader,
    with_nulls,
)
from regrow.storage.session import default_parallelism, is_connect, one_task_if_small
from regrow.storage.sql import run_sql, tables_named
from regrow.storage.writer import ADD_ACTION_SCHEMA, arrow_schema_of, file_writer

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = [
    "CommitInfo",
    "Lakehouse",
    "LakehouseError",
    "MissingPartitionError",
    "SchemaChangeError",
    "TableInfo",
    "TableNotFoundError",
    "decode_dictionaries",
]

logger = logging.getLogger(__name__)

Engine = Literal["delta-spark", "delta-rs"]


@dataclass(frozen=True)
class TableInfo:
    table: str
    uri: str
    version: int
    rows: int
    partition_by: list[str]


def _with_operation(commit: dict[str, Any]) -> dict[str, Any]:
    """A commit of the history with ``regrow.operation`` (delta-rs commits by regrow carry
    it; Spark's are named from their operation and mode)."""
    if "regrow.operation" not in commit:
        operation = str(commit.get("operation", ""))
        mode = str((commit.get("operationParameters") or {}).get("mode", ""))
        commit = {**commit, "regrow.operation": "OVERWRITE"
                  if operation in ("WRITE", "CREATE OR REPLACE TABLE AS SELECT")
                  and mode == "Overwrite" else operation}  # fmt: skip
    return commit


# The engines `auto` has chosen in this process, and the tables kept on delta-rs under
# delta-spark: each logged once.
_AUTO_LOGGED: set[str] = set()
_FALLBACK_LOGGED: set[str] = set()
# What Delta Spark refuses in a column name without column mapping.
_SPARK_REFUSES = re.compile(r"[ ,;{}()\n\t=]")
# Partitions whose files hold at most this many bytes (Parquet, as the Delta log sizes
# them) are read into memory for several queries: see Lakehouse.read_to_query. A
# 2,000-event day is about 100 KiB; a 1M-row day, tens of MiB.
LOCAL_READ_BYTES = 2 * 2**20


class Lakehouse:
    """Delta tables under one root; ``engine`` is resolved on first use when ``auto``."""

    def __init__(self, settings: LakehouseSettings, root: str | None = None) -> None:
        self.settings = settings
        self.root = (root or settings.root).rstrip("/")
        if self.root.startswith("s3a://"):  # Spark's name for S3; delta-rs and pyarrow say s3
            self.root = "s3://" + self.root.removeprefix("s3a://")
        self._engine: Engine | None = None if settings.engine == "auto" else settings.engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Lakehouse:
        """The lakehouse of params.yaml: ``lakehouse.root`` resolved against its folder."""
        return cls(settings.lakehouse, settings.resolve(settings.lakehouse.root))

    # ---------------------------------------------------------------- naming and options
    def uri(self, table: str) -> str:
        parts = table.split(".")
        if len(parts) != 2 or not all(p.isidentifier() for p in parts):
            raise LakehouseError(f"table name {table!r} is not of the form layer.name")
        return f"{self.root}/{parts[0]}/{parts[1]}"

    def spark_uri(self, spark: SparkSession, table: str) -> str:
        """A table's URI for Spark's own reads and writes (the delta-spark engine): on S3
        an ``s3a://`` URI, with the session's S3A settings taken from the lakehouse's storage
        options (the endpoint, region and credentials delta-rs uses)."""
        uri = self.uri(table)
        if not uri.startswith("s3://"):
            return uri
        for key, value in s3a_conf(self.settings.storage_options).items():
            spark.conf.set(key, value)  # session conf reaches the session's Hadoop conf
        return "s3a://" + uri.removeprefix("s3://")

    @property
    def is_remote(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")

    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options: params.yaml's non-secret ones over the environment's."""
        return storage_options(self.settings.storage_options, self.root)

    def task_storage_options(self) -> dict[str, str]:
        """Storage options shipped to Spark tasks: the driver's, plus the driver
        environment's AWS credentials (see :func:`.options.task_storage_options`)."""
        return task_storage_options(self.settings.storage_options, self.root)

    def _location(self, table: str) -> TableLocation:
        return TableLocation(table, self.uri(table), self.storage_options())

    def engine(self, spark: SparkSession | None = None) -> Engine:
        """The engine in use: the configured one, or for ``auto`` delta-spark if its
        connector is loaded in this Spark session (``make setup`` fetches it), else
        delta-rs. The choice of ``auto`` is logged once per process."""
        if self._engine is None:
            self._engine = (
                "delta-spark" if spark is not None and spark_has_delta(spark) else "delta-rs"
            )
            if self._engine not in _AUTO_LOGGED:
                _AUTO_LOGGED.add(self._engine)
                logger.info("lakehouse engine: %s (auto)", self._engine)
        if self._engine == "delta-spark" and spark is not None and not spark_has_delta(spark):
            raise LakehouseError(
                "lakehouse.engine is delta-spark but this Spark session has no Delta Lake "
                "connector: run `make setup` (or `regrow jars fetch`) to fetch its jars, "
                "restart the Spark Connect server if one is used (`regrow spark stop`), or "
                "set lakehouse.engine: delta-rs"
            )
        return self._engine

    def _engine_for(
        self, spark: SparkSession, table: str, columns: Callable[[], Sequence[str]]
    ) -> Engine:
        """The engine of one read or write: :meth:`engine`, except delta-rs for a table
        with a column name Delta Spark refuses (a space, one of ``,;{}()=``, a tab or a
        newline: its DELTA_INVALID_CHARACTERS_IN_COLUMN_NAMES). Column mapping would lift
        that, but its files hold renamed columns that regrow's Arrow readers and writer
        do not map; delta-rs writes such names as they are. ``columns`` (the data's and the
        table's) are asked for only under delta-spark."""
        engine = self.engine(spark)
        if engine != "delta-spark":
            return engine
        names = columns()
        if any(_SPARK_REFUSES.search(c) for c in names):
            if table not in _FALLBACK_LOGGED:
                _FALLBACK_LOGGED.add(table)
                bad = sorted(c for c in set(names) if _SPARK_REFUSES.search(c))
                logger.info("%s: columns %s need delta-rs (Delta Spark refuses the names)",
                            table, bad)  # fmt: skip
            return "delta-rs"
        return engine

    # ------------------------------------------------------------------------ metadata
    def delta_table(self, table: str, version: int | None = None) -> DeltaTable:
        with self._reaching(table):
            return self._location(table).load(version)

    def exists(self, table: str) -> bool:
        with self._reaching(table):
            return self._location(table).exists()

    def _reaching(self, table: str | None = None):
        """A block whose S3-cannot-be-reached error names the table's URI, lakehouse.root
        and the endpoint (:func:`.options.reaching`)."""
        uri = self.uri(table) if table else self.root
        return reaching(uri, "lakehouse.root", self.storage_options(),
                        "lakehouse.storage_options")  # fmt: skip

    def table_version(self, table: str) -> int:
        return self.delta_table(table).version()

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits of a table, newest first (version, timestamp, operation, parameters),
        each with ``regrow.operation`` (WRITE, OVERWRITE or MERGE) whichever engine wrote it."""
        return [_with_operation(c) for c in self.delta_table(table).history(limit)]

    def spark_schema(self, table: str, version: int | None = None) -> StructType:
        """The Spark schema of ``table`` (at ``version``) from its Delta log, without making
        a DataFrame: the schema :meth:`read` gives with the delta-rs engine (delta-spark
        reads every column as nullable)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(table_schema(self.delta_table(table, version)))

    def partition_by(self, table: str) -> list[str]:
        return list(self.delta_table(table).metadata().partition_columns)

    def partition_rows(self, table: str, column: str | None = None) -> dict[str, int]:
        """Rows per value of a partition column of ``table`` (``{"2026-01-01": n}``), from
        the Delta log's file statistics (no data is read); ``{}`` if there is no table.

        Args:
            column: the partition column to count by; default: the first one.
        """
        found = self._file_stats(table, column)
        if found is None:
            return {}
        adds, column = found
        counts: dict[str, int] = {}
        for row in adds.select([f"partition.{column}", "num_records"]).to_pylist():
            value = str(row[f"partition.{column}"])
            counts[value] = counts.get(value, 0) + int(row["num_records"] or 0)
        return counts

    def partition_bounds(
        self, table: str, column: str, partition_column: str
    ) -> dict[str, tuple[Any, Any] | None]:
        """The least and greatest value of ``column`` in each partition of
        ``partition_column`` (``{"2026-01-01": (low, high)}``), from the Delta log's file
        statistics (no data is read): bounds, not always the values themselves (a long
        string's are cut). None for a partition with a file whose statistics do not bound
        its values; a partition whose files hold no value of ``column`` is left out; ``{}``
        if there is no table."""
        found = self._file_stats(table, partition_column)
        if found is None:
            return {}
        adds, _ = found
        part_of, nulls_of = f"partition.{partition_column}", f"null_count.{column}"
        min_of, max_of = f"min.{column}", f"max.{column}"
        wanted = [part_of, "num_records", nulls_of, min_of, max_of]
        bounds: dict[str, tuple[Any, Any] | None] = {}
        unknown: set[str] = set()
        for row in adds.select([c for c in wanted if c in adds.column_names]).to_pylist():
            part = str(row[part_of])
            low, high = row.get(min_of), row.get(max_of)
            if low is None or high is None:
                nulls = row.get(nulls_of)
                if nulls is None or nulls != row.get("num_records"):
                    unknown.add(part)  # values its statistics do not bound
                continue
            known = bounds.get(part)
            bounds[part] = (low, high) if known is None else (min(known[0], low),
                                                              max(known[1], high))  # fmt: skip
        return bounds | dict.fromkeys(unknown)

    def _file_stats(self, table: str, column: str | None) -> tuple[pa.Table, str] | None:
        """The flattened Add actions of ``table`` (its files' partition values and
        statistics) and the partition ``column`` checked against the table's (default: its
        first); None if there is no table."""
        if not self.exists(table):
            return None
        dt_ = self.delta_table(table)
        columns = list(dt_.metadata().partition_columns)
        column = column or (columns[0] if columns else None)
        if column not in columns:
            raise LakehouseError(f"{table} is not partitioned by {column} ({columns})")
        adds = dt_.get_add_actions(flatten=True)
        return (pa.table(adds) if not isinstance(adds, pa.Table) else adds), column

    def partition_written(
        self, table: str, column: str, holding: str | None = None
    ) -> dict[str, int]:
        """When each value of partition ``column`` of ``table`` was last written: the newest
        file's modification time (ms since the epoch) from the Delta log, no data read;
        ``{}`` if there is no table.

        Args:
            holding: count only the files whose statistics show a non-null value of this
                column (a file without statistics counts; none counts when the table has
                no such column).
        """
        if not self.exists(table):
            return {}
        delta = self.delta_table(table)
        if holding is not None and holding not in {f.name for f in delta.schema().fields}:
            # A table another writer made without it (no statistics of it either): no
            # file holds a value, which the rule above would have counted as unknown.
            return {}
        adds = delta.get_add_actions(flatten=True)
        adds = pa.table(adds) if not isinstance(adds, pa.Table) else adds
        if adds.num_rows == 0:
            return {}
        written = adds["modification_time"]
        if pa.types.is_timestamp(written.type):
            written = written.cast(pa.timestamp("ms")).cast(pa.int64())
        nulls = f"null_count.{holding}"
        newest: dict[str, int] = {}
        for i, value in enumerate(adds[f"partition.{column}"].to_pylist()):
            if holding is not None and nulls in adds.column_names:
                n, null = adds["num_records"][i].as_py(), adds[nulls][i].as_py()
                if n is not None and null is not None and null >= n:
                    continue  # every row of the file has no value there
            newest[str(value)] = max(newest.get(str(value), 0), written[i].as_py())
        return newest

    def require_days(
        self,
        table: str,
        days: Sequence[dt.date],
        column: str,
        hint: str = "",
        present: Mapping[str, int] | None = None,
    ) -> None:
        """Raise :class:`MissingPartitionError` naming every one of ``days`` that has no rows
        in ``table``'s ``column`` partitions (``present``: those rows per day, when the
        caller has just read them with :meth:`partition_rows`)."""
        if present is None:
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
        fs, root = fsspec_fs(self.root, self.storage_options())
        infos = []
        with self._reaching():
            log_dirs = sorted(fs.glob(f"{root}/*/*/_delta_log"))
            if not log_dirs and self.is_remote and not fs.exists(root.split("/")[0]):
                raise StorageUnreachableError(
                    describe_unreachable(self.root, "lakehouse.root", self.storage_options(),
                                         "the bucket does not exist", "lakehouse.storage_options")
                )  # fmt: skip
        for log_dir in log_dirs:
            layer, name = log_dir.rstrip("/").split("/")[-3:-1]
            table = f"{layer}.{name}"
            dt_ = self.delta_table(table)
            rows = count_rows(dt_)
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
        self,
        table: str,
        version: int | None = None,
        partitions: PartitionSpec | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """A table (or some partitions of it, some of its ``columns``) as Arrow, without
        Spark (queries, small reads). Only the ``columns`` asked for are read from the
        files: a 10M-row predictions day read whole to count two of its columns held
        1.8 GiB in the driver.

        Raises:
            LakehouseError: a column of ``columns`` is not in the table (its columns named).
        """
        dt_ = self.delta_table(table, version)
        schema = table_schema(dt_)
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise LakehouseError(
                    f"{table} has no column(s) {unknown}; its columns are {schema.names}"
                )
            schema = pa.schema([schema.field(c) for c in columns])
        return self._arrow_of(file_specs(dt_, partition_filters(partitions)), schema)

    def _arrow_of(self, specs: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
        """The files of ``specs`` (:func:`~regrow.storage.reader.file_specs`) as one Arrow
        table in ``schema``'s columns."""
        pieces = [read_delta_file(spec, schema, self.storage_options()) for spec in specs]
        return pa.concat_tables(pieces) if pieces else schema.empty_table()

    def sql(self, query: str) -> pa.Table:
        """Run SQL (DuckDB) over the tables the query names as ``layer.name``.

        Only the named tables are loaded (as Arrow, at their latest version); a name that is
        no table under the root is an error that lists the tables there are.
        """
        tables = {}
        for table in tables_named(query):
            if not self.exists(table):
                known = ", ".join(i.table for i in self.tables()) or "none"
                raise TableNotFoundError(
                    f"query names {table}, which does not exist (tables: {known})"
                )
            tables[table] = self.to_arrow(table)
        return run_sql(query, tables)

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
        return append_rows(self._location(table), rows, partition_by)

    def replace_records(
        self,
        table: str,
        rows: pa.Table,
        where: Mapping[str, Any],
        partition_by: Sequence[str] | None = None,
    ) -> CommitInfo:
        """Replace the records matching ``where`` (``{column: value or [values]}``) with
        ``rows``, without Spark, as one Delta commit: a rerun replaces what the first run
        wrote (a day's monitoring results, a day's policy decision) instead of repeating it.
        Every row must match ``where``."""
        return replace_rows(self._location(table), rows, where, partition_by)

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

        def names() -> list[str]:
            dt_ = self.delta_table(table, version)  # a missing table or version: one error
            return table_schema(dt_).names

        if self._engine_for(spark, table, names) == "delta-spark":
            df = read_with_spark(spark, self.spark_uri(spark, table), version, partitions)
        else:
            df = read_dataframe(
                spark,
                self._location(table),
                version,
                partitions,
                self.is_remote,
                self.task_storage_options(),
            )
        return df.where(where) if where else df

    def read_days(
        self, spark: SparkSession, table: str, column: str, days: Sequence[Any]
    ) -> DataFrame:
        """``days``' partitions of ``table`` by ``column``, as one Spark task when the Delta
        log counts them small (:func:`~regrow.storage.session.one_task_if_small`): a query
        that groups or joins them is then one Spark job."""
        rows = self.partition_rows(table, column)
        return one_task_if_small(
            self.read(spark, table, partitions={column: list(days)}),
            sum(rows.get(str(d), 0) for d in days),
        )

    def read_to_query(
        self, spark: SparkSession, table: str, partitions: PartitionSpec
    ) -> DataFrame:
        """``partitions`` of ``table`` for a caller that runs several queries on them (a
        suite's metrics): :meth:`read`, except that partitions whose files hold at most
        :data:`LOCAL_READ_BYTES` (their sizes in the Delta log) are read by this process
        and handed to Spark as rows in memory, with the schema :meth:`read` gives.

        Why: each query of a partition read from its files opens each file and reads its
        footer in a task; for a small day that costs more than its rows. Read once into
        memory, a small day's bronze suites took 0.81 s instead of 0.86 s and the loans'
        silver ones 0.78 s instead of 0.88 s (docs/spark.md, 2026-12-08). A larger
        partition is read by Spark's scan as ever, and so is every read on the delta-spark
        engine (Delta's own connector reads there).
        """
        df = self.read(spark, table, partitions=partitions)
        if self._engine_for(spark, table, lambda: df.columns) == "delta-spark":
            return df
        dt_ = self.delta_table(table)
        specs = file_specs(dt_, partition_filters(partitions))
        sizes = [spec["size"] for spec in specs]
        if not specs or None in sizes or sum(sizes) > LOCAL_READ_BYTES:
            return df  # none (read gives an empty frame already), unknown, or too large
        rows = self._arrow_of(specs, table_schema(dt_)).select(df.columns)
        return spark.createDataFrame(rows, schema=df.schema)

    # -------------------------------------------------------------------------- writes
    def write(
        self,
        df: DataFrame,
        table: str,
        mode: WriteMode = "append",
        partition_by: Sequence[str] | None = None,
        partition: PartitionSpec | None = None,
        keys: Sequence[str] | None = None,
        rows_at_most: int | None = None,
    ) -> CommitInfo:
        """Write a DataFrame to a table as one Delta commit.

        Args:
            mode: ``append``; ``overwrite`` replaces exactly the rows of ``partition`` (or the
                whole table when ``partition`` is None); ``merge`` upserts on ``keys``.
            partition_by: partition columns when the table is created (checked afterwards).
            partition: ``{column: value}`` of the partition an overwrite replaces; every row
                of ``df`` must belong to it.
            keys: the columns a merge matches on.
            rows_at_most: how many rows ``df`` holds at most, when the caller knows it
                without a Spark job (a day's landed records, a partition's row count in the
                Delta log). On the delta-rs engine, an append or overwrite of at most
                ``lakehouse.driver_write_rows`` is collected and written by this process
                instead of Spark's tasks (:func:`.commit.commit_collected`). A wrong
                bound costs memory, never rows: the whole of ``df`` is written either way.
        """
        from pyspark.sql import functions as F

        # The write's arguments checked against the table (:func:`.commit.plan_write`); the
        # table's columns ``df`` lacks are added as nulls.
        partition_by, exists, lacking = plan_write(
            df.schema, self._location(table), mode, partition_by, partition, keys
        )
        if lacking:
            df = df.select("*", *(F.lit(None).cast(f.dataType).alias(f.name) for f in lacking))

        def names() -> list[str]:
            return [*df.columns, *(self.spark_schema(table).names if exists else [])]

        if self._engine_for(df.sparkSession, table, names) == "delta-spark":
            return write_with_spark(
                df,
                self.spark_uri(df.sparkSession, table),
                self._location(table),
                mode,
                partition_by,
                partition,
                keys,
                self.settings.compression,
            )
        if mode == "merge":
            if not exists:
                return self._write_delta_rs(df, table, "append", partition_by, None, False)
            return merge_rows(df, self._location(table), list(keys or []))
        return self._write_delta_rs(
            df, table, mode, partition_by, partition, exists, self._small(rows_at_most)
        )

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
        took longer than the predictions. A source of at most
        ``lakehouse.driver_write_rows`` rows (its row groups' counts) is read, mapped and
        written the same way by this process, with no Spark job.

        Args:
            function: Arrow batches of ``columns`` (in ``source``'s types) to Arrow batches
                of ``schema``; it runs in the executors (or here), so it must pickle. A
                column may come dictionary-encoded (cheapest for one value repeated): the
                delta-rs writer keeps it so, and it is decoded for Spark.
            columns: the source columns ``function`` reads (partition columns included).
            version, partitions: as in :meth:`read`.
            mode, partition_by, partition: as in :meth:`write` (``append`` or ``overwrite``).
        """
        if mode == "merge":
            raise LakehouseError(f"derive into {target}: merge is not supported; use write")
        if self._engine_for(spark, target, lambda: [*columns, *schema.names]) == "delta-spark":
            rows = self.read(spark, source, version, partitions=partitions)
            check_columns(source, rows.columns, columns)
            rows = rows.select(*columns)
            mapped = rows.mapInArrow(lambda b: decode_dictionaries(function(b)), schema)
            return self.write(mapped, target, mode, partition_by, partition)
        from pyspark.sql.types import StructType

        # write's checks on the output schema; the target's columns it lacks become nulls.
        partition_by, exists, lacking = plan_write(
            schema, self._location(target), mode, partition_by, partition, None
        )
        arrow_schema = nullable(arrow_schema_of(StructType([*schema.fields, *lacking])))
        source_table = self.delta_table(source, version)
        units = row_groups(source_table, partition_filters(partitions), self.task_storage_options())
        shares = share_row_groups(units, default_parallelism(spark))
        read_rows = unit_reader(
            source, table_schema(source_table), list(columns), shares, self.task_storage_options()
        )
        expected = {c: partition_str(v) for c, v in partition.items()} if partition else None
        write_files = file_writer(
            self.uri(target),
            target,
            partition_by,
            expected,
            pa.schema([f for f in arrow_schema if f.name not in partition_by]),
            self.task_storage_options(),
            self.settings.compression,
        )
        added = [f for f in arrow_schema if f.name not in schema.names]

        def write_shares(share_ids: Iterable[int]) -> Iterator[pa.RecordBatch]:
            batches = function(read_rows(share_ids))
            if added:  # the target's columns the function does not make: nulls
                batches = (with_nulls(b, added) for b in batches)
            yield from write_files(batches)  # one batch of Add actions per file

        commit = Commit(self._location(target), mode, partition_by, partition, exists, arrow_schema)
        if self._small(sum(unit["rows"] for unit in units)):
            # Small (the row groups' counts say it): no Spark job; ``function`` runs here.
            started = time.perf_counter()
            actions = written_here(write_shares(range(len(shares))), target)
            return commit_adds(actions, commit, started, written_by="driver")
        tasks = max(1, len(shares))
        if is_connect(spark):
            # Spark Connect has no RDDs: spark.range gives each task a run of share ids.
            def write_ranges(ids: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                return write_shares(i for batch in ids for i in batch.column("id").to_pylist())

            ranges = spark.range(0, len(shares), 1, tasks)
            return commit_written(ranges.mapInArrow(write_ranges, ADD_ACTION_SCHEMA), commit)

        def write_partition(share_ids: Iterator[int]) -> Iterator[dict[str, Any]]:
            for actions in write_shares(share_ids):
                yield from actions.to_pylist()

        # One task per share. An RDD job, not spark.range(...).mapInArrow: nothing but share
        # ids and Add actions pass through Spark, and SQL planning and Arrow framing made
        # an empty job take 0.12-0.24 s instead of 0.08-0.11 s (two local tasks).
        shares_rdd = spark.sparkContext.parallelize(range(len(shares)), tasks)
        return commit_written(shares_rdd.mapPartitions(write_partition), commit)

    def _small(self, rows: int | None) -> bool:
        """Whether a delta-rs write of ``rows`` (None: unknown) is written by this process
        (``lakehouse.driver_write_rows``; 0: never)."""
        limit = self.settings.driver_write_rows
        return rows is not None and limit > 0 and rows <= limit

    def _write_delta_rs(
        self,
        df: DataFrame,
        table: str,
        mode: WriteMode,
        partition_by: list[str],
        partition: PartitionSpec | None,
        exists: bool,
        here: bool = False,
    ) -> CommitInfo:
        """Spark's tasks write the files (``mapInArrow``), or with ``here`` this process
        does, from one Arrow collect: a small write then starts no Python worker (the
        figures: ``lakehouse.driver_write_rows``)."""
        arrow_schema = nullable(arrow_schema_of(df.schema))
        data_schema = pa.schema([f for f in arrow_schema if f.name not in partition_by])
        expected = {c: partition_str(v) for c, v in partition.items()} if partition else None
        write_files = file_writer(
            self.uri(table),
            table,
            partition_by,
            expected,
            data_schema,
            self.storage_options() if here else self.task_storage_options(),
            self.settings.compression,
        )
        commit = Commit(self._location(table), mode, partition_by, partition, exists, arrow_schema)
        if here:
            return commit_collected(df, write_files, commit)
        return commit_written(df.mapInArrow(write_files, ADD_ACTION_SCHEMA), commit)
