"""regrow.storage.lakehouse on real Spark, real Delta tables (tmp_path) and a real S3 server (moto).

On the delta-rs engine here (Spark tasks write the Parquet files, the driver commits them
through ``deltalake``), and on delta-spark in tests/engines/ (the ``engine`` fixture).
Tables are checked by their values, by plain ``deltalake``/``pyarrow`` (the log is
standard Delta), and under failure: a SIGKILLed writer and concurrent writers in other
processes, on the engine under test.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from regrow.settings import LakehouseSettings
from regrow.storage import session
from regrow.storage.lakehouse import (
    Lakehouse,
    LakehouseError,
    SchemaChangeError,
    TableNotFoundError,
)
from regrow.storage.reader import share_row_groups as _shares
from regrow.storage.session import is_connect

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
EVENTS_SCHEMA = "event_id string, amount double, event_date date"
UTC = dt.UTC


@pytest.fixture
def lakehouse(make_settings) -> Lakehouse:
    settings = make_settings()
    return Lakehouse.from_settings(settings)


@pytest.fixture(params=["driver", "tasks"])
def route(request) -> str:
    """Who writes a small delta-rs write's files: this process (``driver``: under
    ``lakehouse.driver_write_rows``), or Spark's tasks (``tasks``: that setting 0)."""
    return request.param


@pytest.fixture
def routed(make_settings, route) -> Lakehouse:
    """A lakehouse whose small delta-rs writes go the :func:`route`."""
    limit = {"driver": 100_000, "tasks": 0}[route]
    return Lakehouse.from_settings(make_settings(lakehouse={"driver_write_rows": limit}))


def writer_of(route: str, engine: str) -> str:
    """``CommitInfo.written_by`` of a small write on ``engine`` (delta-spark: its own)."""
    return route if engine == "delta-rs" else "delta-spark"


def events(spark, rows):
    return spark.createDataFrame(rows, EVENTS_SCHEMA)


def rows_of(df, *columns) -> list[tuple]:
    columns = columns or tuple(df.columns)
    return sorted(tuple(r) for r in df.select(*columns).collect())


def arrow_rows(table: pa.Table, *columns) -> list[tuple]:
    return sorted(tuple(r[c] for c in columns) for r in table.to_pylist())


def delta_files(uri: str) -> list[str]:
    """Files of the current version, as plain delta-rs lists them."""
    return deltalake.DeltaTable(uri).file_uris()


def parquet_rows(uri: str, *columns) -> list[tuple]:
    """The data columns of every current file, read with pyarrow alone."""
    out: list[tuple] = []
    for path in delta_files(uri):
        out += [tuple(r[c] for c in columns) for r in pq.read_table(path).to_pylist()]
    return sorted(out)


# ----------------------------------------------------------------------- writes and reads
def test_append_commits_one_version_per_write(spark, lakehouse):
    first = lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    second = lakehouse.write(events(spark, [("c", 3.0, D1)]), "bronze.events")

    assert (first.version, first.rows_written, first.files_added) == (0, 2, 2)
    assert (second.version, second.rows_written, second.operation) == (1, 1, "WRITE")
    assert lakehouse.table_version("bronze.events") == 1
    assert lakehouse.partition_by("bronze.events") == ["event_date"]
    assert rows_of(lakehouse.read(spark, "bronze.events")) == [
        ("a", 1.0, D1),
        ("b", 2.0, D2),
        ("c", 3.0, D1),
    ]


def test_overwrite_of_a_partition_replaces_exactly_it_and_reruns_are_idempotent(
    spark, routed, route, engine
):
    lakehouse = routed
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2), ("c", 3.0, D3)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    day2 = events(spark, [("b2", 20.0, D2), ("b3", 30.0, D2)])

    def overwrite():
        return lakehouse.write(
            day2, "bronze.events", mode="overwrite", partition={"event_date": D2}, rows_at_most=2
        )

    commit = overwrite()
    after_first = rows_of(lakehouse.read(spark, "bronze.events"))
    rerun = overwrite()
    assert commit.written_by == rerun.written_by == writer_of(route, engine)

    expected = [("a", 1.0, D1), ("b2", 20.0, D2), ("b3", 30.0, D2), ("c", 3.0, D3)]
    assert after_first == expected
    assert rows_of(lakehouse.read(spark, "bronze.events")) == expected
    assert (commit.version, rerun.version, rerun.operation) == (1, 2, "OVERWRITE")
    # the replaced files are removed in the log: its current files hold exactly these rows
    assert parquet_rows(lakehouse.uri("bronze.events"), "event_id", "amount") == [
        (r[0], r[1]) for r in expected
    ]


def test_only_a_write_known_to_be_small_is_written_by_the_driver(spark, make_settings, engine):
    """A bound under ``lakehouse.driver_write_rows`` sends a delta-rs write to this process;
    no bound, a larger one, or the setting 0 leave it to Spark's tasks. A bound that is
    wrong (fewer rows than the data has) loses no row."""
    lakehouse = Lakehouse.from_settings(make_settings(lakehouse={"driver_write_rows": 10}))
    rows = [(f"e{i}", float(i), D1) for i in range(20)]
    spark_rows = events(spark, rows)
    by = {}
    for bound in (None, 11, 10, 3):
        commit = lakehouse.write(spark_rows, "bronze.events", "overwrite", rows_at_most=bound)
        assert commit.rows_written == 20
        assert rows_of(lakehouse.read(spark, "bronze.events")) == sorted(rows)
        by[bound] = commit.written_by
    never = Lakehouse.from_settings(make_settings(lakehouse={"driver_write_rows": 0}))
    by["setting 0"] = never.write(spark_rows, "bronze.other", rows_at_most=0).written_by
    if engine == "delta-rs":
        assert by == {None: "tasks", 11: "tasks", 10: "driver", 3: "driver", "setting 0": "tasks"}
    else:
        assert set(by.values()) == {"delta-spark"}


