"""regrow_retrain under real Airflow: ``airflow dags test`` in a temp AIRFLOW_HOME (SQLite).

Silver is built in-process (simulated days straight into bronze, then the silver library
calls), not by the ingest DAG: that one has its own test. The first run trains, registers
and promotes version 1 (the first model must beat every baseline); a second run on the
same data finds the champion trained on this very snapshot and skips the rest. Then
regrow_score scores the newest day with that champion. The first run and regrow_score run
their Spark jobs through spark-submit (a JVM each, as on a cluster); the second run, on the
session's Spark Connect server. The Spark job alone names a cut-off the data cannot serve.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import shutil
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from regrow.catalog import CHAMPION, DECISIONS, EVENT_DATE, FEATURES, RUN_ID
from regrow.data.trainset import MANIFEST, TrainsetError
from regrow.model.registry import Registry
from regrow.model.scoring import read_predictions
from regrow.orchestration.airflow_local import (
    airflow_env,
    dags_test,
    ensure_db,
    run_state,
    task_states,
)
from regrow.settings import Settings, load_settings
from regrow.storage.session import interpreted
from tests.bronze_rows import build_silver_days, land_simulated
from tests.conftest import REPO, connect_env, context_of, lakehouse_of, write_params
from tests.shared import built_once

logger = logging.getLogger(__name__)
# Minutes of `airflow dags test` subprocesses: started first (see pytest_collection_modifyitems).
pytestmark = pytest.mark.slow

DAG_ID = "regrow_retrain"
START = dt.date(2026, 1, 1)
DAYS = 20
CUTOFF = START + dt.timedelta(days=DAYS)  # the day after the newest day: the default
FIRST_RUN, SECOND_RUN = CUTOFF, CUTOFF + dt.timedelta(days=7)  # logical dates
NEWEST = CUTOFF - dt.timedelta(days=1)  # the newest silver day
TASKS = (
    "build_trainset", "check_retrain_needed", "snapshot_trainset", "train_model",
    "evaluate_challenger", "decide_promotion", "report_retrain",
)  # fmt: skip
# 20 days of 150 events with labels that mature in 3 days: 17 matured days, the newest 3
# the backtest (~450 rows, ~14 frauds), 3 validation, 11 train (~1650 rows, ~50 frauds).
SECTIONS = {
    "dataset": {"label_delay_days": 3},
    "simulator": {
        "start_date": START,
        "days": DAYS,
        "events_per_day": 150,
        "n_entities": 300,
        "mean_label_delay_days": 1.0,
    },
    "spark": {"shuffle_partitions": 2},
    # One XGBoost thread: on a busy 2-core machine "all cores" made training 400x slower
    # (21 s instead of 0.05 s for these 50 trees), and a fixed count gives identical models.
    "train": {"nthread": 1},
    # Below the default 0.5: this small model scores the newest day's events up to ~0.44,
    # and the scoring test wants decisions on both sides of the threshold.
    "score": {"threshold": 0.05},
}


def land_bronze(spark, settings: Settings) -> None:
    """The simulated days as ingest leaves them: bronze.events, and in bronze.labels the
    frauds whose chargeback arrived before the data ends, within the label window."""
    land_simulated(spark, lakehouse_of(settings), settings, DAYS, end=CUTOFF)


def build_silver(spark, settings: Settings) -> None:
    lakehouse = lakehouse_of(settings)
    # Small days, interpreted: as regrow's own day loops run them (spark.interpreted_below_mib).
    ctx = context_of(settings, spark, "test-silver", lakehouse)
    with interpreted(spark, settings.spark):
        build_silver_days(ctx, [START + dt.timedelta(days=i) for i in range(DAYS)])


def copy_silver(spark, settings: Settings) -> None:
    """The simulated days in bronze and silver of ``settings``' lakehouse. They depend on
    :data:`SECTIONS` alone, so they are built once per test session and copied (this file
    and the UI's browser test): Delta tables hold paths relative to their own folder."""

    def build(directory: Path) -> None:
        built = load_settings(write_params(directory, **SECTIONS))
        land_bronze(spark, built)
        build_silver(spark, built)

    shared = built_once("airflow-retrain-silver", build)
    shutil.copytree(shared / "lakehouse", settings.resolve(settings.lakehouse.root))


@pytest.fixture(scope="module")
def workspace(spark, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A project in a temp dir (params, lakehouse, MLflow SQLite) with 20 days of silver,
    and a migrated Airflow DB."""
    tmp = tmp_path_factory.mktemp("airflow_retrain")
    params = write_params(
        tmp,
        **SECTIONS,
        # Retries in seconds; build_trainset through spark-submit (a JVM of its own, as on
        # a cluster): the other DAG tests run their jobs on a Spark Connect server.
        airflow={"start_date": START, "retry_delay_seconds": 1, "spark_via": "submit"},
    )
    settings = load_settings(params)
    started = time.monotonic()
    copy_silver(spark, settings)
    logger.info("silver of %d days in %.1f s", DAYS, time.monotonic() - started)
    env = airflow_env(tmp / "airflow_home", params=params)
    ensure_db(env)
    return SimpleNamespace(
        settings=settings, settings_file=params, env=env, lakehouse=lakehouse_of(settings)
    )


@pytest.fixture(scope="module")
def first_run(workspace):
    started = time.monotonic()
    result = dags_test(DAG_ID, FIRST_RUN, workspace.env, conf={"force_retrain": False})
    logger.info("first retrain run: %.1f s", time.monotonic() - started)
    return result


@pytest.fixture(scope="module")
def second_run(workspace, first_run, spark_connect):
    started = time.monotonic()
    # The cut-off the first run took by default, now given explicitly: the same snapshot.
    conf = {"force_retrain": False, "cutoff_date": str(CUTOFF)}
    # Its Spark job on the session's Connect server (airflow.spark_via: connect, the same
    # project otherwise): the first run and regrow_score test spark-submit, and a third JVM
    # cost this file about 30 s on 2 cores for nothing the skip depends on.
    params = workspace.settings_file.with_name("params-connect.yaml")
    raw = yaml.safe_load(workspace.settings_file.read_text())
    raw["airflow"]["spark_via"] = "connect"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**workspace.env, "REGROW_PARAMS": str(params), **connect_env(spark_connect)}
    result = dags_test(DAG_ID, SECOND_RUN, env, conf=conf)
    logger.info("second retrain run: %.1f s", time.monotonic() - started)
    return result


def sql_one(ws: SimpleNamespace, query: str, *args):
    """The first row of a query on the Airflow metadata DB."""
    db = ws.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        return conn.execute(query, args).fetchone()


def xcom(ws: SimpleNamespace, day: dt.date, task_id: str):
    """The return value a task of the latest run for ``day`` pushed to XCom."""
    row = sql_one(
        ws,
        "SELECT x.value FROM xcom x JOIN dag_run r ON x.dag_run_id = r.id "
        "WHERE r.dag_id = ? AND substr(r.logical_date, 1, 10) = ? AND x.task_id = ? "
        "AND x.key = 'return_value' ORDER BY r.id DESC LIMIT 1",
        DAG_ID, day.isoformat(), task_id,
    )  # fmt: skip
    assert row is not None, f"{task_id} pushed no XCom for {day}"
    return json.loads(row[0])


def test_first_run_trains_registers_and_promotes(workspace, first_run):
    log = first_run.stdout
    assert first_run.returncode == 0, log[-8000:]
    assert run_state(DAG_ID, FIRST_RUN, workspace.env) == "success"
    assert task_states(DAG_ID, FIRST_RUN, workspace.env) == dict.fromkeys(TASKS, "success")
    assert "retrain needed: no champion yet" in log

    registry = Registry(workspace.settings)
    versions = registry.versions()
    assert [v.version for v in versions] == ["1"]
    champion = registry.alias(CHAMPION)
    assert champion is not None and champion.version == "1"

    snapshot = Path(workspace.settings.resolve(workspace.settings.split.output_dir))
    manifest = json.loads((snapshot / MANIFEST).read_text())
    tags = champion.tags
    assert {"trigger", "trainset_sha256", "dvc_md5", "git_commit"} <= set(tags), tags
    assert tags["trigger"] == "manual"  # `dags test` makes a manual run
    assert tags["trainset_sha256"] == manifest["content_hash"]
    assert manifest["cutoff_date"] == str(CUTOFF)  # no cutoff_date param: the default
    # The hash the snapshot task recorded is the one on the model version (no DVC repo
    # here: nothing committed, the hash all the same).
    snapshotted = xcom(workspace, FIRST_RUN, "snapshot_trainset")
    assert snapshotted == {"dvc_md5": tags["dvc_md5"], "committed": False, "pushed": False}
    assert tags["dvc_md5"].endswith(".dir")
    assert tags["gate.outcome"] == "promoted"


def test_first_run_records_the_decision_and_the_report(workspace, first_run):
    assert first_run.returncode == 0, first_run.stdout[-8000:]
    decisions = workspace.lakehouse.sql(f"SELECT * FROM {DECISIONS}").to_pylist()
    assert len(decisions) == 1
    decision = decisions[0]
    assert decision["action"] == "promote"
    assert decision["actor"] == f"airflow:{DAG_ID}"
    versions = (decision["model_version"], decision["champion_before"], decision["champion_after"])
    assert versions == ("1", None, "1")
    assert decision["trigger"] == "manual"
    assert decision["reason"].startswith("promoted: pr_auc")

    # The evaluation went through XCom as JSON and is the one the gate judged.
    report = xcom(workspace, FIRST_RUN, "evaluate_challenger")
    assert (report["challenger"], report["champion"]) == ("1", None)
    assert set(report["baselines"]) == {"random", "majority", "heuristic"}
    outcome = xcom(workspace, FIRST_RUN, "decide_promotion")
    assert outcome["promoted"] is True and outcome["decision_id"] == decision["decision_id"]

    path = Path(xcom(workspace, FIRST_RUN, "report_retrain"))
    assert path == Path(workspace.settings.resolve(workspace.settings.reports_dir)) / (
        "retrain/retrain-v1.md"
    )
    assert path.read_text().startswith(f"# {report['registered_model']} v1: promoted")
    assert f"retrain report: {path}" in first_run.stdout


def test_a_run_on_the_champions_own_data_is_skipped(workspace, first_run, second_run):
    log = second_run.stdout
    assert second_run.returncode == 0, log[-8000:]
    assert run_state(DAG_ID, SECOND_RUN, workspace.env) == "success"
    assert task_states(DAG_ID, SECOND_RUN, workspace.env) == {
        "build_trainset": "success",
        "check_retrain_needed": "success",
        **dict.fromkeys(TASKS[2:], "skipped"),
    }
    assert f"--cutoff={CUTOFF}" in log  # the param reached the Spark job
    assert "retrain skipped: champion v1 was trained on this very training set" in log
    assert [v.version for v in Registry(workspace.settings).versions()] == ["1"]
    assert workspace.lakehouse.sql(f"SELECT count(*) n FROM {DECISIONS}").to_pylist()[0]["n"] == 1


def test_the_trainset_job_names_a_cutoff_the_data_cannot_serve(workspace):
    spec = importlib.util.spec_from_file_location("trainset_job", REPO / "jobs" / "trainset.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    params = str(workspace.env["REGROW_PARAMS"])
    late = CUTOFF + dt.timedelta(days=10)
    with pytest.raises(
        TrainsetError, match=rf"cut-off {late} is after the newest day .*2026-01-20"
    ):
        job.main(["--params", params, f"--cutoff={late}"])
    assert job.optional_day("") is None  # the DAG's unset cutoff_date


def test_regrow_score_scores_the_newest_day_with_the_new_champion(workspace, first_run):
    """One run, one day: each of the day's events gets one champion row by v1, its decision
    the score against the threshold, its run id the Airflow run's."""
    assert first_run.returncode == 0, first_run.stdout[-8000:]
    result = dags_test("regrow_score", NEWEST, workspace.env, conf={"dates": [str(NEWEST)]})
    assert result.returncode == 0, result.stdout[-8000:]
    assert task_states("regrow_score", NEWEST, workspace.env) == {
        "select_days": "success",
        "score_batch": "success",
    }
    run_id, map_name = sql_one(
        workspace,
        "SELECT r.run_id, t.rendered_map_index FROM dag_run r JOIN task_instance t "
        "ON t.dag_id = r.dag_id AND t.run_id = r.run_id WHERE r.dag_id = 'regrow_score' "
        "AND t.task_id = 'score_batch' AND t.map_index = 0 ORDER BY r.id DESC LIMIT 1",
    )
    assert map_name == str(NEWEST)  # the mapped task is named by its day

    dataset = workspace.settings.dataset
    events = workspace.lakehouse.to_arrow(FEATURES, partitions={EVENT_DATE: NEWEST})
    rows = read_predictions(workspace.lakehouse, NEWEST, alias=None).to_pylist()
    assert rows, f"no gold.predictions rows for {NEWEST}"
    assert {r["model_alias"] for r in rows} == {CHAMPION}  # no other challenger: no shadow
    assert sorted(r[dataset.event_id] for r in rows) == sorted(
        events.column(dataset.event_id).to_pylist()
    )  # one row per event, none missing, none twice
    threshold = workspace.settings.score.threshold
    assert {(r["model_version"], r["threshold"], r[RUN_ID]) for r in rows} == {
        (1, threshold, run_id)
    }
    assert all(r["decision"] == (r["score"] >= threshold) for r in rows)
    assert {r["decision"] for r in rows} == {True, False}, "all on one side: move score.threshold"
    assert {r[EVENT_DATE] for r in rows} == {NEWEST}
