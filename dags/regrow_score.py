"""
### regrow_score: score each new day of silver.features into gold.predictions

Runs when `regrow_ingest` publishes the Asset `silver.features` (its **validate_silver**
task, once a day's silver partitions pass their suites). While a run is going, the events
that arrive meanwhile wait, and the next run takes them all at once.

1. **select_days**: the days to score. The `dates` param when given (a manual run, a
   re-score after a promotion); else the days of the triggering `silver.features` events,
   each the logical date (`ds`) of the ingest run that published it, every distinct day
   once, oldest first. A run with neither (triggered by hand without `dates`) fails at once,
   saying to pass `dates`.
2. **score_batch**: one mapped task per day (named by the day), `jobs/score.py --date <day>`
   through `SparkSubmitOperator` on the `airflow.spark_conn_id` connection. It scores the
   day's events with the registry's champion (and the challenger, in shadow, as alias
   `shadow`), replaces the day's `gold.predictions` partition, records the models' lineage
   in `gold.model_versions` and runs the `gold.predictions` suite on it. Each day that
   passes publishes the Asset `gold.predictions`.

No champion, a day without features, or features that no longer match the model's
signature fail the day's task with the reason. Scoring a day again replaces its partition.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from regrow.orchestration.airflow_local import (
    asset,
    asset_event_days,
    dag_settings,
    days_to_score,
    default_args,
    spark_submit_conf,
    start_date,
)
from regrow.settings import find_params

logger = logging.getLogger(__name__)

JOBS = Path(__file__).resolve().parents[1] / "jobs"
SILVER_FEATURES = asset("silver.features")
GOLD_PREDICTIONS = asset("gold.predictions")

settings = dag_settings()
airflow_cfg = settings.airflow
PARAMS_FILE = str(find_params())  # the job reads the same file the DAG was wired from


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=[SILVER_FEATURES],
    start_date=start_date(airflow_cfg),
    # Runs follow the Asset, not a calendar: there is nothing to catch up on.
    catchup=False,
    # One run at a time: two runs may score the same day (a rebuilt day, a manual re-score)
    # and would race to replace its partition. Events that arrive meanwhile are not lost:
    # the next run takes them all.
    max_active_runs=1,
    tags=["regrow", "score", "gold", "mlflow", "spark"],
    params={
        "dates": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "format": "date"},
            title="Days to score",
            description="Days of silver.features to score, YYYY-MM-DD each. Empty: the "
            "days of the silver.features events that triggered the run.",
        ),
    },
    default_args=default_args(airflow_cfg),
)
def regrow_score():
    @task
    def select_days(
        params: dict[str, Any], run_id: str, triggering_asset_events=None
    ) -> list[list[str]]:
        """The days to score, as the `jobs/score.py` arguments of one mapped task each."""
        try:
            days = days_to_score(
                params["dates"], asset_event_days(triggering_asset_events, SILVER_FEATURES)
            )
        except ValueError as err:  # nothing to score: a retry cannot change that
            raise AirflowFailException(str(err)) from err
        logger.info("scoring %d day(s): %s", len(days), ", ".join(days))
        # The run id goes in here, not as "{{ run_id }}" below: a mapped argument is never
        # templated ("How do templated fields and mapped arguments interact?" in Airflow's
        # dynamic-task-mapping docs), so the job would record the literal "{{ run_id }}".
        return [["--date", day, "--params", PARAMS_FILE, "--run-id", run_id] for day in days]

    SparkSubmitOperator.partial(
        task_id="score_batch",
        application=str(JOBS / "score.py"),
        conn_id=airflow_cfg.spark_conn_id,
        name="regrow_score_batch",
        conf=spark_submit_conf(),
        outlets=[GOLD_PREDICTIONS],
        # One day after another: each day is a whole Spark application (the Spark cluster
        # parallelizes within it), and days written at once would race to create the
        # tables and to add the same model lineage rows.
        max_active_tis_per_dagrun=1,
        map_index_template="{{ task.application_args[1] }}",  # the task shows its day
    ).expand(application_args=select_days())


regrow_score()