def test_overwrite_without_partition_replaces_the_whole_table(spark, lakehouse):
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )

    lakehouse.write(events(spark, [("z", 9.0, D3)]), "bronze.events", mode="overwrite")

    assert rows_of(lakehouse.read(spark, "bronze.events")) == [("z", 9.0, D3)]
    assert rows_of(lakehouse.read(spark, "bronze.events", version=0)) == [
        ("a", 1.0, D1),
        ("b", 2.0, D2),
    ]


def test_merge_updates_matching_keys_and_inserts_the_others(spark, lakehouse):
    lakehouse.write(events(spark, [("a", 1.0, D1), ("b", 2.0, D1)]), "silver.labels")

    commit = lakehouse.write(
        events(spark, [("b", 20.0, D2), ("c", 3.0, D2)]),
        "silver.labels",
        mode="merge",
        keys=["event_id"],
    )

    assert rows_of(lakehouse.read(spark, "silver.labels")) == [
        ("a", 1.0, D1),
        ("b", 20.0, D2),
        ("c", 3.0, D2),
    ]
    assert commit.version == 1
    assert lakehouse.history("silver.labels")[0]["operation"] == "MERGE"


def test_read_at_a_version_of_some_partitions_with_a_predicate(spark, lakehouse):
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    lakehouse.write(events(spark, [("c", 3.0, D1), ("d", 4.0, D3)]), "bronze.events")

    v0 = lakehouse.read(spark, "bronze.events", version=0)
    pruned = lakehouse.read(spark, "bronze.events", partitions={"event_date": [D1, D3]})
    filtered = lakehouse.read(
        spark, "bronze.events", where="amount > 1.5", partitions={"event_date": D1}
    )

    assert rows_of(v0) == [("a", 1.0, D1), ("b", 2.0, D2)]
    assert rows_of(pruned) == [("a", 1.0, D1), ("c", 3.0, D1), ("d", 4.0, D3)]
    # pruning skips files, it does not filter rows after reading them
    assert pruned.inputFiles() and all(
        "event_date=2026-01-02" not in f for f in pruned.inputFiles()
    )
    assert rows_of(filtered) == [("c", 3.0, D1)]
    with pytest.raises(LakehouseError, match="no version 7"):
        lakehouse.read(spark, "bronze.events", version=7)


def test_days_the_log_counts_small_are_read_as_one_task(spark, lakehouse, monkeypatch):
    """``read_days``: the days' partitions, in one Spark partition when the Delta log's row
    counts of those days are at most ``ONE_TASK_ROWS`` (``one_task_if_small``)."""
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2), ("c", 3.0, D3), ("d", 4.0, D3)]),
        "bronze.events",
        partition_by=["event_date"],
    )

    def read() -> tuple[list[tuple], bool]:
        df = lakehouse.read_days(spark, "bronze.events", "event_date", [D1, D3])
        return rows_of(df), "Coalesce 1" in df._jdf.queryExecution().executedPlan().toString()

    wanted = [("a", 1.0, D1), ("c", 3.0, D3), ("d", 4.0, D3)]
    assert read() == (wanted, True)
    monkeypatch.setattr(session, "ONE_TASK_ROWS", 2)  # D1 and D3 hold 3 rows
    assert read() == (wanted, False)


def test_history_tables_and_to_arrow_agree_with_spark(spark, lakehouse):
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    lakehouse.write(
        events(spark, [("c", 3.0, D2)]),
        "bronze.events",
        mode="overwrite",
        partition={"event_date": D2},
    )
    lakehouse.write(events(spark, [("x", 1.0, D1)]), "gold.decisions")

    history = lakehouse.history("bronze.events")
    infos = {t.table: t for t in lakehouse.tables()}

    assert [h["version"] for h in history] == [1, 0]
    assert [h["regrow.operation"] for h in history] == ["OVERWRITE", "WRITE"]
    assert set(infos) == {"bronze.events", "gold.decisions"}
    assert (infos["bronze.events"].rows, infos["bronze.events"].version) == (2, 1)
    assert infos["bronze.events"].partition_by == ["event_date"]
    assert (infos["gold.decisions"].rows, infos["gold.decisions"].partition_by) == (1, [])
    spark_rows = rows_of(lakehouse.read(spark, "bronze.events"))
    columns = ("event_id", "amount", "event_date")
    assert arrow_rows(lakehouse.to_arrow("bronze.events"), *columns) == spark_rows
    assert arrow_rows(lakehouse.to_arrow("bronze.events", version=0), *columns) == [
        ("a", 1.0, D1),
        ("b", 2.0, D2),
    ]
    assert arrow_rows(
        lakehouse.to_arrow("bronze.events", partitions={"event_date": D2}), *columns
    ) == [("c", 3.0, D2)]


def test_partition_values_that_need_escaping_are_overwritten_and_read_back(spark, lakehouse):
    """Folder names of these values are %-escaped: an overwrite must still remove the old
    files (the log stores their paths encoded once more) and Spark must not decode
    ``%C3%A9`` byte by byte into ``Ã©``."""
    cities = ["São Paulo", "a/b", "x y", "日本"]
    df = spark.createDataFrame([(c, 1) for c in cities], "city string, n long")
    lakehouse.write(df, "silver.cities", partition_by=["city"])

    for city in cities:
        lakehouse.write(
            spark.createDataFrame([(city, 2)], "city string, n long"),
            "silver.cities",
            mode="overwrite",
            partition={"city": city},
        )

    expected = sorted((c, 2) for c in cities)
    assert rows_of(lakehouse.read(spark, "silver.cities")) == expected
    assert arrow_rows(lakehouse.to_arrow("silver.cities"), "city", "n") == expected
    assert rows_of(lakehouse.read(spark, "silver.cities", partitions={"city": "São Paulo"})) == [
        ("São Paulo", 2)
    ]


