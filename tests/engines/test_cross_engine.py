"""One table, two engines: what one engine writes the other reads, appends to, overwrites
partitions of, merges into and time-travels — the Delta protocol is the contract, not the
engine that wrote the files."""

from __future__ import annotations

import datetime as dt
import logging

import deltalake
import pyarrow as pa
import pytest

from regrow.settings import LakehouseSettings
from regrow.storage.lakehouse import Lakehouse

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
NARROW = "event_id string, amount double, event_date date"
WIDE = "event_id string, amount double, event_date date, channel string"
TABLE = "bronze.events"


def rows_of(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())


def arrow_rows(table: pa.Table) -> list[tuple]:
    names = sorted(table.column_names)
    return sorted(tuple(r[c] for c in names) for r in table.to_pylist())


@pytest.mark.parametrize(
    ("first", "second"), [("delta-rs", "delta-spark"), ("delta-spark", "delta-rs")]
)
def test_a_table_of_one_engine_is_read_extended_and_time_travelled_by_the_other(
    spark, tmp_path, first, second
):
    a = Lakehouse(LakehouseSettings(engine=first), str(tmp_path))
    b = Lakehouse(LakehouseSettings(engine=second), str(tmp_path))
    assert (a.engine(spark), b.engine(spark)) == (first, second)

    # (delta-rs commits a new column as a commit of its own: versions are as returned.)
    # v0 by the first engine; v1 appends a new column (schema evolution) by the second.
    v0 = a.write(
        spark.createDataFrame([("a", 1.0, D1), ("b", 2.0, D2)], NARROW),
        TABLE,
        partition_by=["event_date"],
    )
    assert rows_of(b.read(spark, TABLE)) == [(1.0, D1, "a"), (2.0, D2, "b")]
    v1 = b.write(spark.createDataFrame([("c", 3.0, D3, "web")], WIDE), TABLE)
    # v2: the first overwrites a partition the second has not touched; v3: the second
    # overwrites one the first wrote; v4: the first merges on event_id.
    a.write(
        spark.createDataFrame([("b2", 20.0, D2, "app")], WIDE),
        TABLE,
        mode="overwrite",
        partition={"event_date": D2},
    )
    v3 = b.write(
        spark.createDataFrame([("a2", 10.0, D1)], NARROW),
        TABLE,
        mode="overwrite",
        partition={"event_date": D1},
    )
    a.write(
        spark.createDataFrame([("c", 30.0, D3, "shop"), ("d", 4.0, D3, None)], WIDE),
        TABLE,
        mode="merge",
        keys=["event_id"],
    )

    expected = {
        v0.version: [(1.0, None, D1, "a"), (2.0, None, D2, "b")],
        v1.version: [(1.0, None, D1, "a"), (2.0, None, D2, "b"), (3.0, "web", D3, "c")],
        v3.version: [(10.0, None, D1, "a2"), (20.0, "app", D2, "b2"), (3.0, "web", D3, "c")],
        None: [(10.0, None, D1, "a2"), (20.0, "app", D2, "b2"), (30.0, "shop", D3, "c"),
            (4.0, None, D3, "d")],
    }  # fmt: skip
    for version, rows in expected.items():
        at = version
        columns = ["amount", "channel", "event_date", "event_id"]
        if version == v0.version:  # the schema of v0 has no channel yet
            columns.remove("channel")
            rows = [(amount, d, i) for amount, _, d, i in rows]
        for engine in (a, b):
            read = engine.read(spark, TABLE, version=at).select(*columns)
            assert rows_of(read) == sorted(rows), (engine.engine(), version)
        assert arrow_rows(a.to_arrow(TABLE, version=at).select(columns)) == sorted(rows)

    operations = [h["regrow.operation"] for h in a.history(TABLE) if h["operation"] != "ADD COLUMN"]
    assert operations == ["MERGE", "OVERWRITE", "OVERWRITE", "WRITE", "WRITE"]
    assert b.history(TABLE) == a.history(TABLE)

    # Every file has the statistics both engines read: row counts (partition_rows sums
    # them without reading data) and the bounds of a numeric column.
    assert a.partition_rows(TABLE) == b.partition_rows(TABLE) == {
        "2026-01-01": 1, "2026-01-02": 1, "2026-01-03": 2
    }  # fmt: skip
    adds = pa.table(deltalake.DeltaTable(a.uri(TABLE)).get_add_actions(flatten=True))
    assert all(n > 0 for n in adds["num_records"].to_pylist())
    assert None not in adds["min.amount"].to_pylist() + adds["max.amount"].to_pylist()
    # Data skipping on those bounds: a predicate on amount finds its row through either engine.
    for engine in (a, b):
        assert [r.event_id for r in engine.read(spark, TABLE, where="amount > 25").collect()] == [
            "c"
        ]


def test_column_names_delta_spark_refuses_keep_their_table_on_delta_rs(spark, tmp_path, caplog):
    """A space or a parenthesis in a column name (a user's own data): Delta Spark refuses
    it without column mapping, so that table is written and read by delta-rs."""
    caplog.set_level(logging.INFO, logger="regrow.storage.lakehouse")
    lakehouse = Lakehouse(LakehouseSettings(engine="delta-spark"), str(tmp_path))
    df = spark.createDataFrame([("a", 1.0)], "`application id` string, `amount (eur)` double")

    commit = lakehouse.write(df, "bronze.spaced_names")
    again = lakehouse.write(df, "bronze.spaced_names", mode="overwrite")

    assert (commit.engine, again.engine) == ("delta-rs", "delta-rs")
    assert [tuple(r) for r in lakehouse.read(spark, "bronze.spaced_names").collect()] == [
        ("a", 1.0)
    ]
    assert caplog.text.count("bronze.spaced_names: columns") == 1
    assert "'amount (eur)', 'application id'" in caplog.text
