"""The Delta commit protocol through ``deltalake``: the rules a write must pass against the
table (partitioning, column types: only new columns merge), and the commit of the files
Spark tasks wrote as one transaction (Add actions, Removes for an overwritten partition,
retries on concurrent writers); also the driver-side merge and append of small records."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

import pyarrow as pa

from regrow.storage.delta_log import (
    TABLE_CONFIGURATION,
    PartitionSpec,
    TableLocation,
    add_actions,
    nullable,
    partition_str,
    table_schema,
)
from regrow.storage.errors import LakehouseError, SchemaChangeError, TableNotFoundError

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark import RDD
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructField, StructType

logger = logging.getLogger(__name__)

WriteMode = Literal["append", "overwrite", "merge"]

# Commit retries on a concurrent-writer conflict (delta-rs checks that the other commit
# touched none of our partitions before it retries).
_MAX_COMMIT_RETRIES = 20
# The exception line of a Python traceback (not a JVM one: those start with a package).
_PYTHON_ERROR = re.compile(r"^(?!(org|java|scala|py4j)\.)[A-Za-z_][\w.]*(Error|Exception): ")


@dataclass(frozen=True)
class CommitInfo:
    table: str
    version: int
    operation: str
    files_added: int
    rows_written: int
    engine: str
    # Who wrote the files: Spark's "tasks", the "driver" (a small delta-rs write, or a
    # delta-rs merge or append of records), or "delta-spark" (Delta's own writer).
    written_by: str = "tasks"


def plan_write(
    schema: StructType,
    location: TableLocation,
    mode: WriteMode,
    partition_by: Sequence[str] | None,
    partition: PartitionSpec | None,
    keys: Sequence[str] | None,
) -> tuple[list[str], bool, list[StructField]]:
    """A write's arguments checked against the table, on the schema of the rows: the
    partition columns, whether the table exists, and the table's fields the rows lack.

    Raises:
        SchemaChangeError: a column of the rows has another type in the table.
    """
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField

    table = location.table
    partition_by = list(partition_by or [])
    if mode == "merge" and not keys:
        raise LakehouseError(f"merge into {table} needs keys")
    if mode not in ("append", "overwrite", "merge"):
        raise LakehouseError(f"unknown write mode {mode!r} for {table}")
    columns = {f.name: f.dataType for f in schema.fields}
    lacking: list[StructField] = []
    try:  # one load of the log answers "exists", the partitioning and the schema
        current = location.load()
    except TableNotFoundError:
        current = None
    if current is not None:
        existing = list(current.metadata().partition_columns)
        if partition_by and partition_by != existing:
            raise LakehouseError(f"{table} is partitioned by {existing}, not {partition_by}")
        partition_by = existing
        for field in table_schema(current):
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


@dataclass(frozen=True)
class Commit:
    """What one write commits: to which table, how (``append``, or ``overwrite`` of
    ``partition``: of the whole table when None), the table's partitioning and schema
    (``arrow_schema``: the table is created with it, or gains its new columns), and whether
    the table existed when the write was planned (:func:`plan_write`)."""

    location: TableLocation
    mode: WriteMode
    partition_by: list[str]
    partition: PartitionSpec | None
    exists: bool
    arrow_schema: pa.Schema


def commit_written(written: DataFrame | RDD, commit: Commit) -> CommitInfo:
    """Run the Spark job whose tasks write the table's files (``written``: their
    Add actions, as rows or dicts) and commit the files as one transaction, creating
    the table if it does not exist."""
    started = time.perf_counter()
    try:
        rows = written.collect()
    except Exception as err:
        raise task_error(err, commit.location.table) from err
    return commit_adds(rows, commit, started)


def commit_collected(
    df: DataFrame,
    write_files: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
    commit: Commit,
) -> CommitInfo:
    """Collect ``df`` to this process as Arrow, write its files here with ``write_files``
    (the function a Spark task would run) and commit them as :func:`commit_written` does:
    for a write small enough to hold, one Spark job without a Python worker."""
    started = time.perf_counter()
    try:
        collected = df.toArrow()
    except Exception as err:
        raise task_error(err, commit.location.table) from err
    rows = written_here(write_files(iter(collected.to_batches())), commit.location.table)
    return commit_adds(rows, commit, started, written_by="driver")


def written_here(actions: Iterator[pa.RecordBatch], table: str) -> list[dict[str, Any]]:
    """The Add actions of files a writer made in this process (as rows), its error
    raised as the same write by Spark's tasks raises it (:func:`task_error`)."""
    try:
        return [row for batch in actions for row in batch.to_pylist()]
    except LakehouseError:
        raise
    except Exception as err:
        raise LakehouseError(
            f"writing files of {table} failed: {type(err).__name__}: {err}"
        ) from err


