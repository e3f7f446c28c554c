"""regrow_retrain's wiring: its schedule, its task chain, and what a run records as its
trigger (the run itself is tested under Airflow in tests/integration/test_airflow_retrain.py)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.dag_processing.dagbag import DagBag  # after conftest.py set AIRFLOW_HOME
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException

from regrow.orchestration.tasks import retrain_trigger
from tests.snapshots import write_snapshot

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "regrow_retrain.py"


CHAIN = [
    "build_trainset", "check_retrain_needed", "snapshot_trainset", "train_model",
    "evaluate_challenger", "decide_promotion", "report_retrain",
]  # fmt: skip


@pytest.fixture(scope="module")
def repo_params():
    """The DAG file wires itself from the repo's params.yaml."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGROW_PARAMS", str(REPO / "params.yaml"))
        yield


@pytest.fixture(scope="module")
def retrain_dag(repo_params):
    bag = DagBag(dag_folder=DAG_FILE)
    assert not bag.import_errors, bag.import_errors
    return bag.dags["regrow_retrain"]


def test_runs_on_retrain_requested_or_weekly(retrain_dag):
    schedule = retrain_dag.timetable
    assert schedule.asset_condition == Asset(
        name="retrain.requested", uri="regrow://policy/retrain-requested", group="policy"
    )
    assert (schedule.timetable.expression, str(schedule.timetable.timezone)) == (
        "0 3 * * 1",
        "UTC",
    )
    assert retrain_dag.catchup is False
    assert retrain_dag.max_active_runs == 1


def test_tasks_run_in_one_chain(retrain_dag):
    # report_retrain also reads train_model's facts; everything else is a straight line.
    for upstream, downstream in pairwise(CHAIN):
        assert downstream in retrain_dag.get_task(upstream).downstream_task_ids, upstream
    assert retrain_dag.get_task("report_retrain").upstream_task_ids == {
        "train_model",
        "decide_promotion",
    }
    assert set(retrain_dag.task_ids) == set(CHAIN)
    # airflow.spark_via: connect (params.yaml): the job runs on the Spark Connect server.
    build_trainset = retrain_dag.get_task("build_trainset")
    assert type(build_trainset).__name__ == "PythonOperator"
    assert build_trainset.op_kwargs == {"job": "trainset.py", "conn_id": "spark_connect_default"}


@pytest.mark.parametrize(
    ("force", "run_type", "assets", "trigger"),
    [
        (True, "asset_triggered", ["retrain.requested"], "forced"),
        (False, "asset_triggered", ["retrain.requested"], "asset:retrain.requested"),
        (False, "scheduled", [], "schedule"),
        (False, "manual", [], "manual"),
        (False, "backfill", [], "manual"),
    ],
)
def test_the_trigger_says_what_started_the_run(force, run_type, assets, trigger):
    events = {Asset(name=a, uri="regrow://policy/retrain-requested"): [] for a in assets}
    dag_run = SimpleNamespace(run_type=run_type)
    assert retrain_trigger(force, dag_run, events) == trigger


def test_a_training_set_too_small_fails_train_model_at_once(
    retrain_dag, make_settings, tmp_path, monkeypatch
):
    """Retrying cannot grow the data: the task fails for good, with the library's message."""
    settings = make_settings(simulator={"events_per_day": 100})
    write_snapshot(settings, Path(settings.resolve(settings.split.output_dir)), (0, 5))
    monkeypatch.setenv("REGROW_PARAMS", str(tmp_path / "params.yaml"))
    train_model = retrain_dag.get_task("train_model").python_callable
    with pytest.raises(AirflowFailException, match=r"200 rows, fewer than train.min_rows=500"):
        train_model(
            params={"force_retrain": False, "mode": "default"},
            run_id="manual__x",
            dag_run=SimpleNamespace(run_type="manual", dag_id="regrow_retrain"),
            triggering_asset_events={},
        )


def test_the_policys_request_names_the_mode_and_why():
    """The triggering events as Airflow hands them to a task (Asset -> its events); the
    events are plain objects with the one attribute read, ``extra`` (no Airflow run here)."""
    from regrow.orchestration.tasks import requested_retrain

    requested = Asset(name="retrain.requested", uri="regrow://policy/retrain-requested")
    older = SimpleNamespace(extra={"mode": "warm_start", "day": "2026-01-05"})
    newer = SimpleNamespace(
        extra={"mode": "stateless", "day": "2026-01-06", "trigger": "performance"}
    )
    assert requested_retrain({requested: [older, newer]}) == newer.extra
    other = Asset(name="silver.features", uri="regrow://silver/features")
    assert requested_retrain({other: [older]}) is None
    assert requested_retrain(None) is None
