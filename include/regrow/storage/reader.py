"""The delta-rs engine's reader: a table's current files, found in its Delta log and read
with pyarrow, as Arrow (``to_arrow``) or as a Spark DataFrame whose tasks read their share
of the files or row groups (``read``, ``derive``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from regrow.storage.delta_log import (
    PartitionSpec,
    TableLocation,
    add_actions,
    partition_filters,
    partition_str,
    table_schema,
)
from regrow.storage.errors import LakehouseError
from regrow.storage.options import arrow_fs
from regrow.storage.session import default_parallelism

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame, SparkSession

# Rows per Arrow batch a derive task reads (and per row group it writes).
_BATCH_ROWS = 65_536


def read_dataframe(
    spark: SparkSession,
    location: TableLocation,
    version: int | None,
    partitions: PartitionSpec | None,
    remote: bool,
    task_storage_options: Mapping[str, str],
) -> DataFrame:
    """A table (at ``version``, in ``partitions``) as a Spark DataFrame, by Spark's own
    Parquet reader where it can reach the files, else by pyarrow in Spark tasks."""
    from pyspark.sql.pandas.types import from_arrow_schema

    dt_ = location.load(version)
    partition_cols = list(dt_.metadata().partition_columns)
    spark_schema = from_arrow_schema(table_schema(dt_))  # as spark_schema() gives it
    files = data_file_uris(dt_, partition_filters(partitions))
    if not files:
        return spark.createDataFrame([], spark_schema)
    if not remote and _hive_layout(files, partition_cols):
        # Spark's own Parquet reader is several times faster than reading through Python.
        # Partition values come from the hive-style folders, typed by the table schema.
        local = [f.removeprefix("file://") for f in files]
        ordered = [f.name for f in spark_schema.fields]
        return (
            spark.read.schema(spark_schema)
            .option("basePath", location.uri.removeprefix("file://"))
            .parquet(*local)
            .select(*ordered)
        )
    return _read_files_via_arrow(
        spark, location.table, dt_, partition_filters(partitions), task_storage_options
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


def count_rows(dt_: DeltaTable) -> int:
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
        read_delta_file(spec, table_schema(dt_), {}).num_rows for spec in file_specs(dt_, None)
    )


def file_specs(dt_: DeltaTable, filters: list | None) -> list[dict[str, Any]]:
    """Each current file (absolute URI) with its partition values and its size in bytes
    (``size``), as the Delta log has them.

    Files are read with pyarrow directly rather than ``DeltaTable.to_pyarrow_*``: that path
    runs deltalake's Rust filesystem under pyarrow's threads and can abort the interpreter
    at exit ("terminate called without an active exception", delta-rs#2184, polars#24169).
    """
    from urllib.parse import unquote

    by_path = {row["path"]: row for row in add_actions(dt_)}
    by_path |= {unquote(p): row for p, row in by_path.items()}
    table_uri = dt_.table_uri.rstrip("/")
    local_root = table_uri.removeprefix("file://")
    specs = []
    for uri in dt_.file_uris(file_pruning_predicate=filters):
        rel = uri.removeprefix(table_uri).removeprefix(local_root).lstrip("/")
        add = by_path.get(rel) or by_path.get(unquote(rel)) or {}
        values = add.get("partition") or {}
        specs.append({"uri": _root_decoded(dt_, uri), "size": add.get("size_bytes"),
                      "values": {k: partition_str(v) for k, v in values.items()}})  # fmt: skip
    return specs


def data_file_uris(dt_: DeltaTable, filters: list | None) -> list[str]:
    """The current data files as their storage names them.

    delta-rs's ``file_uris()`` gives the table's root %-escaped (``/tmp/My%20Documents/t``)
    but the partition folders as they are on disk (delta-rs escapes those in the folder
    names themselves: ``city=x%20y``), so only the root is decoded.
    """
    return [_root_decoded(dt_, uri) for uri in dt_.file_uris(file_pruning_predicate=filters)]


def _root_decoded(dt_: DeltaTable, uri: str) -> str:
    from urllib.parse import unquote

    table_uri = dt_.table_uri.rstrip("/")
    for root in (table_uri, table_uri.removeprefix("file://")):
        if uri.startswith(root + "/"):
            return unquote(root) + uri[len(root) :]
    return uri


def read_delta_file(
    spec: dict[str, Any], target: pa.Schema, storage_options: Mapping[str, str]
) -> pa.Table:
    """One Delta data file as Arrow in ``target``'s columns (the table's, or some of them):
    partition values added from the log, columns added since the file was written filled
    with nulls. Only the file's columns that ``target`` names are read."""
    import pyarrow.parquet as pq

    fs, path = arrow_fs(spec["uri"], storage_options)
    parquet = pq.ParquetFile(path, filesystem=fs)
    stored = [n for n in parquet.schema_arrow.names if n in target.names]
    return _complete(parquet.read(columns=stored), spec["values"], target)