def commit_adds(
    rows: Sequence[Any],
    commit: Commit,
    started: float | None = None,
    written_by: str = "tasks",
) -> CommitInfo:
    """Commit written files (``rows``: their Add actions, as the file writer returns them)
    as one transaction, as ``commit`` says.

    Args:
        started: when the write began (``time.perf_counter``), for the log line.
    """
    from deltalake import CommitProperties, Schema, transaction

    location = commit.location
    table, uri = location.table, location.uri
    started = time.perf_counter() if started is None else started
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
    operation = "WRITE" if commit.mode == "append" else "OVERWRITE"
    commit_id = uuid.uuid4().hex
    props = CommitProperties(
        custom_metadata={
            "regrow.operation": operation,
            "regrow.rows": str(n_rows),
            "regrow.commit_id": commit_id,
        },
        max_commit_retries=_MAX_COMMIT_RETRIES,
    )
    delta_schema = Schema.from_arrow(commit.arrow_schema)
    if not commit.exists:
        # The create is tried once: when two writers create the table at the same moment,
        # delta-rs retries the losing create as the next version, with its files added and
        # none of the winner's removed, so two overwrites of one partition kept both
        # writers' rows (tests/integration/test_concurrent_create.py). The loser fails here
        # instead and commits below as an overwrite of what the winner wrote.
        once = CommitProperties(custom_metadata=props.custom_metadata, max_commit_retries=0)
        try:
            transaction.create_table_with_add_actions(
                uri,
                delta_schema,
                actions,
                mode="error",
                partition_by=commit.partition_by or None,
                configuration=TABLE_CONFIGURATION,
                storage_options=dict(location.storage_options),
                commit_properties=once,
            )
            version = _version_of(location, commit_id)
            return _commit_info(table, version, operation, actions, n_rows, started, written_by)
        except Exception as err:  # another writer created it first: commit as usual below
            if not location.exists():
                raise LakehouseError(f"could not create {table} at {uri}: {err}") from err
    current = location.load()
    if _merge_new_columns(current, table, commit.arrow_schema):
        current = None  # the first commit attempt reloads the altered table
    committed = _commit_files(commit, actions, delta_schema, props, current)
    version = _version_of(location, commit_id, committed)
    return _commit_info(table, version, operation, actions, n_rows, started, written_by)


def merge_rows(df: DataFrame, location: TableLocation, keys: list[str]) -> CommitInfo:
    """Upsert on keys into an existing table. delta-rs merges in the driver, so the source
    is collected as Arrow: fine for label/decision-sized updates, not for bulk loads (use
    append/overwrite)."""
    from deltalake import CommitProperties

    started = time.perf_counter()
    source = df.toArrow()
    source = source.cast(nullable(source.schema))
    predicate = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    dt_ = location.load()
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
    logger.info(
        "merge into %s in %.2fs: %s", location.table, time.perf_counter() - started, metrics
    )
    return CommitInfo(
        location.table,
        location.load().version(),
        "MERGE",
        int(metrics.get("num_target_files_added", 0)),
        int(metrics.get("num_source_rows", source.num_rows)),
        "delta-rs",
        "driver",
    )


def append_rows(
    location: TableLocation, rows: pa.Table, partition_by: Sequence[str] | None = None
) -> CommitInfo:
    """Append a few rows (decisions, audit records) without Spark, as one Delta commit.
    New columns are merged into the schema; a type change is refused like any other write."""
    from deltalake import write_deltalake
    from deltalake.exceptions import SchemaMismatchError

    table = location.table
    if location.exists():
        current = table_schema(location.load())
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
            location.uri, rows, mode="append", partition_by=list(partition_by or []) or None,
            schema_mode="merge", configuration=TABLE_CONFIGURATION,  # a new table's only
            storage_options=dict(location.storage_options),
        )  # fmt: skip
    except SchemaMismatchError as err:
        raise SchemaChangeError(f"append to {table}: {err}") from err
    dt_ = location.load()
    return CommitInfo(table, dt_.version(), "append", 1, rows.num_rows, "delta-rs", "driver")


def replace_rows(
    location: TableLocation,
    rows: pa.Table,
    where: Mapping[str, Any],
    partition_by: Sequence[str] | None = None,
) -> CommitInfo:
    """Replace the rows that match ``where`` (``{column: value or [values]}``) with
    ``rows``, as one Delta commit (a new table is created). For records a rerun must
    replace, not repeat (a day's monitoring results, a day's policy decision).

    Every row of ``rows`` must match ``where``: delta-rs refuses a predicate overwrite
    whose new rows fall outside the predicate.
    """
    if not location.exists():
        return append_rows(location, rows, partition_by)
    from deltalake import write_deltalake
    from deltalake.exceptions import DeltaError

    predicate = sql_predicate(where)
    try:
        write_deltalake(
            location.uri, rows, mode="overwrite", predicate=predicate,
            partition_by=list(partition_by or []) or None,
            storage_options=dict(location.storage_options),
        )  # fmt: skip
    except DeltaError as err:
        raise LakehouseError(f"replace rows of {location.table} where {predicate}: {err}") from err
    dt_ = location.load()
    return CommitInfo(
        location.table, dt_.version(), "overwrite", 1, rows.num_rows, "delta-rs", "driver"
    )


