"""The one contract of a stage: ``stage(ctx, day)``.

Every daily stage (ingest, validate, features, labels, score, and later monitor and
decide) takes a :class:`StageContext` and the day, and returns a small dataclass report.
A DAG task, a ``jobs/`` entrypoint, a DVC stage, the CLI, the demo and the tests build the
context once with :func:`regrow.orchestration.context.stage_context` and call the stage the
same way.

The Spark session and the model registry are made on first use: a stage that needs
neither (a registry-only task in Airflow) starts no JVM and opens no MLflow client. The
context does not know how they are made (that is orchestration's business): it is handed
the factories.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from regrow.settings import Settings
    from regrow.storage import Lakehouse


def new_run_id(prefix: str = "manual") -> str:
    """A run id for work started outside Airflow: ``manual__20260105T120000``."""
    return f"{prefix}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"


def default_actor() -> str:
    """Who acts when nobody says: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass
class StageContext:
    """What a stage runs with: settings, the lakehouse, the run id recorded on every row
    written, who acted (recorded on decisions), and Spark and the registry on demand."""

    settings: Settings
    lakehouse: Lakehouse
    run_id: str
    actor: str
    make_spark: Callable[[], SparkSession] = field(repr=False)
    # Returns a regrow.model.registry.Registry; typed loosely because the registry lives
    # in a higher layer than the stages that never touch it.
    make_registry: Callable[[], Any] = field(repr=False)

    @cached_property
    def spark(self) -> SparkSession:
        return self.make_spark()

    @cached_property
    def registry(self) -> Any:
        return self.make_registry()
