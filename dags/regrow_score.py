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

from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

from regrow.orchestration import tasks
from regrow.orchestration.dags import (
    asset,
    dag_settings,
    default_args,
    mapped_spark_job,
    start_date,
)

SILVER_FEATURES = asset("silver.features")
GOLD_PREDICTIONS = asset("gold.predictions")

airflow_cfg = dag_settings().airflow


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
        return tasks.select_days(params, run_id, triggering_asset_events, SILVER_FEATURES)

    mapped_spark_job(
        "score_batch",
        "score.py",
        select_days(),
        outlets=[GOLD_PREDICTIONS],
        # One day after another: each day is a whole Spark job (Spark parallelizes within
        # it), and days written at once would race to create the tables and to add the
        # same model lineage rows.
        max_active_tis_per_dagrun=1,
    )


regrow_score()
