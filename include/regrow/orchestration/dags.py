"""What regrow's DAG files are wired from, at parse time: their settings, Assets, default
arguments, and the Spark job task factory (the bodies of their Python tasks are in
:mod:`regrow.orchestration.tasks`).

DAG files import this module, :mod:`regrow.orchestration.tasks` and :mod:`regrow.settings`
only (an import-linter contract says so). The DAG processor imports it on every parse: keep it free of heavy imports
(pyspark, xgboost, mlflow, great_expectations); Airflow's own modules are imported inside
the functions that need them.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regrow.settings import AirflowSettings, Settings, find_params, load_settings

if TYPE_CHECKING:
    from airflow.sdk import Asset, BaseOperator

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DAGS_FOLDER = REPO_ROOT / "dags"
JOBS_FOLDER = REPO_ROOT / "jobs"
# The Assets that chain regrow's DAGs, name -> (URI, group). A producer's outlet and its
# consumers' schedule are built from this one table, so they cannot drift apart.
ASSETS: dict[str, tuple[str, str]] = {
    "bronze.events": ("regrow://lakehouse/bronze/events", "bronze"),
    "silver.features": ("regrow://lakehouse/silver/features", "silver"),
    "gold.predictions": ("regrow://lakehouse/gold/predictions", "gold"),
    "retrain.requested": ("regrow://policy/retrain-requested", "policy"),
}


def dag_settings() -> Settings:
    """The settings a DAG file wires itself from, read once per params file and process.

    DAG files call this at parse time (schedule, retries, sensor timings come from the
    ``airflow`` section of params.yaml). The DAG processor re-parses every file every
    ``min_file_process_interval`` seconds, and a DagBag parses all regrow DAGs in one
    process, so the (light: YAML + pydantic) load is cached, keyed by the file's path and
    modification time so that an edited params.yaml or another ``$REGROW_PARAMS`` is seen.
    """
    params = find_params()
    return _load_settings_cached(params, params.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load_settings_cached(params: Path, mtime_ns: int) -> Settings:
    return load_settings(params)


def start_date(cfg: AirflowSettings):
    """``airflow.start_date`` as the UTC midnight Airflow wants (a pendulum datetime)."""
    import pendulum

    day = cfg.start_date
    return pendulum.datetime(day.year, day.month, day.day, tz="UTC")


def spark_submit_conf() -> dict[str, str]:
    """Spark conf of every regrow spark-submit: Python workers must run this interpreter
    (it has pyarrow, deltalake, xgboost and regrow), and regrow's JVM jars and JVM options
    go on the command line: the driver's class path and options are fixed when
    spark-submit starts it, before the job's own session conf is read."""
    from regrow.orchestration.spark import session_conf

    conf = {"spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable}
    fixed_at_start = (
        "spark.jars",
        "spark.driver.extraJavaOptions",
        "spark.executor.extraJavaOptions",
    )
    session = session_conf(dag_settings().spark)
    return conf | {key: session[key] for key in fixed_at_start if key in session}


def asset(name: str) -> Asset:
    """The Airflow ``Asset`` called ``name``, with its URI and group from :data:`ASSETS`.

    Raises:
        KeyError: ``name`` is not a regrow Asset (the message lists those there are).
    """
    from airflow.sdk import Asset

    if name not in ASSETS:
        raise KeyError(f"no regrow Asset named {name!r}: the Assets are {sorted(ASSETS)}")
    uri, group = ASSETS[name]
    return Asset(name=name, uri=uri, group=group)


def alert_on_failure(context) -> None:
    """A DAG's ``on_failure_callback``: log an alert naming the task, the run's day (its id
    when it has no logical date, as an Asset-triggered run) and the error (a hook for
    paging later)."""
    ti = context["ti"]
    logger.error(
        "ALERT %s.%s failed for %s (try %s): %s",
        ti.dag_id, ti.task_id, context.get("ds") or context.get("run_id"), ti.try_number,
        context.get("exception"),
    )  # fmt: skip


def default_args(cfg: AirflowSettings) -> dict:
    """The ``default_args`` every regrow DAG shares: retries with exponential backoff (up
    to an hour) and the failure alert."""
    return {
        "owner": "regrow",
        "retries": cfg.retries,
        "retry_delay": dt.timedelta(seconds=cfg.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(hours=1),
        "on_failure_callback": alert_on_failure,
    }


def params_file() -> str:
    """The params.yaml a DAG was wired from: its Spark jobs read the same file."""
    return str(find_params())


def spark_job(
    task_id: str,
    job: str,
    args: Sequence[str] = ("--date", "{{ ds }}", "--run-id", "{{ run_id }}"),
    **kwargs: Any,
) -> BaseOperator:
    """A task that runs ``jobs/<job>`` with the DAG's params.yaml, as ``airflow.spark_via``
    says: on the Spark Connect server of ``airflow.spark_connect_conn_id`` (a warm JVM: the
    task pays no Spark start), or through ``SparkSubmitOperator`` on ``airflow.spark_conn_id``
    (a JVM per task, e.g. on a cluster master; it fails at once, naming the connection,
    when that standalone master does not answer: :mod:`regrow.orchestration.submit`).

    Args:
        args: the job's own arguments (templated); by default the run's day and run id.
        kwargs: more operator arguments (``outlets``, ...).
    """
    cfg = dag_settings().airflow
    args = [*args, "--params", params_file()]
    if cfg.spark_via == "connect":
        from airflow.providers.standard.operators.python import PythonOperator

        return PythonOperator(
            task_id=task_id,
            python_callable=_run_connect_job,
            op_args=args,
            op_kwargs={"job": job, "conn_id": cfg.spark_connect_conn_id},
            **kwargs,
        )
    from regrow.orchestration.submit import SparkJobOperator

    daily = "{{ ds }}" in args  # a daily job's Spark application is named by its day
    return SparkJobOperator(
        task_id=task_id,
        application=str(JOBS_FOLDER / job),
        conn_id=cfg.spark_conn_id,
        application_args=args,
        name=f"regrow_{task_id}" + ("_{{ ds_nodash }}" if daily else ""),
        conf=spark_submit_conf(),
        **kwargs,
    )


def landing_on_s3() -> bool:
    """Whether ``landing.path`` is an ``s3://`` URI (its sensor: :func:`s3_landing_sensor`)."""
    settings = dag_settings()
    return settings.resolve(settings.landing.path).startswith("s3://")


def s3_landing_sensor(task_id: str, kind: str) -> BaseOperator:
    """The Amazon provider's ``S3KeySensor`` on the run's day of ``kind`` files of an
    ``s3://`` landing path, on the ``airflow.aws_conn_id`` connection, with the local
    sensor's timings (reschedule mode): see :mod:`regrow.orchestration.operators`."""
    from regrow.orchestration.operators import LandingKeySensor

    settings = dag_settings()
    cfg = settings.airflow
    return LandingKeySensor(
        task_id=task_id,
        root=settings.resolve(settings.landing.path),
        landing=settings.landing,
        kind=kind,
        aws_conn_id=cfg.aws_conn_id,
        poke_interval=cfg.sensor_poke_interval_seconds,
        timeout=cfg.sensor_timeout_seconds,
        mode="reschedule",
        doc_md="Done when the day's event files have landed in S3; their URIs go to XCom.",
    )


def mapped_spark_job(task_id: str, job: str, arguments: Any, **kwargs: Any):
    """:func:`spark_job` mapped over ``arguments`` (an XCom of argument lists, each from
    :func:`job_args`): one task per element, which shows its day (the list's second item)."""
    cfg = dag_settings().airflow
    if cfg.spark_via == "connect":
        from airflow.providers.standard.operators.python import PythonOperator

        return PythonOperator.partial(
            task_id=task_id,
            python_callable=_run_connect_job,
            op_kwargs={"job": job, "conn_id": cfg.spark_connect_conn_id},
            map_index_template="{{ task.op_args[1] }}",
            **kwargs,
        ).expand(op_args=arguments)
    from regrow.orchestration.submit import SparkJobOperator

    return SparkJobOperator.partial(
        task_id=task_id,
        application=str(JOBS_FOLDER / job),
        conn_id=cfg.spark_conn_id,
        name=f"regrow_{task_id}",
        conf=spark_submit_conf(),
        map_index_template="{{ task.application_args[1] }}",
        **kwargs,
    ).expand(application_args=arguments)


def _run_connect_job(*args: str, job: str, conn_id: str) -> None:
    """The body of a Spark Connect job task: ``jobs/<job>``'s ``main`` on the server of the
    ``conn_id`` connection, in this process (:func:`regrow.orchestration.tasks.run_connect_job`)."""
    from regrow.orchestration.tasks import run_connect_job

    run_connect_job(job, list(args), conn_id)


def job_args(day: str, run_id: str) -> list[str]:
    """The arguments of a daily job for ``day``: a mapped argument is never templated
    ("How do templated fields and mapped arguments interact?" in Airflow's
    dynamic-task-mapping docs), so the run id is passed in, not as ``{{ run_id }}``."""
    return ["--date", day, "--params", params_file(), "--run-id", run_id]
