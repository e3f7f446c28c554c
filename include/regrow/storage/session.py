"""What the storage code asks of a Spark session, classic or Spark Connect, and how a
range of small days sets it.

A Spark Connect session has no ``SparkContext`` (no RDDs, broadcasts or JVM handle):
code that runs in both kinds of session asks here instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from regrow.settings import SparkSettings


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect (remote) session."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: SparkSession) -> int:
    """How many tasks the session runs at once: the SparkContext's default parallelism,
    or for a Connect session the server's ``spark.default.parallelism`` (regrow's local
    server sets it to its cores), else this machine's cores."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    value = spark.conf.get("spark.default.parallelism", None)
    return int(value) if value else os.cpu_count() or 1


# Spark compiles each query's expressions to Java classes (whole-stage code generation,
# and a generated class per projection or predicate when that is off). A date or number in
# a query is written into the generated code as a literal, so each day's queries are new
# classes: Janino compiles them and the JIT compiles them again. On a small day that work
# costs more than it saves; on a large one the compiled code pays (a range backfill at
# 2,000 events a day: 4.9 s a day interpreted, 6.4 s compiled; at 50,000 they were even;
# a 1M-row ingest: 43k rows/s interpreted, 52k compiled: docs/spark.md). Both are runtime
# SQL confs: a Spark Connect client sets them on its own session.
INTERPRETED = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",  # Spark's internal switch (SQLConf)
}


@contextmanager
def interpreted(spark: SparkSession, spark_settings: SparkSettings) -> Iterator[None]:
    """Run the block with Spark's expressions interpreted, not compiled (for small days),
    then put the session's settings back. A key the user set in ``spark.conf`` is theirs:
    it is left as it is."""
    keys = [k for k in INTERPRETED if k not in spark_settings.conf]
    before = {k: spark.conf.get(k, None) for k in keys}
    for key in keys:
        spark.conf.set(key, INTERPRETED[key])
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


# A dataframe of at most this many rows is read as one Spark task: see :func:`one_task_if_small`.
ONE_TASK_ROWS = 100_000


def one_task_if_small(df: DataFrame, rows: int | None) -> DataFrame:
    """``df`` as one partition if it holds at most :data:`ONE_TASK_ROWS` rows (``rows``,
    e.g. from the Delta log or the landing's record counts; None: unknown, left as is).

    Why: a query that groups, joins, deduplicates or aggregates needs its rows exchanged
    between tasks, and adaptive execution runs each exchange as a Spark job of its own
    before the query's last. A single partition satisfies every distribution those
    operators require, so Spark plans no exchange and the query is one job: a 2,000-event
    day's five suites ran 15 jobs instead of 34, and its ingest 10 instead of 14
    (docs/spark.md, 2026-12-07). A larger dataframe keeps its tasks: one task uses one core.
    """
    return df.coalesce(1) if rows is not None and rows <= ONE_TASK_ROWS else df
