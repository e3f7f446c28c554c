"""
### regrow_retrain: training set → DVC snapshot → challenger → gate → promote or keep

Runs when the retrain policy publishes the Asset `retrain.requested` (`regrow_monitor`),
and on `airflow.retrain_schedule` as a fallback (Mondays 03:00 UTC by default) so that a quiet policy cannot leave the
champion untouched for ever. Either way, a run on the same data as the champion is skipped.

1. **build_trainset**: `jobs/trainset.py` through `SparkSubmitOperator` on the
   `airflow.spark_conn_id` connection: the training set of the cut-off (`cutoff_date`,
   else `split.cutoff_date`, else the day after the newest `silver.features` day), matured
   labels only, split by time, written to `split.output_dir`.
2. **check_retrain_needed**: skips the rest of the run (short-circuit) when the champion
   was trained on this very snapshot, unless `force_retrain`; the log says why.
3. **snapshot_trainset**: `dvc commit` + `dvc push` of the `trainset` stage when the
   project is a DVC repository; the snapshot's DVC hash either way.
4. **train_model**: a challenger, stateless or warm-started from the champion (`mode`,
   else `train.mode`), tracked in MLflow, registered with its lineage (trigger, training-set
   hash, DVC hash, git commit) and the alias `challenger`.
5. **evaluate_challenger**: challenger and champion on the same rows (backtest window and
   pinned test set), baselines, behavioral tests; the report goes to XCom.
6. **decide_promotion**: the gate. Promoted: the alias `champion` moves to the new
   version. Kept: it stays `challenger` and scores in shadow. One `gold.decisions` row
   either way, with the reason, by `airflow:regrow_retrain`.
7. **report_retrain**: a markdown report in `reports_dir/retrain/`; the log names it.

A training set that cannot make a model (too few rows or positives, no matured label)
fails the run at once, without retries: only new data fixes it. An unreachable MLflow is
retried with backoff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from regrow.orchestration import tasks
from regrow.orchestration.dags import asset, dag_settings, default_args, spark_job, start_date

# Published by regrow_monitor when the retrain policy fires.
RETRAIN_REQUESTED = asset("retrain.requested")

airflow_cfg = dag_settings().airflow


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(airflow_cfg.retrain_schedule, timezone="UTC"),
        assets=RETRAIN_REQUESTED,
    ),
    start_date=start_date(airflow_cfg),
    # A retrain learns from the newest data: replaying missed weeks would train on the
    # same snapshot again and again.
    catchup=False,
    # One retrain at a time: runs share the snapshot directory (split.output_dir), the
    # model directory and the champion alias; a second run would race for all three.
    max_active_runs=1,
    tags=["regrow", "retrain", "mlflow", "dvc", "spark"],
    params={
        "force_retrain": Param(
            False,
            type="boolean",
            title="Force retrain",
            description="Train even if the champion was trained on this very training set.",
        ),
        "mode": Param(
            tasks.DEFAULT_MODE,
            type="string",
            enum=[tasks.DEFAULT_MODE, "stateless", "warm_start"],
            title="Training mode",
            description="stateless: from scratch; warm_start: continue the champion's "
            "booster on the new rows; default: train.mode of params.yaml.",
        ),
        "cutoff_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Cut-off date",
            description="Exclusive cut-off day of the training set, YYYY-MM-DD. Empty: "
            "split.cutoff_date of params.yaml, else the day after the newest features day.",
        ),
    },
    default_args=default_args(airflow_cfg),
)
def regrow_retrain():
    build_trainset = spark_job(
        "build_trainset", "trainset.py", ["--cutoff={{ params.cutoff_date or '' }}"]
    )

    @task.short_circuit
    def check_retrain_needed(params: dict[str, Any], run_id: str, dag_run=None) -> bool:
        """False (skip the rest) when the champion was trained on this snapshot."""
        return tasks.check_retrain_needed(params, run_id, dag_run.dag_id)

    @task
    def snapshot_trainset() -> dict[str, Any]:
        """Version the snapshot with DVC; its hash goes to XCom."""
        return tasks.snapshot_trainset()

    @task
    def train_model(
        params: dict[str, Any], run_id: str, dag_run=None, triggering_asset_events=None
    ) -> dict[str, Any]:
        """Train and register a challenger; its facts go to XCom."""
        return tasks.train_model(params, run_id, dag_run, triggering_asset_events)

    @task
    def evaluate_challenger(facts: dict[str, Any], run_id: str, dag_run=None) -> dict[str, Any]:
        """Challenger vs champion on the same rows; the report goes to XCom."""
        return tasks.evaluate_challenger(facts, run_id, dag_run.dag_id)

    @task
    def decide_promotion(report: dict[str, Any], run_id: str, dag_run=None) -> dict[str, Any]:
        """The gate: promote or keep, recorded in gold.decisions."""
        return tasks.decide_promotion(report, run_id, dag_run.dag_id)

    @task
    def report_retrain(facts: dict[str, Any], outcome: dict[str, Any]) -> str:
        """Write the markdown report of the run."""
        return tasks.report_retrain(facts, outcome)

    facts = train_model()
    outcome = decide_promotion(evaluate_challenger(facts))
    build_trainset >> check_retrain_needed() >> snapshot_trainset() >> facts
    report_retrain(facts, outcome)


regrow_retrain()
