"""
### regrow_ingest: land one day of raw files in bronze, then build silver

Daily, with `catchup` for backfills. A run covers one whole UTC day, its logical date
(`ds`): the run for 2026-01-01 starts at 2026-01-02T00:00, once that day is over.

1. **wait_for_events**: a sensor (reschedule mode: it frees its worker slot between
   pokes) that looks for the day's event files,
   `{landing.path}/events/YYYY-MM-DD/*.{landing.format}`, local or `s3://` (there, the
   Amazon provider's `S3KeySensor` on the `airflow.aws_conn_id` connection). It logs the
   pattern it waits for on every poke; after `airflow.sensor_timeout_seconds` without a
   file, the run fails. The files found go to XCom.
2. **ingest_events**: `jobs/ingest.py --date <ds>` through `SparkSubmitOperator` on the
   `airflow.spark_conn_id` connection (`local[*]` by default, a cluster master to scale
   out). It replaces the day's partitions of `bronze.events`, `bronze.quarantine` and
   `bronze.labels`; rows that break the contract or a row-level expectation go to
   quarantine with the reason.
3. **validate_bronze**: `jobs/validate.py --date <ds>`: the Great Expectations suites of
   `expectations/` on the day's bronze partitions. Results go to `gold.validation` and
   Data Docs (the task log names the page). A critical failure (an empty feed, too many
   quarantined rows, a schema change) fails the task and blocks the day; warnings (a
   volume spike, a new category) are recorded. Only then is the Asset `bronze.events`
   published.
4. **build_features** and **build_labels** (independent of each other):
   **build_features**: `jobs/features.py --date <ds>`: the day's `silver.features`, the
   contract's features plus per-entity aggregates over strictly earlier events (the
   `features` section). It reads the day and the earlier days its longest window reaches;
   if one of them is not in bronze yet (a backfill running days out of order), the task
   fails naming it, and its retry finds it.
   **build_labels**: `jobs/labels.py --date <ds>`: the labels that landed that day, joined
   to their events, in `silver.labels`.
5. **validate_silver**: the Great Expectations suites of both silver tables on the day's
   partitions (nothing lost against bronze, keys, counts of earlier events never
   negative). Then the Asset `silver.features` is published: scoring runs on it.

**Catch-up**: a manual run with `catch_up_from` and `catch_up_to` (typed params) skips the
daily chain and runs `jobs/backfill.py` over the whole range in one Spark application (the
same steps, day after day, each day's partitions as a daily run writes them; a missing
landing day fails it before anything is written), then publishes `bronze.events` and
`silver.features` with the range's days in the events' extra: a year of history is one
run, not 365. Scheduled runs keep one run per day.

Everything is configured in the `airflow` section of `params.yaml` (`$REGROW_PARAMS`).
Rerunning a day gives the same tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from regrow.orchestration import tasks
from regrow.orchestration.dags import (
    asset,
    dag_settings,
    default_args,
    landing_on_s3,
    s3_landing_sensor,
    spark_job,
    start_date,
)

BRONZE_EVENTS = asset("bronze.events")
SILVER_FEATURES = asset("silver.features")  # regrow_score runs on it

airflow_cfg = dag_settings().airflow


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    # Each run covers one whole day: the run for 2026-01-01 ({{ ds }}) starts when that day
    # is over, at 2026-01-02T00:00 UTC, like Airflow 2's data intervals.
    schedule=CronDataIntervalTimetable(airflow_cfg.schedule, timezone="UTC"),
    start_date=start_date(airflow_cfg),
    catchup=airflow_cfg.catchup,
    max_active_runs=airflow_cfg.max_active_runs,
    tags=["regrow", "ingest", "bronze", "silver", "spark"],
    params={
        "catch_up_from": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Catch up from",
            description="First day of a catch-up range, YYYY-MM-DD (with catch_up_to): the "
            "whole range in one Spark application instead of the run's own day.",
        ),
        "catch_up_to": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Catch up to",
            description="Last day of the catch-up range, YYYY-MM-DD (inclusive).",
        ),
    },
    default_args=default_args(airflow_cfg),
)
def regrow_ingest():
    @task.branch
    def choose_path(params: dict[str, Any]) -> str:
        """The day's chain, or the catch-up range when the run names one."""
        return tasks.ingest_path(params)

    backfill_range = spark_job(
        "backfill_range",
        "backfill.py",
        ["--from", "{{ params.catch_up_from }}", "--to", "{{ params.catch_up_to }}",
         "--run-id", "{{ run_id }}"],
    )  # fmt: skip

    @task(outlets=[BRONZE_EVENTS, SILVER_FEATURES])
    def publish_range(params: dict[str, Any], *, outlet_events=None) -> list[str]:
        """The range's days, in the extra of the Asset events (regrow_score scores them)."""
        return tasks.publish_range(params, outlet_events, [BRONZE_EVENTS, SILVER_FEATURES])

    @task.sensor(
        poke_interval=airflow_cfg.sensor_poke_interval_seconds,
        timeout=airflow_cfg.sensor_timeout_seconds,
        mode="reschedule",
    )
    def wait_for_events(ds: str) -> PokeReturnValue:
        """Done when the day's event files have landed; their paths go to XCom."""
        return tasks.poke_landing(ds, "events")

    ingest_events = spark_job("ingest_events", "ingest.py")
    validate_bronze = spark_job("validate_bronze", "validate.py", outlets=[BRONZE_EVENTS])
    build_features = spark_job("build_features", "features.py")
    build_labels = spark_job("build_labels", "labels.py")
    validate_silver = spark_job(
        "validate_silver",
        "validate.py",
        ["--date", "{{ ds }}", "--run-id", "{{ run_id }}",
         "--table", "silver.features", "--table", "silver.labels"],
        outlets=[SILVER_FEATURES],
    )  # fmt: skip

    # An s3:// landing path is awaited by the Amazon provider's S3KeySensor instead.
    waiting = (
        s3_landing_sensor("wait_for_events", "events") if landing_on_s3() else wait_for_events()
    )
    choose_path() >> [waiting, backfill_range]
    backfill_range >> publish_range()
    waiting >> ingest_events >> validate_bronze
    validate_bronze >> [build_features, build_labels] >> validate_silver


regrow_ingest()