def test_a_root_with_a_space_and_unicode_is_written_and_read(spark, make_settings, tmp_path):
    """A root such as ``~/My Documents/données``: delta-rs gives the data files' URIs with
    the root %-escaped (``My%20Documents``), which is no path on disk."""
    root = tmp_path / "My Documents" / "données"
    lakehouse = Lakehouse.from_settings(make_settings(lakehouse={"root": str(root)}))
    rows = [("e1", 1.0, dt.date(2026, 1, 1)), ("e2", 2.0, dt.date(2026, 1, 2))]
    lakehouse.write(events(spark, rows), "bronze.events", partition_by=["event_date"])
    df = spark.createDataFrame([("x y", 1), ("é", 2)], "city string, n long")
    lakehouse.write(df, "silver.cities", partition_by=["city"])
    assert rows_of(lakehouse.read(spark, "bronze.events")) == sorted(rows)
    assert rows_of(
        lakehouse.read(spark, "bronze.events", partitions={"event_date": rows[1][2]})
    ) == [rows[1]]
    assert arrow_rows(lakehouse.to_arrow("bronze.events"), "event_id", "amount") == [
        ("e1", 1.0), ("e2", 2.0)
    ]  # fmt: skip
    assert rows_of(lakehouse.read(spark, "silver.cities")) == [("x y", 1), ("é", 2)]
    assert arrow_rows(lakehouse.to_arrow("silver.cities"), "city", "n") == [("x y", 1), ("é", 2)]
    assert (root / "bronze" / "events" / "_delta_log").is_dir()


# ---------------------------------------------------------------------------- schema
def test_an_added_column_is_merged_and_old_rows_read_null(spark, lakehouse):
    lakehouse.write(events(spark, [("a", 1.0, D1)]), "bronze.events", partition_by=["event_date"])
    wider = spark.createDataFrame(
        [("b", 2.0, D2, "web")], "event_id string, amount double, event_date date, channel string"
    )

    lakehouse.write(wider, "bronze.events")
    lakehouse.write(events(spark, [("c", 3.0, D3)]), "bronze.events")  # without the new column

    assert rows_of(lakehouse.read(spark, "bronze.events")) == [
        ("a", 1.0, D1, None),
        ("b", 2.0, D2, "web"),
        ("c", 3.0, D3, None),
    ]
    assert "channel" in deltalake.DeltaTable(lakehouse.uri("bronze.events")).schema().to_json()
    # Some columns, read without Spark: the new one null in the files that predate it, the
    # partition column from the log, in the order asked.
    some = lakehouse.to_arrow("bronze.events", columns=["channel", "event_date"])
    assert some.column_names == ["channel", "event_date"]
    assert sorted(some.to_pylist(), key=lambda r: r["event_date"]) == [
        {"channel": None, "event_date": D1},
        {"channel": "web", "event_date": D2},
        {"channel": None, "event_date": D3},
    ]
    with pytest.raises(LakehouseError, match=r"bronze.events has no column\(s\) \['chanel'\]"):
        lakehouse.to_arrow("bronze.events", columns=["chanel"])
    # The schema from the log alone, at the latest version and before the column was added.
    for version in (None, 0):
        schema = lakehouse.spark_schema("bronze.events", version)
        assert schema == lakehouse.read(spark, "bronze.events", version).schema
    assert "channel" not in schema.names


def test_a_type_change_is_refused_and_names_the_column(spark, lakehouse):
    lakehouse.write(events(spark, [("a", 1.0, D1)]), "bronze.events", partition_by=["event_date"])
    as_text = spark.createDataFrame(
        [("b", "2.0", D1)], "event_id string, amount string, event_date date"
    )

    with pytest.raises(SchemaChangeError, match="'amount' is string in the data but double"):
        lakehouse.write(as_text, "bronze.events")
    assert lakehouse.table_version("bronze.events") == 0


def test_an_overwrite_holding_rows_of_another_partition_is_refused(spark, routed):
    lakehouse = routed
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    mixed = events(spark, [("a2", 10.0, D1), ("b2", 20.0, D2)])

    with pytest.raises(LakehouseError, match="2026-01-02") as err:
        lakehouse.write(
            mixed, "bronze.events", mode="overwrite", partition={"event_date": D1}, rows_at_most=2
        )
    assert "2026-01-01" in str(err.value)
    assert lakehouse.table_version("bronze.events") == 0
    assert rows_of(lakehouse.read(spark, "bronze.events")) == [("a", 1.0, D1), ("b", 2.0, D2)]
    with pytest.raises(LakehouseError, match=r"\['amount'\] are not partition columns"):
        lakehouse.write(mixed, "bronze.events", mode="overwrite", partition={"amount": 1.0})


@pytest.mark.parametrize("name", ["events", "bronze.events.v2", "bronze.2events", "bronze/events"])
def test_a_bad_table_name_is_refused(lakehouse, name):
    with pytest.raises(LakehouseError, match="is not of the form layer.name"):
        lakehouse.uri(name)


def test_reading_a_missing_table_names_it(spark, lakehouse):
    with pytest.raises(TableNotFoundError, match="bronze.nothing does not exist"):
        lakehouse.read(spark, "bronze.nothing")
    assert not lakehouse.exists("bronze.nothing")


def test_merge_without_keys_and_an_unknown_mode_are_refused(spark, lakehouse):
    df = events(spark, [("a", 1.0, D1)])
    with pytest.raises(LakehouseError, match="merge into bronze.events needs keys"):
        lakehouse.write(df, "bronze.events", mode="merge")
    with pytest.raises(LakehouseError, match="unknown write mode 'upsert'"):
        lakehouse.write(df, "bronze.events", mode="upsert")  # type: ignore[arg-type]
    assert not lakehouse.exists("bronze.events")


