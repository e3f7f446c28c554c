"""regrow.storage.commit: the Delta commit rules, without Spark.

Tables are made with plain ``deltalake.write_deltalake`` in tmp_path; files are written by
the delta-rs file writer run in this process (what a Spark task runs), then committed by
``commit_adds`` as the driver does. What the integration tests check through Spark (a
killed writer, concurrent writers, S3, a whole write's round trip) is not repeated here.
"""

from __future__ import annotations

import datetime as dt

import deltalake
import pyarrow as pa
import pytest
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from regrow.storage.commit import Commit, commit_adds, plan_write, task_error
from regrow.storage.delta_log import TableLocation, nullable
from regrow.storage.errors import LakehouseError, SchemaChangeError
from regrow.storage.writer import file_writer

D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
TABLE = "silver.events"


@pytest.fixture
def location(tmp_path) -> TableLocation:
    return TableLocation(TABLE, str(tmp_path / "silver" / "events"), {})


def create(location: TableLocation, rows: pa.Table, partition_by=None) -> None:
    deltalake.write_deltalake(location.uri, rows, partition_by=partition_by)


def events(ids: list[str], amounts: list[float], days: list[dt.date]) -> pa.Table:
    return pa.table(
        {
            "event_id": pa.array(ids, pa.string()),
            "amount": pa.array(amounts, pa.float64()),
            "day": pa.array(days, pa.date32()),
        }
    )


def written(location: TableLocation, rows: pa.Table, partition_by: list[str]) -> list[dict]:
    """The Add-action rows the file writer returns for ``rows``, its files written."""
    schema = nullable(rows.schema)
    data_schema = pa.schema([f for f in schema if f.name not in partition_by])
    write = file_writer(location.uri, TABLE, partition_by, None, data_schema, {}, "zstd")
    return [row for out in write(iter(rows.to_batches())) for row in out.to_pylist()]


def commit(location, rows, mode, partition_by, partition=None, exists=True, schema=None):
    adds = written(location, rows, partition_by)
    schema = nullable(schema or rows.schema)
    return commit_adds(adds, Commit(location, mode, partition_by, partition, exists, schema))


def table_rows(location: TableLocation, *columns: str) -> list[tuple]:
    table = deltalake.DeltaTable(location.uri).to_pyarrow_table()
    return sorted(tuple(r[c] for c in columns) for r in table.to_pylist())


# ------------------------------------------------------------------------------ commits
def test_appended_add_actions_are_one_new_version_with_the_files_rows_and_stats(location):
    create(location, events(["a"], [1.0], [D1]), partition_by=["day"])

    info = commit(location, events(["b", "c"], [2.0, 3.0], [D1, D2]), "append", ["day"])

    table = deltalake.DeltaTable(location.uri)
    assert (info.version, info.operation, info.files_added, info.rows_written) == (
        1,
        "WRITE",
        2,  # one file per partition value
        2,
    )
    assert table.version() == 1
    assert table_rows(location, "event_id", "day") == [("a", D1), ("b", D1), ("c", D2)]
    last = table.history(1)[0]
    assert last["regrow.operation"] == "WRITE" and last["regrow.rows"] == "2"
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert sorted((a["partition.day"], a["num_records"]) for a in adds) == [
        (D1, 1),
        (D1, 1),
        (D2, 1),
    ]
    by_day = {a["partition.day"]: a["max.amount"] for a in adds if a["num_records"]}
    assert by_day[D2] == 3.0  # the writer's statistics went into the log


def test_an_overwrite_of_a_partition_removes_only_that_partitions_files(location):
    create(location, events(["a", "b", "c"], [1.0, 2.0, 3.0], [D1, D2, D2]), ["day"])
    d1_files = {u for u in deltalake.DeltaTable(location.uri).file_uris() if "day=2026-01-01" in u}

    info = commit(location, events(["z"], [9.0], [D2]), "overwrite", ["day"], partition={"day": D2})

    table = deltalake.DeltaTable(location.uri)
    assert info.operation == "OVERWRITE" and table.version() == info.version == 1
    assert table_rows(location, "event_id", "day") == [("a", D1), ("z", D2)]
    files = table.file_uris()
    assert d1_files <= set(files) and len(files) == 2  # D1's file kept, D2's two replaced
    # The previous version still has the replaced rows (time travel, vacuum later).
    old = deltalake.DeltaTable(location.uri, version=0).to_pyarrow_table()
    assert sorted(old["event_id"].to_pylist()) == ["a", "b", "c"]


def test_a_new_column_is_added_to_the_table_and_the_commit_names_its_own_version(location):
    create(location, events(["a"], [1.0], [D1]), partition_by=["day"])
    rows = events(["b"], [2.0], [D1]).append_column("note", pa.array(["new"], pa.string()))

    info = commit(location, rows, "append", ["day"])

    table = deltalake.DeltaTable(location.uri)
    schema = table.schema().to_arrow()
    assert pa.schema(schema).field("note").nullable
    # Adding the column is a commit of its own: the write's version is the one after it.
    assert table.version() == 2 and info.version == 2
    assert table_rows(location, "event_id", "note") == [("a", None), ("b", "new")]