def sql_predicate(where: Mapping[str, Any]) -> str:
    """``{column: value or [values]}`` as a delta-rs (DataFusion) SQL predicate."""

    def literal(value: Any) -> str:
        return "'" + str(value).replace("'", "''") + "'"

    terms = []
    for column, value in where.items():
        name = '"' + column.replace('"', '""') + '"'
        if isinstance(value, list | tuple | set | frozenset):
            terms.append(f"{name} IN ({', '.join(literal(v) for v in sorted(map(str, value)))})")
        else:
            terms.append(f"{name} = {literal(value)}")
    return " AND ".join(terms)


def _commit_files(
    commit: Commit, actions: list, schema: Any, props: Any, current: DeltaTable | None = None
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

    location, mode, partition = commit.location, commit.mode, commit.partition
    for attempt in range(1, _MAX_COMMIT_RETRIES + 1):
        dt_ = current if attempt == 1 and current is not None else location.load()
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
                schema=table_schema(dt_) if mode == "overwrite" else schema,
                partition_by=commit.partition_by or None,
                commit_properties=props,
            )
            return dt_
        except CommitFailedError as err:
            if attempt == _MAX_COMMIT_RETRIES:
                raise LakehouseError(
                    f"{location.table}: commit failed {attempt} times on concurrent writes: {err}"
                ) from err
            logger.warning(
                "%s: concurrent commit (%s); retrying (%d)", location.table, err, attempt
            )
            time.sleep(0.05 * attempt)


def _version_of(location: TableLocation, commit_id: str, loaded: DeltaTable | None = None) -> int:
    """The version our commit landed at (other writers may have committed since).
    ``loaded``: the table as loaded before the commit; reading only the commits since
    saves loading the log again."""
    if loaded is None:
        loaded = location.load()
    else:
        loaded.update_incremental()
    for commit in loaded.history(2 * _MAX_COMMIT_RETRIES):
        if commit.get("regrow.commit_id") == commit_id:
            return int(commit["version"])
    raise LakehouseError(f"{location.table}: commit {commit_id} not found in the recent history")


def _merge_new_columns(dt_: DeltaTable, table: str, arrow_schema: pa.Schema) -> bool:
    """Add ``arrow_schema``'s columns the table lacks; whether there were any."""
    from deltalake import Field, Schema

    current = {f.name for f in table_schema(dt_)}
    new = [f for f in arrow_schema if f.name not in current]
    if new:
        logger.info("%s: adding column(s) %s", table, [f.name for f in new])
        fields = Schema.from_arrow(pa.schema(new)).fields
        dt_.alter.add_columns([Field(f.name, f.type, nullable=True) for f in fields])
    return bool(new)


def _commit_info(
    table: str,
    version: int,
    operation: str,
    actions: list,
    rows: int,
    started: float,
    written_by: str,
) -> CommitInfo:
    logger.info(
        "%s v%d: %s %d rows in %d files written by the %s (%.2fs)",
        table,
        version,
        operation,
        rows,
        len(actions),
        written_by,
        time.perf_counter() - started,
    )
    return CommitInfo(table, version, operation, len(actions), rows, "delta-rs", written_by)


def _files_of(dt_: DeltaTable, partition: PartitionSpec | None) -> list[dict[str, Any]]:
    """Path, size and partition values of the table's current files in ``partition``.

    The log stores paths URL-encoded and ``get_add_actions`` returns them so, while a
    Remove action takes the decoded path (delta-rs encodes it again on commit): an encoded
    path would name no file, and an overwrite would keep the rows it should replace.
    """
    wanted = {c: partition_str(v) for c, v in (partition or {}).items()}
    found = []
    for row in add_actions(dt_):
        values = {k: partition_str(v) for k, v in (row.get("partition") or {}).items()}
        if all(values.get(c) == v for c, v in wanted.items()):
            found.append(
                {
                    "path": unquote(row["path"]),
                    "size": row["size_bytes"],
                    "partition_values": values,
                }
            )
    return found


def task_error(err: Exception, table: str) -> Exception:
    """A LakehouseError raised inside a Spark task, unwrapped from the worker's traceback."""
    marker = "LakehouseError: "
    text = str(err)
    if marker in text:
        return LakehouseError(text.split(marker, 1)[1].splitlines()[0])
    # A Python worker's error: its exception line says more than Spark's first line.
    python = [line for line in text.splitlines() if _PYTHON_ERROR.match(line)]
    reason = python[0] if python else (text.splitlines()[0] if text else repr(err))
    return LakehouseError(f"writing files of {table} failed: {reason}")
