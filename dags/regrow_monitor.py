"""
### regrow_monitor: drift → performance → decide → report, for each newly scored day

Runs when `regrow_score` publishes the Asset `gold.predictions`. It watches the champion:
did the world move, does the model suffer, and should it retrain?

1. **select_days**: the `dates` param when given (a manual rerun); else every day of
   `gold.predictions` that `gold.monitoring` has no row of yet, oldest first. Nothing new:
   the rest of the run is skipped.
2. **compute_drift**: `jobs/monitor.py --step drift` through `SparkSubmitOperator`: every
   feature of the contract and every derived feature, the champion's score and the label
   rate of the newest matured day, against the reference window (the champion's training
   window by default). Spark counts, scipy tests; a shift is flagged only if significant
   after the day's multiple-testing correction *and* larger than `monitor.min_psi`; too
   few rows is `insufficient_data`, never a verdict.
3. **compute_performance**: `jobs/monitor.py --step performance`: the champion's
   performance estimated from its calibrated scores on each day, and realised on the
   newest day whose label window has closed, with confidence intervals.
4. **decide**: the retrain policy (`policy` in params.yaml) on each day: one
   `gold.decisions` row per day (`none`, `retrain_warm` or `retrain_full`) with the
   triggers, their numbers and the budget left. `force_decision` turns the last day's
   decision into a retrain (recorded as forced, with the actor).
5. **request_retrain**: publishes the Asset `retrain.requested` with the newest request's
   mode and reason in the event's extra (`regrow_retrain` trains in that mode); skipped
   when no day asked for a retrain.
6. **report**: one HTML report per day in `reports_dir/monitoring/` (the log names it),
   also logged to the champion's MLflow run.

Rerunning a day replaces its `gold.monitoring` rows and its decision: the same rows, the
same decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

from regrow.orchestration import tasks
from regrow.orchestration.dags import asset, dag_settings, default_args, spark_job, start_date

GOLD_PREDICTIONS = asset("gold.predictions")
RETRAIN_REQUESTED = asset("retrain.requested")
DAYS = "{{ ti.xcom_pull(task_ids='select_days') | join(',') }}"

airflow_cfg = dag_settings().airflow


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=[GOLD_PREDICTIONS],
    start_date=start_date(airflow_cfg),
    # Runs follow the Asset: there is nothing to catch up on.
    catchup=False,
    # One run at a time: a day's decision reads the decisions of the days before it.
    max_active_runs=1,
    tags=["regrow", "monitor", "gold", "drift", "policy", "spark"],
    params={
        "dates": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "format": "date"},
            title="Days to monitor",
            description="Days of gold.predictions to monitor again, YYYY-MM-DD each. "
            "Empty: every scored day not monitored yet.",
        ),
        "force_decision": Param(
            "none",
            type="string",
            enum=["none", "retrain_warm", "retrain_full"],
            title="Force a decision",
            description="Record the last day's decision as this retrain (forced, with you "
            "as the actor) whatever the policy says.",
        ),
    },
    default_args=default_args(airflow_cfg),
)
def regrow_monitor():
    @task.short_circuit
    def select_days(params: dict[str, Any], run_id: str, dag_run=None) -> list[str]:
        """The days to monitor; none: skip the rest of the run."""
        return tasks.days_to_monitor(params, run_id, dag_run.dag_id)

    compute_drift = spark_job("compute_drift", "monitor.py", [f"--dates={DAYS}", "--step=drift"])
    compute_performance = spark_job(
        "compute_performance", "monitor.py", [f"--dates={DAYS}", "--step=performance"]
    )

    @task
    def decide(days: list[str], params: dict[str, Any], run_id: str, dag_run=None) -> list[dict]:
        """The retrain policy on each day: one gold.decisions row per day."""
        return tasks.decide_days(days, params, run_id, dag_run.dag_id)

    @task(outlets=[RETRAIN_REQUESTED])
    def request_retrain(decisions: list[dict], *, outlet_events=None) -> dict:
        """Publish retrain.requested (mode and reason in its extra), or skip."""
        return tasks.request_retrain(decisions, outlet_events, RETRAIN_REQUESTED)

    @task
    def report(days: list[str], run_id: str, dag_run=None) -> list[str]:
        """The HTML report of each day."""
        return tasks.report_days(days, run_id, dag_run.dag_id)

    days = select_days()
    decisions = decide(days)
    days >> compute_drift >> compute_performance >> decisions
    decisions >> report(days)
    request_retrain(decisions)


regrow_monitor()