# ----------------------------------------------------------------------------- types
def test_types_round_trip(spark, lakehouse):
    plus2 = dt.timezone(dt.timedelta(hours=2))
    minus5 = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    rows = [
        (
            1,
            10,
            "naïve café ☕ 日本",
            0.1,
            True,
            dt.datetime(2026, 3, 1, 12, 0, 0, 123456, plus2),
            dt.date(2026, 3, 1),
        ),
        (
            2,
            2**40,
            "",
            -1e300,
            False,
            dt.datetime(2026, 3, 1, 23, 30, tzinfo=minus5),
            dt.date(1999, 12, 31),
        ),
        (3, None, None, None, None, None, None),
    ]
    schema = "id int, big long, text string, x double, flag boolean, ts timestamp, day date"
    lakehouse.write(spark.createDataFrame(rows, schema), "silver.typed")

    df = lakehouse.read(spark, "silver.typed")
    got = rows_of(df.select("id", "big", "text", "x", "flag", F.unix_micros("ts"), "day"))
    arrow = lakehouse.to_arrow("silver.typed").sort_by("id").to_pylist()

    def micros(t):
        return None if t is None else int(t.timestamp()) * 10**6 + t.microsecond

    assert got == [(r[0], r[1], r[2], r[3], r[4], micros(r[5]), r[6]) for r in rows]
    assert dict(
        zip(df.columns, [f.dataType.simpleString() for f in df.schema.fields], strict=True)
    ) == {
        "id": "int",
        "big": "bigint",
        "text": "string",
        "x": "double",
        "flag": "boolean",
        "ts": "timestamp",
        "day": "date",
    }
    assert lakehouse.spark_schema("silver.typed") == df.schema
    # 12:00 at +02:00 is 10:00 UTC; 23:30 at -05:30 is 05:00 UTC the next day
    assert [r["ts"] for r in arrow] == [
        dt.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC),
        None,
    ]
    assert arrow[0]["text"] == "naïve café ☕ 日本" and arrow[2]["big"] is None


# ------------------------------------------------------------------------------ interop
def test_a_lakehouse_table_is_standard_delta(spark, lakehouse):
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    lakehouse.write(
        events(spark, [("b2", 5.0, D2)]),
        "bronze.events",
        mode="overwrite",
        partition={"event_date": D2},
    )
    uri = lakehouse.uri("bronze.events")

    table = deltalake.DeltaTable(uri)
    fields = {f.name: f.type.type for f in table.schema().fields}

    assert table.version() == 1
    assert [h["version"] for h in table.history()] == [1, 0]
    assert fields == {"event_id": "string", "amount": "double", "event_date": "date"}
    assert table.metadata().partition_columns == ["event_date"]
    assert parquet_rows(uri, "event_id", "amount") == [("a", 1.0), ("b2", 5.0)]
    assert len(deltalake.DeltaTable(uri, version=0).file_uris()) == 2
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert sorted((a["partition.event_date"], a["num_records"]) for a in adds) == [(D1, 1), (D2, 1)]


def test_a_table_regrow_creates_checkpoints_every_ten_commits(spark, lakehouse):
    # Loading a table replays every commit file since its last checkpoint: delta-rs's own
    # default of 100 made a daily table replay up to 99 of them on each load.
    lakehouse.write(events(spark, [("a", 1.0, D1)]), "bronze.events", partition_by=["event_date"])
    for n in range(10):
        lakehouse.write(events(spark, [(f"b{n}", 1.0, D2)]), "bronze.events")
    records = pa.table({"event_date": [D1], "note": ["x"]})
    lakehouse.append_records("gold.notes", records, partition_by=["event_date"])

    uri = lakehouse.uri("bronze.events")
    checkpoints = sorted(p.name for p in Path(uri, "_delta_log").glob("*.checkpoint.parquet"))
    last = json.loads(Path(uri, "_delta_log", "_last_checkpoint").read_text())

    assert deltalake.DeltaTable(uri).version() == 10
    assert checkpoints and last["version"] in (9, 10), checkpoints
    assert deltalake.DeltaTable(uri).metadata().configuration["delta.checkpointInterval"] == "10"
    notes = deltalake.DeltaTable(lakehouse.uri("gold.notes")).metadata().configuration
    assert notes["delta.checkpointInterval"] == "10"
    assert len(rows_of(lakehouse.read(spark, "bronze.events"))) == 11


def test_file_statistics_bound_every_column_and_deltalake_filters_by_them(
    spark, routed, route, engine
):
    lakehouse = routed
    long_text = "ü" * 40  # longer than the 32 characters a string bound keeps
    at = dt.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)  # microseconds: rounded
    rows = [
        ("a", 1, True, at, long_text, D1),
        ("b", 2, False, at + dt.timedelta(hours=1), "zeta", D1),
        ("c", None, None, None, None, D1),
    ]
    schema = "id string, n int, flag boolean, ts timestamp, text string, day date"
    commit = lakehouse.write(spark.createDataFrame(rows, schema), "silver.bounded", rows_at_most=3)
    assert commit.written_by == writer_of(route, engine)
    table = deltalake.DeltaTable(lakehouse.uri("silver.bounded"))

    log = Path(lakehouse.uri("silver.bounded")) / "_delta_log" / f"{0:020d}.json"
    adds = [json.loads(line).get("add") for line in log.read_text().splitlines()]
    stats = [json.loads(a["stats"]) for a in adds if a]
    mins = {c: min(s["minValues"][c] for s in stats if c in s["minValues"]) for c in ("id", "ts")}
    maxs = {c: max(s["maxValues"][c] for s in stats if c in s["maxValues"]) for c in ("id", "ts")}
    # Delta Spark keeps no bounds of booleans (a file is skipped by them only on delta-rs).
    bounded = {"id", "n", "ts", "text", "day"} | ({"flag"} if engine == "delta-rs" else set())
    assert all(bounded <= set(s["minValues"]) for s in stats)
    assert (mins["id"], maxs["id"]) == ("a", "c")
    # Rounded outwards by delta-rs: 10:00:00.123456 lies within [.123, .124]. Delta Spark
    # truncates both bounds to the millisecond (and widens the maximum by 1 ms when it reads).
    top = "2026-03-01T11:00:00.124Z" if engine == "delta-rs" else "2026-03-01T11:00:00.123Z"
    assert mins["ts"] == "2026-03-01T10:00:00.123Z" and maxs["ts"] == top
    long_bounds = [(s["minValues"]["text"], s["maxValues"]["text"]) for s in stats]
    assert all(lo <= long_text and long_text < hi or hi == "zeta" for lo, hi in long_bounds)

    # deltalake's pyarrow dataset prunes files by these statistics: every filter finds its row.
    dataset = table.to_pyarrow_dataset()
    # (Not the boolean on delta-spark: its files have no boolean bounds, which deltalake's
    # dataset takes for "skip every file", the bug regrow's own writer works around.)
    flag = [("flag", True, ["a"])] if engine == "delta-rs" else []
    for column, value, expected in [
        ("id", "b", ["b"]),
        *flag,
        ("ts", at, ["a"]),
        ("text", long_text, ["a"]),
        ("n", 2, ["b"]),
    ]:
        found = dataset.to_table(filter=pa.compute.field(column) == value)
        assert found["id"].to_pylist() == expected, column


