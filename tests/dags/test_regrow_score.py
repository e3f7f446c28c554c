"""regrow_score's wiring: it runs on the ingest DAG's silver.features, maps one Spark task
per day, and picks its days from its params or from the events that triggered it (the run
itself is tested under Airflow in tests/integration/test_airflow_retrain.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.dag_processing.dagbag import DagBag  # after conftest.py set AIRFLOW_HOME
from airflow.sdk import Asset, Param
from airflow.sdk.definitions.asset import AssetAll
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

from regrow.orchestration.dags import ASSETS, asset
from regrow.orchestration.tasks import asset_event_days, days_to_score

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"


SILVER_FEATURES = Asset(
    name="silver.features", uri="regrow://lakehouse/silver/features", group="silver"
)
GOLD_PREDICTIONS = Asset(
    name="gold.predictions", uri="regrow://lakehouse/gold/predictions", group="gold"
)
PARAMS_FILE = str(REPO / "params.yaml")


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    """All regrow DAGs: the score DAG and the ingest DAG that feeds it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGROW_PARAMS", PARAMS_FILE)
        bag = DagBag(dag_folder=DAGS_FOLDER)
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(scope="module")
def score_dag(dagbag):
    return dagbag.dags["regrow_score"]


def ingest_event(day: dt.date | None, *, interval_only: bool = False):
    """A silver.features event as a task sees it: its source run has the ingest day."""
    start = None if day is None else dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    run = None if day is None else SimpleNamespace(
        logical_date=None if interval_only else start, data_interval_start=start
    )  # fmt: skip
    return SimpleNamespace(
        source_dag_run=run,
        source_run_id=None if run is None else f"scheduled__{day}",
        timestamp=dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
    )


def test_runs_on_the_silver_features_the_ingest_dag_publishes(dagbag, score_dag):
    assert score_dag.timetable.asset_condition == AssetAll(SILVER_FEATURES)
    validate_silver = dagbag.dags["regrow_ingest"].get_task("validate_silver")
    assert validate_silver.outlets == [SILVER_FEATURES]
    assert (score_dag.catchup, score_dag.max_active_runs) == (False, 1)


def test_one_mapped_spark_task_per_day_publishes_gold_predictions(score_dag):
    assert set(score_dag.task_ids) == {"select_days", "score_batch"}
    score_batch = score_dag.get_task("score_batch")
    assert type(score_batch).__name__ == "MappedOperator"
    assert score_batch.operator_class.__name__ == "PythonOperator"  # on Spark Connect
    assert score_batch.upstream_task_ids == {"select_days"}
    assert list(score_batch.expand_input.value) == ["op_args"]  # one task per day
    kwargs = score_batch.partial_kwargs
    assert kwargs["op_kwargs"] == {"job": "score.py", "conn_id": "spark_connect_default"}
    assert kwargs["outlets"] == [GOLD_PREDICTIONS]
    assert kwargs["max_active_tis_per_dagrun"] == 1
    assert (kwargs["retries"], kwargs["retry_exponential_backoff"]) == (2, 2.0)


def test_the_dates_param_is_an_optional_list_of_days(score_dag):
    param = score_dag.params.get_param("dates")
    assert param.resolve() is None  # default: the triggering events decide
    schema = param.schema
    assert Param(["2026-01-05", "2026-01-06"], **schema).resolve() == ["2026-01-05", "2026-01-06"]
    with pytest.raises(ParamValidationError):
        Param(["2026-13-01"], **schema).resolve()
    with pytest.raises(ParamValidationError):
        Param("2026-01-05", **schema).resolve()  # a list, not a string


def test_every_dag_takes_its_assets_from_one_table(dagbag):
    """Same names and URIs as before the table existed; producer and consumer agree."""
    assert asset("silver.features") == SILVER_FEATURES
    assert ASSETS["bronze.events"] == ("regrow://lakehouse/bronze/events", "bronze")
    retrain = dagbag.dags["regrow_retrain"].timetable.asset_condition
    assert retrain == Asset(
        name="retrain.requested", uri="regrow://policy/retrain-requested", group="policy"
    )
    with pytest.raises(KeyError, match=r"no regrow Asset named 'gold\.preds'.*gold\.predictions"):
        asset("gold.preds")