def _complete(data, values: Mapping[str, str | None], target: pa.Schema):
    """Rows of a data file (Table or RecordBatch) in ``target``'s columns and types: the
    partition ``values`` added, columns the file predates filled with nulls."""
    for field in target:
        if field.name in values:
            if field.name in data.schema.names:
                # Writers may keep partition columns in the files too (Delta Spark 4.4
                # does); the log's partition values are the ones that count.
                data = data.drop_columns([field.name])
            value = pa.array([values[field.name]], pa.string()).cast(field.type)[0]
            data = data.append_column(field.name, pa.repeat(value, data.num_rows))
        elif field.name not in data.schema.names:
            data = data.append_column(field.name, pa.nulls(data.num_rows, field.type))
    return data.select(target.names).cast(target)


def with_nulls(batch: pa.RecordBatch, fields: Sequence[pa.Field]) -> pa.RecordBatch:
    for field in fields:
        batch = batch.append_column(field, pa.nulls(batch.num_rows, field.type))
    return batch


def row_groups(
    dt_: DeltaTable, filters: list | None, storage_options: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every row group of the table's current files (in ``filters``' partitions): its
    file's URI and partition values, its index in the file, and its rows (from the
    Parquet footer, one small read per file)."""
    import pyarrow.parquet as pq

    units = []
    for spec in file_specs(dt_, filters):
        fs, path = arrow_fs(spec["uri"], storage_options)
        meta = pq.read_metadata(path, filesystem=fs)
        units += [
            {**spec, "row_group": i, "rows": meta.row_group(i).num_rows}
            for i in range(meta.num_row_groups)
        ]
    return units


def share_row_groups(units: list[dict[str, Any]], tasks: int) -> list[list[dict[str, Any]]]:
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


def check_columns(table: str, names: Sequence[str], columns: Sequence[str]) -> None:
    """Raise LakehouseError naming the ``columns`` that are not among ``table``'s."""
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise LakehouseError(f"columns {unknown} are not in {table} (it has {list(names)})")


def unit_reader(
    table: str,
    target: pa.Schema,
    columns: list[str],
    shares: list[list[dict[str, Any]]],
    storage_options: Mapping[str, str],
):
    """The function a task runs on its shares: given share numbers, the shares' row groups
    (all of a file's when ``row_groups`` is None) as Arrow batches of ``columns``, in the
    table's types (``target``)."""
    check_columns(table, target.names, columns)
    wanted = pa.schema([target.field(c) for c in columns])

    def read(share_ids: Iterable[int]) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        for share in share_ids:
            for spec in shares[share]:
                fs, path = arrow_fs(spec["uri"], storage_options)
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

    schema = table_schema(dt_)
    shares = [[{**spec, "row_groups": None}] for spec in file_specs(dt_, filters)]
    read = unit_reader(table, schema, schema.names, shares, storage_options)

    def read_files(tasks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return read(i for task in tasks for i in task.column("id").to_pylist())

    tasks = max(1, min(len(shares), default_parallelism(spark) * 2))
    # spark.range gives each task a run of ids, so every file is read exactly once.
    return spark.range(0, len(shares), 1, tasks).mapInArrow(read_files, from_arrow_schema(schema))


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
