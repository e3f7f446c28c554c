"""The one factory of a stage's context, and the one logging setup.

Jobs, DAG tasks, the CLI, the demo and the tests build a :class:`~regrow.stage.StageContext`
here; Spark comes from :func:`regrow.orchestration.spark.get_spark` and the registry from
:class:`regrow.model.registry.Registry` on first use, unless the caller hands its own (a
test's session-wide SparkSession).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from regrow.model.registry import Registry
from regrow.orchestration.spark import get_spark
from regrow.stage import StageContext, default_actor, new_run_id
from regrow.storage.lakehouse import Lakehouse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from regrow.settings import Settings

# Libraries that log every call at INFO (Great Expectations logs each function it
# registers; py4j each JVM call).
_NOISY = ("py4j", "botocore", "urllib3", "s3fs", "fsspec", "great_expectations")


def setup_logging(fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s", **kwargs) -> None:
    """Log regrow at INFO, and the chatty libraries at WARNING only."""
    logging.basicConfig(level=logging.INFO, format=fmt, **kwargs)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stage_context(
    settings: Settings,
    run_id: str | None = None,
    *,
    actor: str | None = None,
    spark: SparkSession | None = None,
    registry: Registry | None = None,
    lakehouse: Lakehouse | None = None,
    jvm_log: Path | None = None,
) -> StageContext:
    """The context stages run with.

    Args:
        run_id: recorded on every row written; default ``manual__<now>``.
        actor: who acted, recorded on decisions (``airflow:<dag_id>`` from a DAG task);
            default the OS user.
        spark, registry, lakehouse: ready-made ones; by default a SparkSession of the
            ``spark`` section and the registry of the ``mlflow`` section are made on first
            use, and the lakehouse of ``lakehouse.root``.
        jvm_log: where a Spark made here sends its JVM's output (log4j, start-up
            warnings) instead of this process's stderr; None: stderr.
    """

    def make_spark() -> SparkSession:
        return spark if spark is not None else get_spark(settings.spark, jvm_log=jvm_log)

    def make_registry() -> Registry:
        return registry if registry is not None else Registry(settings)

    return StageContext(
        settings=settings,
        lakehouse=lakehouse or Lakehouse.from_settings(settings),
        run_id=run_id or new_run_id(),
        actor=actor or default_actor(),
        make_spark=make_spark,
        make_registry=make_registry,
    )