def test_the_dates_param_wins_over_the_events():
    events = [dt.date(2026, 1, 9)]
    assert days_to_score(["2026-01-06", "2026-01-05"], events) == ["2026-01-05", "2026-01-06"]


def test_without_dates_the_events_name_the_days():
    assert days_to_score(None, [dt.date(2026, 1, 7)]) == ["2026-01-07"]
    assert days_to_score([], ["2026-01-07"]) == ["2026-01-07"]  # an emptied trigger form


def test_batched_events_score_each_day_once_oldest_first():
    """Events the scheduler batched while a run was going: a day rebuilt twice, out of order."""
    events = [dt.date(2026, 1, 8), dt.date(2026, 1, 6), dt.date(2026, 1, 8), dt.date(2026, 1, 7)]
    assert days_to_score(None, events) == ["2026-01-06", "2026-01-07", "2026-01-08"]


def test_nothing_to_score_says_to_pass_dates():
    with pytest.raises(ValueError, match=r"nothing to score.*Pass dates, e\.g\. --conf"):
        days_to_score(None, [])


def test_a_day_that_is_no_date_is_named():
    with pytest.raises(ValueError, match=r"'2026-01-32' is not a date: expected YYYY-MM-DD"):
        days_to_score(["2026-01-32"], [])


def test_an_events_day_is_its_ingest_runs_logical_date(caplog):
    events = {
        SILVER_FEATURES: [
            ingest_event(dt.date(2026, 1, 6)),
            ingest_event(dt.date(2026, 1, 5), interval_only=True),  # no logical date
            ingest_event(None),  # posted through the REST API: no source run, no day
        ],
        Asset(name="bronze.events", uri="regrow://lakehouse/bronze/events"): [
            ingest_event(dt.date(2026, 1, 1))  # not the Asset asked for
        ],
    }
    assert asset_event_days(events, SILVER_FEATURES) == [dt.date(2026, 1, 6), dt.date(2026, 1, 5)]
    assert "silver.features event of 2026-02-01 00:00:00+00:00 (source run None) names no day" in (
        caplog.text
    )
    assert asset_event_days({}, SILVER_FEATURES) == []
    assert asset_event_days(None, SILVER_FEATURES) == []


def test_select_days_gives_each_day_its_job_arguments(score_dag):
    select_days = score_dag.get_task("select_days").python_callable
    events = {
        SILVER_FEATURES: [ingest_event(dt.date(2026, 1, 6)), ingest_event(dt.date(2026, 1, 5))]
    }
    args = select_days(
        params={"dates": None}, run_id="asset_triggered__x", triggering_asset_events=events
    )
    assert [a[:2] for a in args] == [["--date", "2026-01-05"], ["--date", "2026-01-06"]]
    assert args[0][2:] == ["--params", PARAMS_FILE, "--run-id", "asset_triggered__x"]


def test_select_days_with_nothing_to_score_fails_without_retries(score_dag):
    select_days = score_dag.get_task("select_days").python_callable
    with pytest.raises(AirflowFailException, match="Pass dates"):
        select_days(params={"dates": None}, run_id="manual__x", triggering_asset_events={})


def test_a_catch_up_range_event_names_its_days():
    """regrow_ingest's catch-up run publishes silver.features once for the whole range,
    the days in the event's extra: each is scored, not the run's own day."""
    ranged = ingest_event(dt.date(2026, 3, 1))
    ranged.extra = {"days": ["2026-01-02", "2026-01-01"]}
    daily = ingest_event(dt.date(2026, 1, 3))
    days = asset_event_days({SILVER_FEATURES: [ranged, daily]}, SILVER_FEATURES)
    assert days_to_score(None, days) == ["2026-01-01", "2026-01-02", "2026-01-03"]
