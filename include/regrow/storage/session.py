"""What the storage code asks of a Spark session, classic or Spark Connect.

A Spark Connect session has no ``SparkContext`` (no RDDs, broadcasts or JVM handle):
code that runs in both kinds of session asks here instead.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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
