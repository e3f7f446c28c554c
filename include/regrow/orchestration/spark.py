"""The one way regrow builds a SparkSession (jobs, CLI, DVC stages and tests share it)."""

from __future__ import annotations

import glob
import os
import sys
from typing import TYPE_CHECKING

from regrow.settings import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def _spark_jars(pattern: str) -> list[str]:
    """Jars matching ``pattern`` in pyspark's own jars or $SPARK_HOME/jars."""
    import pyspark

    homes = {os.path.dirname(pyspark.__file__)}
    if os.environ.get("SPARK_HOME"):
        homes.add(os.environ["SPARK_HOME"])
    found: list[str] = []
    for home in sorted(homes):
        found += glob.glob(os.path.join(home, "jars", pattern))
    return found


def delta_connector_jars() -> list[str]:
    """Delta Lake JVM connector jars visible to Spark."""
    return _spark_jars("delta-spark_*.jar")


def s3a_conf() -> dict[str, str]:
    """With hadoop-aws on the classpath (the Docker image), Spark reads and writes
    ``s3://`` paths through S3A, with the endpoint from ``AWS_ENDPOINT_URL`` if set.
    Without it (a pip-only install) S3 goes through pyarrow/delta-rs instead."""
    if not _spark_jars("hadoop-aws-*.jar"):
        return {}
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return conf


def has_delta_connector(spark_settings: SparkSettings) -> bool:
    extra = " ".join(spark_settings.conf.get(k, "") for k in ("spark.jars", "spark.jars.packages"))
    return bool(delta_connector_jars()) or "delta-spark" in extra


def get_spark(
    spark_settings: SparkSettings, extra_conf: dict[str, str] | None = None
) -> SparkSession:
    """Get or create the SparkSession described by the ``spark`` section.

    Python workers must run this interpreter (it has pyarrow and regrow), so
    ``PYSPARK_PYTHON`` defaults to ``sys.executable``. Time is UTC everywhere.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(spark_settings.app_name)
    # Under spark-submit the master and driver memory come from its command line (the
    # Airflow connection); a value set here would silently override them.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        builder = builder.master(spark_settings.master).config(
            "spark.driver.memory", spark_settings.driver_memory
        )
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(spark_settings.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if not submitted and spark_settings.master.startswith("local"):
        # A local session talks to itself only: bind to loopback, not the first interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    if has_delta_connector(spark_settings):
        builder = builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
            "spark.sql.catalog.spark_catalog", DELTA_CATALOG
        )
    for key, value in {**s3a_conf(), **spark_settings.conf, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