def test_a_table_that_another_writer_created_first_is_committed_to(location):
    create(location, events(["a"], [1.0], [D1]), partition_by=["day"])

    # exists=False: the write planned a new table, but it is there by commit time.
    info = commit(location, events(["b"], [2.0], [D2]), "append", ["day"], exists=False)

    assert info.version == 1
    assert table_rows(location, "event_id") == [("a",), ("b",)]


def test_a_new_table_is_created_with_the_writes_schema_and_partitioning(location):
    info = commit(
        location, events(["a", "b"], [1.0, 2.0], [D1, D2]), "append", ["day"], exists=False
    )

    table = deltalake.DeltaTable(location.uri)
    assert info.version == 0 and table.metadata().partition_columns == ["day"]
    assert [f.name for f in table.schema().fields] == ["event_id", "amount", "day"]
    assert table_rows(location, "event_id", "day") == [("a", D1), ("b", D2)]


# --------------------------------------------------------------------------- write rules
EVENTS = StructType(
    [
        StructField("event_id", StringType()),
        StructField("amount", DoubleType()),
        StructField("day", DateType()),
    ]
)


def test_a_type_change_is_refused_naming_the_column_and_both_types(location):
    rows = events(["a"], [1.0], [D1]).append_column("n", pa.array([1], pa.int32()))
    create(location, rows, partition_by=["day"])
    wider = StructType([*EVENTS.fields, StructField("n", LongType())])

    with pytest.raises(SchemaChangeError, match=r"column 'n' is bigint in the data but int"):
        plan_write(wider, location, "append", None, None, None)


def test_a_plan_takes_the_tables_partitioning_and_the_columns_the_rows_lack(location):
    create(location, events(["a"], [1.0], [D1]), partition_by=["day"])
    without_amount = StructType([EVENTS["event_id"], EVENTS["day"]])

    partition_by, exists, lacking = plan_write(
        without_amount, location, "overwrite", None, {"day": D1}, None
    )

    assert (partition_by, exists) == (["day"], True)
    assert [(f.name, f.dataType, f.nullable) for f in lacking] == [("amount", DoubleType(), True)]


def test_a_plan_for_a_new_table_keeps_the_partitioning_asked_for(location):
    assert plan_write(EVENTS, location, "append", ["day"], None, None) == (["day"], False, [])


@pytest.mark.parametrize(
    ("schema", "partition_by", "partition", "message"),
    [
        (EVENTS, ["event_id"], None, r"partitioned by \['day'\], not \['event_id'\]"),
        (
            StructType([EVENTS["event_id"], EVENTS["amount"]]),
            None,
            None,
            r"partition column\(s\) \['day'\] not in the data",
        ),
        (EVENTS, None, {"amount": 1.0}, r"\['amount'\] are not partition columns"),
    ],
    ids=["other-partitioning", "no-partition-column", "overwrite-of-a-non-partition"],
)
def test_a_write_that_does_not_fit_the_tables_partitioning_is_refused(
    location, schema, partition_by, partition, message
):
    create(location, events(["a"], [1.0], [D1]), partition_by=["day"])

    with pytest.raises(LakehouseError, match=message):
        plan_write(schema, location, "overwrite", partition_by, partition, None)


def test_an_int_column_written_as_int_is_no_type_change(location):
    rows = events(["a"], [1.0], [D1]).append_column("n", pa.array([1], pa.int32()))
    create(location, rows)
    same = StructType([*EVENTS.fields, StructField("n", IntegerType())])

    assert plan_write(same, location, "append", None, None, None) == ([], True, [])


# ---------------------------------------------------------------------------- task errors
def test_atask_error_names_the_python_exception_not_the_jvm_wrapper():
    jvm = Exception(
        "An error occurred while calling o123.collectToPython.\n"
        "org.apache.spark.SparkException: Job aborted due to stage failure\n"
        '  File "/worker.py", line 5, in write\n'
        "pyarrow.lib.ArrowTypeError: Expected bytes, got a float\n"
        "java.lang.RuntimeException: more\n"
    )
    ours = Exception(
        "org.apache.spark.api.python.PythonException: Traceback:\n"
        "regrow.storage.errors.LakehouseError: overwrite of silver.events partition x\n"
        "  at org.apache.spark..."
    )

    assert str(task_error(jvm, TABLE)) == (
        "writing files of silver.events failed: "
        "pyarrow.lib.ArrowTypeError: Expected bytes, got a float"
    )
    assert str(task_error(ours, TABLE)) == "overwrite of silver.events partition x"
    assert isinstance(task_error(ours, TABLE), LakehouseError)
