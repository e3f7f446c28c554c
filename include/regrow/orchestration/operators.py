"""regrow's operators on the providers' own: the landing sensor of an ``s3://`` landing
path (the Amazon provider's ``S3KeySensor``), and ``spark-submit`` with the task's AWS
access.

:class:`LandingKeySensor` waits for the day's folder, ``{landing.path}/{kind}/{{ ds }}/*`` (a wildcard match), on
the ``airflow.aws_conn_id`` connection, and is done when a file there is one that ingest
reads (:func:`regrow.data.landing.read_as`: the landing format's extensions in any letter
case, plain or compressed): the same files as the local sensor's
(:func:`regrow.orchestration.tasks.poke_landing`), whose ``s3://`` URIs go to XCom.
This module imports the providers: DAG files reach it only through
:mod:`regrow.orchestration.dags`, at the call that needs it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from regrow.data.landing import Kind, day_pattern, read_as
from regrow.orchestration.aws import S3UnreachableError, aws_access, aws_environment
from regrow.orchestration.dags import dag_settings
from regrow.settings import LandingSettings
from regrow.storage.options import unreachable_cause

# A poke fails in seconds when the endpoint does not answer, not after botocore's loop.
BOTOCORE_CONFIG = {"connect_timeout": 5, "read_timeout": 10,
                   "retries": {"max_attempts": 2, "mode": "standard"}}  # fmt: skip


class LandingKeySensor(S3KeySensor):
    """``S3KeySensor`` on a day's landing folder, keeping only the files ingest reads;
    their ``s3://`` URIs are its XCom (reschedule mode as the local sensor)."""

    def __init__(self, *, root: str, landing: LandingSettings, kind: Kind, **kwargs: Any):
        super().__init__(
            bucket_key=f"{root.rstrip('/')}/{kind}/{{{{ ds }}}}/*",  # day_dir of the run's day
            wildcard_match=True,
            metadata_keys=["Key", "Size"],
            botocore_config=BOTOCORE_CONFIG,
            **kwargs,
        )
        self.root, self.landing, self.kind = root, landing, kind
        self._found: list[str] = []

    def _readable(self, files: list[dict[str, Any]]) -> bool:
        bucket = self.bucket_key.removeprefix("s3://").split("/", 1)[0]
        folder = self.bucket_key.removeprefix(f"s3://{bucket}/").rsplit("/", 1)[0]
        names = [f["Key"].removeprefix(f"{folder}/") for f in files]
        # Only the day's folder itself, as ingest reads it (not its sub-folders).
        self._found = sorted(
            f"s3://{bucket}/{folder}/{name}"
            for name in names
            if name and "/" not in name and read_as(name, self.landing)[1] is None
        )
        return bool(self._found)

    def poke(self, context: Any) -> PokeReturnValue:
        self._found = []
        # Bound here, not in __init__: Airflow runs a copy of the operator, templates rendered.
        self.check_fn = self._readable
        try:
            done = super().poke(context)
        except Exception as err:
            cause = unreachable_cause(err)
            if cause is None:
                raise
            access = aws_access(self.aws_conn_id)
            raise S3UnreachableError(
                f"cannot use {self.root} (landing.path) with {access.describe()}: {cause}; "
                f"check that the server runs, or fix the Airflow connection {self.aws_conn_id!r}"
            ) from err
        day = dt.date.fromisoformat(context["ds"])
        if done:
            self.log.info("found %d landing file(s) for %s: %s", len(self._found), day, self._found)
        else:
            pattern = day_pattern(self.root, self.landing, self.kind, day)
            self.log.info("waiting for landing files matching %s", pattern)
        return PokeReturnValue(is_done=bool(done), xcom_value=self._found)

    def execute(self, context: Any) -> list[str] | None:
        # S3KeySensor.execute returns nothing: the poke's XCom value, as a sensor's.
        return BaseSensorOperator.execute(self, context)


class AwsSparkSubmitOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` run in the task's AWS access
    (:func:`regrow.orchestration.aws.aws_environment`): ``spark-submit`` and a driver it
    starts here (local or client deploy mode) inherit it, and the driver ships it to its
    executors (:func:`regrow.storage.options.task_storage_options`, S3A conf). A driver
    started on a cluster (cluster deploy mode) uses that cluster's own credentials."""

    def execute(self, context: Any) -> None:
        with aws_environment(dag_settings()):
            super().execute(context)