@pytest.mark.parametrize(
    ("codec", "in_footer", "suffix"),
    [("lz4", "LZ4", ".lz4raw.parquet"), ("zstd", "ZSTD", ".zstd.parquet")],
)
def test_files_have_the_configured_codec_and_spark_reads_them_alone(
    spark, make_settings, codec, in_footer, suffix
):
    settings = make_settings(lakehouse={"compression": codec})
    lakehouse = Lakehouse.from_settings(settings)
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("ü", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    files = delta_files(lakehouse.uri("bronze.events"))

    assert len(files) == 2 and all(f.endswith(suffix) for f in files)
    for path in files:
        meta = pq.read_metadata(path)
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        assert codecs == {in_footer}  # pyarrow calls LZ4_RAW "LZ4"
        assert b"ARROW:schema" not in (meta.metadata or {})  # as in Spark's own files
    # Spark's own Parquet reader, not the Delta one, reads them as they are.
    assert rows_of(spark.read.parquet(*files), "event_id", "amount") == [("a", 1.0), ("ü", 2.0)]


def test_a_table_written_by_deltalake_is_read_and_extended(spark, lakehouse):
    uri = lakehouse.uri("bronze.external")
    deltalake.write_deltalake(
        uri,
        pa.table({"event_id": ["a", "b"], "amount": [1.0, 2.0], "event_date": [D1, D2]}),
        partition_by=["event_date"],
    )

    assert rows_of(lakehouse.read(spark, "bronze.external")) == [("a", 1.0, D1), ("b", 2.0, D2)]
    lakehouse.write(
        events(spark, [("c", 3.0, D2)]),
        "bronze.external",
        mode="overwrite",
        partition={"event_date": D2},
    )
    assert rows_of(lakehouse.read(spark, "bronze.external")) == [("a", 1.0, D1), ("c", 3.0, D2)]
    assert deltalake.DeltaTable(uri).version() == 1
    assert (
        lakehouse.spark_schema("bronze.external") == lakehouse.read(spark, "bronze.external").schema
    )
    assert parquet_rows(uri, "event_id", "amount") == [("a", 1.0), ("c", 3.0)]


# ---------------------------------------------------------------------------- derive
DOUBLED = "event_id string, amount2 double, event_date date"


def doubling():
    """A derive function: each event's amount doubled. Made in a function so that it is
    pickled by value: Spark's workers cannot import this test module."""

    def doubled(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc

        for b in batches:
            yield pa.RecordBatch.from_arrays(
                [b["event_id"], pc.multiply(b["amount"], 2.0), b["event_date"]],
                names=["event_id", "amount2", "event_date"],
            )

    return doubled


def test_derive_writes_what_read_map_write_would_at_the_version_read(spark, routed, route, engine):
    lakehouse = routed
    lakehouse.write(
        events(spark, [(f"b{i}", float(i), D2) for i in range(300)] + [("a", 1.0, D1)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    lakehouse.write(events(spark, [(f"c{i}", float(i), D2) for i in range(200)]), "bronze.events")
    old = spark.createDataFrame([("x", 0.5, D1), ("y", 0.5, D2)], DOUBLED)
    lakehouse.write(old, "silver.doubled", partition_by=["event_date"])
    columns = ["event_id", "amount", "event_date"]

    commit = lakehouse.derive(
        spark, "bronze.events", "silver.doubled", doubling(), spark.createDataFrame([], DOUBLED).schema,
        columns, version=1, partitions={"event_date": D2}, mode="overwrite",
        partition={"event_date": D2},
    )  # fmt: skip

    reference = (
        lakehouse.read(spark, "bronze.events", version=1, partitions={"event_date": D2})
        .select(*columns)
        .mapInArrow(doubling(), DOUBLED)
    )
    derived = rows_of(lakehouse.read(spark, "silver.doubled", partitions={"event_date": D2}))
    assert derived == rows_of(reference) and len(derived) == 500  # both files of v1's D2
    assert ("c7", 14.0, D2) in derived
    assert rows_of(lakehouse.read(spark, "silver.doubled", partitions={"event_date": D1})) == [
        ("x", 0.5, D1)  # another partition: untouched
    ]
    assert (commit.version, commit.operation, commit.rows_written) == (1, "OVERWRITE", 500)
    assert commit.written_by == writer_of(route, engine)
    # Time travel: version 0 of the source had only the b rows.
    lakehouse.derive(
        spark, "bronze.events", "silver.doubled", doubling(), reference.schema, columns, version=0,
        partitions={"event_date": D2}, mode="overwrite", partition={"event_date": D2},
    )  # fmt: skip
    assert (
        len(rows_of(lakehouse.read(spark, "silver.doubled", partitions={"event_date": D2}))) == 300
    )


TAGGED = "event_id string, tag string, event_date date"


def tagging():
    """A derive function whose ``tag`` column is one repeated value, dictionary-encoded
    (as scoring's model columns are), then the same rows with no tag, as plain nulls."""

    def tagged(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import numpy as np

        for b in batches:
            n = b.num_rows
            tag = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array(["ünï-tag"])
            )
            for column in (tag, pa.nulls(n, pa.string())):
                yield pa.RecordBatch.from_arrays(
                    [b["event_id"], column, b["event_date"]],
                    names=["event_id", "tag", "event_date"],
                )

    return tagged


def test_derive_writes_dictionary_columns_as_dictionary_pages_read_as_strings(spark, lakehouse):
    lakehouse.write(
        events(spark, [(f"e{i}", float(i), D1) for i in range(50)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    schema = spark.createDataFrame([], TAGGED).schema

    lakehouse.derive(
        spark, "bronze.events", "silver.tagged", tagging(), schema,
        ["event_id", "event_date"], partition_by=["event_date"],
    )  # fmt: skip

    tagged = lakehouse.read(spark, "silver.tagged")
    assert tagged.schema == schema
    rows = [(r.event_id, r.tag) for r in tagged.collect()]
    assert len(rows) == 100 and sum(tag == "ünï-tag" for _, tag in rows) == 50
    assert {event_id for event_id, tag in rows if tag is None} == {f"e{i}" for i in range(50)}
    uri = lakehouse.uri("silver.tagged")
    for path in delta_files(uri):
        parquet = pq.ParquetFile(path)
        assert parquet.schema_arrow.field("tag").type == pa.string()  # not a dictionary
        tag = parquet.schema_arrow.get_field_index("tag")
        chunks = [parquet.metadata.row_group(i).column(tag) for i in range(parquet.num_row_groups)]
        assert all(c.has_dictionary_page for c in chunks)
    counts = lakehouse.to_arrow("silver.tagged")["tag"].value_counts().to_pylist()
    assert {(c["values"], c["counts"]) for c in counts} == {("ünï-tag", 50), (None, 50)}


def test_derive_aligns_to_both_schemas_and_names_what_is_wrong(spark, routed):
    lakehouse = routed
    lakehouse.write(events(spark, [("a", 1.0, D1)]), "bronze.events", partition_by=["event_date"])
    wider = spark.createDataFrame(
        [("b", 2.0, D1, "web")], "event_id string, amount double, event_date date, channel string"
    )
    lakehouse.write(wider, "bronze.events")  # a column the first file predates
    target = "event_id string, amount2 double, event_date date, note string"
    lakehouse.write(
        spark.createDataFrame([("old", 0.0, D2, "kept")], target),
        "silver.doubled",
        partition_by=["event_date"],
    )

    def channel_upper(batches):
        import pyarrow.compute as pc

        for b in batches:
            yield pa.RecordBatch.from_arrays(
                [b["event_id"], pc.multiply(b["amount"], 2.0), b["event_date"],
                 pc.utf8_upper(b["channel"])],
                names=["event_id", "amount2", "event_date", "channel"],
            )  # fmt: skip

    schema = spark.createDataFrame([], f"{DOUBLED}, channel string").schema
    lakehouse.derive(
        spark, "bronze.events", "silver.doubled", channel_upper, schema,
        ["event_id", "amount", "event_date", "channel"], partitions={"event_date": D1},
    )  # fmt: skip

    # The old file reads channel null; the target's note (not made here) is null, and the
    # new channel column is merged into the target.
    assert rows_of(lakehouse.read(spark, "silver.doubled")) == [
        ("a", 2.0, D1, None, None),
        ("b", 4.0, D1, None, "WEB"),
        ("old", 0.0, D2, "kept", None),
    ]
    version = lakehouse.table_version("silver.doubled")
    as_text = spark.createDataFrame([], "event_id string, amount2 string, event_date date").schema
    with pytest.raises(SchemaChangeError, match="'amount2' is string in the data but double"):
        lakehouse.derive(
            spark, "bronze.events", "silver.doubled", doubling(), as_text,
            ["event_id", "amount", "event_date"],
        )  # fmt: skip
    with pytest.raises(
        LakehouseError, match=r"columns \['amount_eur'\] are not in bronze.events \(it has"
    ):
        lakehouse.derive(
            spark, "bronze.events", "silver.doubled", doubling(), schema,
            ["event_id", "amount_eur", "event_date"],
        )  # fmt: skip

    def failing(batches):
        for b in batches:
            raise ValueError(f"no amount for {b['event_id'][0]}")
        yield from ()

    with pytest.raises(LakehouseError, match=r"doubled failed: ValueError: no amount for [ab]$"):
        lakehouse.derive(
            spark, "bronze.events", "silver.doubled", failing, schema, ["event_id", "event_date"]
        )
    assert lakehouse.table_version("silver.doubled") == version  # nothing written


def test_derive_shares_row_groups_evenly_between_tasks():
    units = [
        {"uri": f"f{f}", "values": {"d": "1"}, "row_group": g, "rows": rows}
        for f, sizes in enumerate([[100, 100, 40], [300], [60, 60, 60, 60]])
        for g, rows in enumerate(sizes)
    ]

    shares = _shares(units, 2)

    sizes = {(u["uri"], u["row_group"]): u["rows"] for u in units}
    totals = [sum(sizes[f["uri"], g] for f in share for g in f["row_groups"]) for share in shares]
    # Greedy, largest first: no share is more than the smallest row group behind another.
    assert sum(totals) == 780 and max(totals) - min(totals) <= 40
    listed = sorted((f["uri"], g) for share in shares for f in share for g in f["row_groups"])
    assert listed == sorted(sizes)  # every row group once
    assert all(f["row_groups"] == sorted(f["row_groups"]) for s in shares for f in s)
    assert len(_shares(units[:1], 8)) == 1 and _shares([], 2) == []


# ------------------------------------------------------------------- killed and concurrent
WRITER = """
import datetime as dt, json, os, sys, time
from pathlib import Path
from regrow.storage.lakehouse import Lakehouse
from regrow.settings import LakehouseSettings, SparkSettings
from regrow.orchestration.spark import get_spark

spark = get_spark(SparkSettings(master="local[1]", app_name="writer", shuffle_partitions=1,
                                conf={"spark.ui.enabled": "false"}))
lakehouse = Lakehouse(LakehouseSettings(engine=os.environ["TEST_ENGINE"]), sys.argv[1])
"""

SLOW_APPEND = (
    WRITER
    + """
def slow(batches):
    for batch in batches:
        time.sleep(0.5)
        yield batch

df = spark.range(0, 400_000, 1, 2).selectExpr("cast(id as string) as event_id",
    "cast(id as double) as amount", "date'2026-01-09' as event_date")
Path(sys.argv[2]).touch()
lakehouse.write(df.mapInArrow(slow, df.schema), "bronze.events")
"""
)


def overwrites(spark, lakehouse, writer: str, day: dt.date, iterations: int, go: Path) -> dict:
    """A concurrent writer: says it is ready, waits for ``go``, then overwrites its own
    day of bronze.days and the day every writer shares of bronze.shared, ``iterations``
    times; returns the versions its writes landed at."""
    Path(f"{go}.{writer}").touch()
    while not go.exists():
        time.sleep(0.05)
    versions = {"days": [], "shared": []}
    schema = "event_id string, amount double, event_date date"
    for i in range(iterations):
        own = spark.createDataFrame(
            [(f"{writer}-{i}-{k}", float(i), day) for k in range(5)], schema
        )
        versions["days"].append(lakehouse.write(own, "bronze.days", mode="overwrite",
            partition_by=["event_date"], partition={"event_date": day}).version)  # fmt: skip
        shared = spark.createDataFrame(
            [(f"{writer}-{i}-{k}", float(i), dt.date(2026, 2, 1)) for k in range(5)], schema
        )
        versions["shared"].append(lakehouse.write(shared, "bronze.shared", mode="overwrite",
            partition_by=["event_date"], partition={"event_date": "2026-02-01"}).version)  # fmt: skip
    return versions


OVERWRITER = (
    WRITER
    + textwrap.dedent(inspect.getsource(overwrites))
    + """
writer, day, iterations, go = sys.argv[2], dt.date.fromisoformat(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
print("VERSIONS " + json.dumps(overwrites(spark, lakehouse, writer, day, iterations, go)))
"""
)


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_killed_writer_leaves_the_table_at_its_last_commit(spark, lakehouse, tmp_path, engine):
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    folder = Path(lakehouse.uri("bronze.events"))
    before_files = set(folder.rglob("*.parquet"))
    before_logs = set((folder / "_delta_log").glob("*.json"))
    started = tmp_path / "started"
    script = _script(tmp_path, "slow_append.py", SLOW_APPEND)

    proc = subprocess.Popen(
        [sys.executable, str(script), lakehouse.root, str(started)],
        env={**os.environ, "TEST_ENGINE": engine},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not set(folder.rglob("*.parquet")) - before_files:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the writer wrote no file in 120 s"
            time.sleep(0.1)
        assert set((folder / "_delta_log").glob("*.json")) == before_logs, "committed too early"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the writer, its JVM and its Python workers
        proc.wait(timeout=30)
        proc.stderr.close()

    orphans = {Path(p) for p in set(folder.rglob("*.parquet")) - before_files}
    assert orphans and all("event_date=2026-01-09" in str(p) for p in orphans)
    assert set((folder / "_delta_log").glob("*.json")) == before_logs
    assert lakehouse.table_version("bronze.events") == 0
    assert rows_of(lakehouse.read(spark, "bronze.events")) == [("a", 1.0, D1), ("b", 2.0, D2)]
    listed = lakehouse.vacuum("bronze.events", retention_hours=0, dry_run=True)
    listed = {Path(p.removeprefix("file://")).name for p in listed}
    # (Spark's local file system also leaves a .crc file beside each Parquet file.)
    assert {n for n in listed if n.endswith(".parquet")} == {p.name for p in orphans}
    assert all(p.exists() for p in orphans)  # a dry run deletes nothing


def test_concurrent_overwrites_of_different_and_of_the_same_partition(
    spark, spark_connect, lakehouse, tmp_path, engine
):
    iterations = 2
    go = tmp_path / "go"
    script = _script(tmp_path, "overwriter.py", OVERWRITER)
    writers = {"w1": "2026-01-01", "w2": "2026-01-02"}
    # Writers are sessions on the Spark Connect server (DAG tasks) unless they need a JVM of
    # their own: on delta-rs each process commits itself, so two clients of one server race
    # as two processes do; on delta-spark the server commits, so w1 writes through another
    # JVM and races the server: this test's own Spark, in a thread (a spark-submit job of
    # its own cost about 30 s more on 2 cores and tested nothing more), or a Spark of its
    # own in a process when this test's session is itself on the server.
    connect = {"SPARK_REMOTE": f"sc://127.0.0.1:{spark_connect.port}"}
    in_thread = engine == "delta-spark" and not is_connect(spark)
    remote = {"w1": {} if engine == "delta-spark" else connect, "w2": connect}
    procs = {
        w: subprocess.Popen(
            [sys.executable, str(script), lakehouse.root, w, day, str(iterations), str(go)],
            env={**os.environ, "TEST_ENGINE": engine, **remote[w]},
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w, day in writers.items()
        if not (in_thread and w == "w1")
    }
    pool = ThreadPoolExecutor(1)
    threads = {}
    if in_thread:
        own = Lakehouse(LakehouseSettings(engine=engine), lakehouse.root)
        day = dt.date.fromisoformat(writers["w1"])
        threads["w1"] = pool.submit(overwrites, spark, own, "w1", day, iterations, go)
    try:
        deadline = time.monotonic() + 120
        while not all(Path(f"{go}.{w}").exists() for w in writers):  # both sessions are up
            assert all(p.poll() is None for p in procs.values())
            assert time.monotonic() < deadline
            time.sleep(0.1)
        go.touch()
        outputs = {w: p.communicate(timeout=240) for w, p in procs.items()}
        versions = {w: t.result(timeout=240) for w, t in threads.items()}
    finally:
        go.touch()  # a thread still waiting for it ends
        pool.shutdown(wait=True)
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for w, p in procs.items():
        assert p.returncode == 0, outputs[w][1][-3000:]
    versions |= {w: json.loads(out.split("VERSIONS ", 1)[1]) for w, (out, _) in outputs.items()}

    # different partitions: both writers' last data, exactly
    last = iterations - 1
    assert rows_of(lakehouse.read(spark, "bronze.days")) == sorted(
        (f"{w}-{last}-{k}", float(last), dt.date.fromisoformat(day))
        for w, day in writers.items()
        for k in range(5)
    )
    # the same partition: exactly one writer's batch at every version, the last one's at the end
    history = lakehouse.history("bronze.shared")
    assert sorted(h["version"] for h in history) == list(range(2 * iterations))
    for h in history:
        ids = [r[0] for r in lakehouse.read(spark, "bronze.shared", version=h["version"]).collect()]
        assert len(ids) == 5 and len({i.rsplit("-", 1)[0] for i in ids}) == 1, (h["version"], ids)
    winner = max(writers, key=lambda w: versions[w]["shared"][-1])
    assert rows_of(lakehouse.read(spark, "bronze.shared"), "event_id") == [
        (f"{winner}-{last}-{k}",) for k in range(5)
    ]


# ------------------------------------------------------------------------------------ S3
@pytest.fixture
def s3_lakehouse(spark, make_settings, s3_bucket) -> Iterator[Lakehouse]:
    """A lakehouse on the S3 server. Credentials reach Spark's Python workers through the
    executor environment (``spark.executorEnv.*`` on a cluster): the session may have been
    started before the server set them in this process."""
    environment = spark.sparkContext.environment
    saved = dict(environment)
    environment.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    yield Lakehouse(make_settings().lakehouse, f"{s3_bucket}/lake")
    environment.clear()
    environment.update(saved)


def test_s3_round_trip(spark, s3_lakehouse, engine):
    lakehouse = s3_lakehouse
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    lakehouse.write(
        events(spark, [("b2", 20.0, D2)]),
        "bronze.events",
        mode="overwrite",
        partition={"event_date": D2},
    )

    assert lakehouse.uri("bronze.events").startswith("s3://regrow-")
    assert rows_of(lakehouse.read(spark, "bronze.events")) == [("a", 1.0, D1), ("b2", 20.0, D2)]
    assert rows_of(lakehouse.read(spark, "bronze.events", version=0)) == [
        ("a", 1.0, D1),
        ("b", 2.0, D2),
    ]
    assert arrow_rows(lakehouse.to_arrow("bronze.events"), "event_id", "amount", "event_date") == [
        ("a", 1.0, D1),
        ("b2", 20.0, D2),
    ]
    assert [h["version"] for h in lakehouse.history("bronze.events")] == [1, 0]
    assert [(t.table, t.version, t.rows) for t in lakehouse.tables()] == [("bronze.events", 1, 2)]
    if engine == "delta-spark":  # Spark itself wrote and read the files, through S3A
        files = lakehouse.read(spark, "bronze.events").inputFiles()
        assert files and all(f.startswith("s3a://regrow-") for f in files)
        assert "Delta-Lake/" in lakehouse.history("bronze.events")[0].get("engineInfo", "")


def test_s3_concurrent_overwrites_of_two_partitions(spark, s3_lakehouse):
    lakehouse = s3_lakehouse
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )
    start = threading.Barrier(2)

    def overwrite(day: dt.date) -> int:
        start.wait(timeout=60)
        for i in range(3):
            df = events(spark, [(f"{day}-{i}-{k}", float(i), day) for k in range(3)])
            commit = lakehouse.write(
                df, "bronze.events", mode="overwrite", partition={"event_date": day}
            )
        return commit.version

    with ThreadPoolExecutor(2) as pool:
        last_versions = [
            f.result(timeout=180) for f in [pool.submit(overwrite, d) for d in (D1, D2)]
        ]

    assert max(last_versions) == 6
    assert lakehouse.table_version("bronze.events") == 6
    assert rows_of(lakehouse.read(spark, "bronze.events")) == sorted(
        (f"{d}-2-{k}", 2.0, d) for d in (D1, D2) for k in range(3)
    )


def test_s3_derive(spark, s3_lakehouse):
    lakehouse = s3_lakehouse
    lakehouse.write(
        events(spark, [("a", 1.0, D1), ("b", 2.0, D2)]),
        "bronze.events",
        partition_by=["event_date"],
    )

    lakehouse.derive(
        spark, "bronze.events", "silver.doubled", doubling(),
        spark.createDataFrame([], DOUBLED).schema, ["event_id", "amount", "event_date"],
        partitions={"event_date": D2}, partition_by=["event_date"],
    )  # fmt: skip

    assert arrow_rows(
        lakehouse.to_arrow("silver.doubled"), "event_id", "amount2", "event_date"
    ) == [("b", 4.0, D2)]
