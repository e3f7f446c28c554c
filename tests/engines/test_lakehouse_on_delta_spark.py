"""tests/integration/test_lakehouse.py again, on the delta-spark engine (Delta Lake's JVM
connector, fetched by ``make setup``)."""

from __future__ import annotations

import pytest

from tests.integration.test_lakehouse import *  # noqa: F403  (its tests, collected again)


@pytest.fixture(scope="module")
def engine() -> str:
    return "delta-spark"


def test_a_days_overwrite_is_written_without_sorting_its_rows(spark, lakehouse):
    """Delta's writer sorts a partitioned write's rows by the partition columns unless
    Spark's concurrent writers are on (regrow's session conf): on a 10M-row day that sort
    spilled, and merging the spill files ran out of heap (docs/spark.md). A sort holds
    execution memory (its pages) in the write's stage; an unsorted write holds none."""
    from pyspark.sql import functions as F

    from regrow.storage.session import is_connect

    if is_connect(spark):  # the suite on a Connect server: the server's conf says it
        assert int(spark.conf.get("spark.sql.maxConcurrentOutputFileWriters")) > 0
        return
    day = D1  # noqa: F405
    rows = spark.range(20_000).select(
        F.concat(F.lit("e"), F.col("id").cast("string")).alias("event_id"),
        F.col("id").cast("double").alias("amount"),
        F.lit(day).alias("event_date"),
    )
    before = {s.stageId() for s in _stages(spark)}
    lakehouse.write(
        rows,
        "bronze.events",
        "overwrite",
        partition_by=["event_date"],
        partition={"event_date": day},
    )
    written = [
        s for s in _stages(spark) if s.stageId() not in before and s.name().startswith("save")
    ]
    assert written, [s.name() for s in _stages(spark) if s.stageId() not in before]
    assert [s.peakExecutionMemory() for s in written] == [0] * len(written)
    assert lakehouse.partition_rows("bronze.events") == {str(day): 20_000}


def _stages(spark) -> list:
    """Every stage of the session, from Spark's own status store (what its UI shows):
    PySpark's StatusTracker has no memory metrics. Through py4j, so every argument of
    ``AppStatusStore.stageList`` is given (statuses, details, summaries, quantiles, tasks)."""
    sc = spark.sparkContext
    jvm = sc._jvm
    found = (
        sc._jsc.sc()
        .statusStore()
        .stageList(
            None, False, False, sc._gateway.new_array(jvm.double, 0), jvm.java.util.ArrayList()
        )
    )
    return [found.apply(i) for i in range(found.size())]
