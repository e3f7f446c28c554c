"""What a table's Delta log says, as the other storage modules need it: the table at a
location (loaded, or missing), its Arrow schema, its current files and their partition
values, and partition values as the log writes them (strings)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from regrow.storage.errors import LakehouseError, TableNotFoundError

if TYPE_CHECKING:
    from deltalake import DeltaTable

PartitionSpec = Mapping[str, Any]

# Properties of every table regrow creates. Loading a table reads its last checkpoint and
# then each commit file after it. delta-rs checkpoints every 100 commits by default
# (delta-io/delta-rs#3708; Delta on Spark every 10), so a table written once a day replayed
# up to 99 JSON files on every load, and a range backfill loads its tables about 40 times
# a day: 39 ms a load of bronze.events 99 commits after a checkpoint against 4-8 ms just
# after one (docs/spark.md). Both engines honour the property; it is set only on create.
CHECKPOINT_INTERVAL = 10
TABLE_CONFIGURATION = {"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)}


@dataclass(frozen=True)
class TableLocation:
    """A table (``layer.name``, for messages) at its URI, with the storage options to reach it."""

    table: str
    uri: str
    storage_options: Mapping[str, str]

    def load(self, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError as DeltaNotFound

        try:
            return DeltaTable(self.uri, version=version, storage_options=dict(self.storage_options))
        except DeltaNotFound as err:
            raise TableNotFoundError(f"table {self.table} does not exist at {self.uri}") from err
        except Exception as err:  # deltalake raises a bare exception for a missing version
            if version is not None and "version" in str(err).lower():
                raise LakehouseError(f"table {self.table} has no version {version}: {err}") from err
            raise

    def exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri, storage_options=dict(self.storage_options))


def table_schema(dt_: DeltaTable) -> pa.Schema:
    schema = dt_.schema().to_arrow()
    return pa.schema(schema) if not isinstance(schema, pa.Schema) else schema


def nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def partition_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def partition_filters(partitions: PartitionSpec | None) -> list[tuple[str, str, Any]] | None:
    if not partitions:
        return None
    filters = []
    for column, value in partitions.items():
        if isinstance(value, list | tuple | set):
            filters.append((column, "in", [partition_str(v) for v in value]))
        else:
            filters.append((column, "=", partition_str(value)))
    return filters


def add_actions(dt_: DeltaTable) -> list[dict[str, Any]]:
    """The current files: path, size_bytes, and ``partition`` (a dict) when partitioned."""
    adds = dt_.get_add_actions(flatten=False)
    adds = pa.table(adds) if not isinstance(adds, pa.Table) else adds
    columns = [c for c in ("path", "size_bytes", "partition") if c in adds.column_names]
    return adds.select(columns).to_pylist()
