"""Backfills the Airflow way: ``airflow backfill create`` on a real local Airflow (api-server,
scheduler, dag-processor, triggerer; LocalExecutor on SQLite, started by
:mod:`regrow.orchestration.airflow_services`) whose scheduler runs the days
(:mod:`regrow.orchestration.airflow_backfills`), and regrow_score following through the
Asset ``silver.features``, and regrow_monitor after it through ``gold.predictions``.

A small simulated project in a temp dir: landing files for the days, a champion trained
with the library beforehand (regrow_score fails a day without one), the local Spark
Connect server that ``start`` brings up for ``airflow.spark_via: connect``. regrow_ingest,
regrow_score and regrow_monitor are unpaused; regrow_retrain stays paused (two days make no
training set: a retrain it ran would fail on too few matured labels, so its own test covers
it). Then the same backfill again with ``--reprocess-behavior completed`` leaves every
table's content as it was: the days are ingested and scored again, and regrow_monitor,
triggered again, finds no day it has not monitored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from regrow.catalog import (
    DECISION_DATE,
    DECISIONS,
    EVENT_DATE,
    EVENTS,
    FEATURES,
    INGESTED_AT,
    LABELS,
    MODEL_VERSIONS,
    MONITOR_DATE,
    MONITORING,
    PREDICTIONS,
    QUARANTINE,
    RELEASED_AT,
    RUN_ID,
    SILVER_LABELS,
    SOURCE_VERSION,
    SOURCE_VERSIONS,
)
from regrow.data.simulate import write_landing
from regrow.model.retrain import train_and_gate
from regrow.orchestration import airflow_backfills, airflow_services
from regrow.orchestration.airflow_local import _airflow_cli
from regrow.settings import load_settings
from tests.conftest import _free_port, context_of, lakehouse_of, write_params
from tests.snapshots import write_snapshot

logger = logging.getLogger(__name__)
# Minutes of Airflow services and Spark jobs: started first (see pytest_collection_modifyitems).
# stack: `make test-stack` runs this file (`make test` leaves it out: see pyproject.toml).
pytestmark = [pytest.mark.slow, pytest.mark.stack]

START = dt.date(2026, 1, 1)
# Two days: the fewest that make a range the scheduler runs one after the other
# (max_active_runs 1), whose second day's features read the first day's bronze, and whose
# Asset events regrow_score collects; each day is six Spark jobs, so every more day costs
# a minute or more for no new behaviour.
DAYS = [START, START + dt.timedelta(days=1)]
PORTS = range(8180, 8190)  # this test's api-server ports
INGEST, SCORE, MONITOR = "regrow_ingest", "regrow_score", "regrow_monitor"
# Columns a reprocessed day may change by design: when a row was written, the Delta
# versions it was read from (they grow with every write), and the scoring run's id (the
# Asset-triggered scoring run is a new run; the backfill's ingest runs keep their ids).
VOLATILE = {INGESTED_AT, RELEASED_AT, SOURCE_VERSION, SOURCE_VERSIONS}
TABLES = (EVENTS, QUARANTINE, LABELS, FEATURES, SILVER_LABELS, PREDICTIONS, MODEL_VERSIONS,
          MONITORING, DECISIONS)  # fmt: skip
TIMEOUT = 1800  # a safety net for a stuck scheduler, not an assertion on speed


def _api_port() -> int:
    for port in PORTS:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> SimpleNamespace:
    """Params, landing files for DAYS, a champion (v1) in the project's MLflow store."""
    tmp = tmp_path_factory.mktemp("airflow_scheduler")
    shutil.copyfile(mlflow_template, tmp / "mlflow.db")  # mlflow.tracking_uri's default
    params = write_params(
        tmp,
        simulator={"start_date": START, "days": len(DAYS), "events_per_day": 150,
                   "n_entities": 200, "scenario": "stable"},
        # No catch-up of the schedule: the days run are the backfill's (the one scheduled
        # run, for the latest day, finds no landing file and fails at its sensor at once).
        airflow={"start_date": START, "catchup": False, "retries": 1, "retry_delay_seconds": 1,
                 "sensor_poke_interval_seconds": 1, "sensor_timeout_seconds": 3},
        spark={"connect_port": _free_port(), "shuffle_partitions": 2},
        train={"nthread": 1},
    )  # fmt: skip
    settings = load_settings(params)
    landing_root = settings.resolve(settings.landing.path)
    write_landing(settings.dataset, settings.simulator, settings.landing, landing_root, len(DAYS))
    snapshot = write_snapshot(settings, tmp / "trainset-1", (0, 13))
    outcome = train_and_gate(context_of(settings), snapshot, "test", None).outcome
    assert outcome.promoted, outcome
    return SimpleNamespace(tmp=tmp, params=params, settings=settings)


@pytest.fixture(scope="module")
def services(project: SimpleNamespace):
    home = project.tmp / "airflow_home"
    # Paused at creation, then the three DAGs under test unpaused (a backfill runs only on an
    # unpaused DAG; an Asset triggers only an unpaused one).
    extra = {"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}
    started = time.monotonic()
    try:
        running = airflow_services.start(home, _api_port(), project.params, extra)
        logger.info("services up in %.1f s at %s", time.monotonic() - started, running.url)
        env = airflow_services.environment(home, extra)
        subprocess.run(
            [_airflow_cli(), "dags", "unpause", "--treat-dag-id-as-regex", "-y",
             f"^({INGEST}|{SCORE}|{MONITOR})$"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        yield SimpleNamespace(services=running, env=env, home=home)
    finally:
        stopped = airflow_services.stop(home)
        logger.info("stopped %s", stopped)
    assert airflow_services.status(home) is None


def backfill(services: SimpleNamespace, reprocess: str) -> airflow_backfills.BackfillRun:
    """``airflow backfill create`` for DAYS, then wait for its runs, and for regrow_score and
    then regrow_monitor to have consumed every Asset event published before them."""
    started = time.monotonic()
    backfill_ids = airflow_backfills.create_backfill(
        services.env, INGEST, DAYS[0], DAYS[-1], reprocess=reprocess
    )
    result = airflow_backfills.wait_for_backfill(services.env, backfill_ids, timeout=TIMEOUT)
    for follower in (SCORE, MONITOR):
        _wait_for_asset_runs(services.env, follower)
    logger.info("backfill %s (%s): %.1f s", backfill_ids, reprocess, time.monotonic() - started)
    return result


def _wait_for_asset_runs(env, dag_id: str) -> None:
    """Until ``dag_id`` has no Asset event queued and no run queued or running."""
    deadline = time.monotonic() + TIMEOUT
    while (
        _sql(env, "SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id = ?", dag_id)[0][0]
        or _sql(
            env,
            "SELECT count(*) FROM dag_run WHERE dag_id = ? AND state IN ('queued', 'running')",
            dag_id,
        )[0][0]
    ):
        assert time.monotonic() < deadline, f"{dag_id} did not finish"
        time.sleep(2)


def _sql(env, query: str, *args) -> list[tuple]:
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(query, args).fetchall()


def _runs(env, dag_id: str) -> list[tuple[str, str, str]]:
    return _sql(
        env, "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = ? ORDER BY id", dag_id
    )


def contents(settings) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, without the VOLATILE columns."""
    lakehouse = lakehouse_of(settings)
    tables = {}
    for table in TABLES:
        rows = lakehouse.to_arrow(table).to_pylist() if lakehouse.exists(table) else []
        drop = VOLATILE | ({RUN_ID} if table == PREDICTIONS else set())
        tables[table] = sorted(
            repr(sorted((k, v) for k, v in row.items() if k not in drop)) for row in rows
        )
    return tables


def backfilled(project, services, reprocess: str) -> SimpleNamespace:
    """A backfill of DAYS, then what the tests compare: the tables, their versions, and
    the runs of the DAGs that followed it."""
    result = backfill(services, reprocess)
    return SimpleNamespace(
        result=result,
        tables=contents(project.settings),
        versions=versions(project.settings),
        score_runs=_runs(services.env, SCORE),
        monitor_runs=_runs(services.env, MONITOR),
    )


@pytest.fixture(scope="module")
def first(project, services) -> SimpleNamespace:
    return backfilled(project, services, "none")


@pytest.fixture(scope="module")
def second(project, services, first) -> SimpleNamespace:
    return backfilled(project, services, "completed")


def versions(settings) -> dict[str, int]:
    lakehouse = lakehouse_of(settings)
    return {t: lakehouse.table_version(t) for t in (EVENTS, FEATURES, PREDICTIONS)}


def _days(settings, table: str) -> list[dt.date]:
    rows = lakehouse_of(settings).sql(f"SELECT DISTINCT {EVENT_DATE} d FROM {table} ORDER BY 1")
    return [r["d"] for r in rows.to_pylist()]


def test_the_services_answer_with_the_admin_login(services):
    running = services.services
    assert set(running.pids) == set(airflow_services.COMPONENTS)
    assert running.username == "admin" and running.password
    assert running.password_file.read_text().strip() == f'{{"admin": "{running.password}"}}'
    assert airflow_services.status(services.home) == running


def test_the_scheduler_runs_exactly_the_backfilled_days(project, services, first):
    result = first.result
    assert result.completed
    assert result.runs == dict.fromkeys(DAYS, "success"), result
    run_types = _sql(
        services.env, "SELECT DISTINCT run_type FROM dag_run WHERE backfill_id >= ?",
        result.backfill_ids[0],
    )  # fmt: skip
    assert run_types == [("backfill",)]
    for table in (EVENTS, FEATURES, PREDICTIONS):
        assert _days(project.settings, table) == DAYS, table


def test_regrow_score_follows_through_the_asset(project, services, first):
    runs = first.score_runs
    assert runs, "regrow_score never ran"
    assert {(run_type, state) for _, run_type, state in runs} == {("asset_triggered", "success")}
    # Each backfilled day was scored once by the champion: one row per silver event.
    lakehouse = lakehouse_of(project.settings)
    for day in DAYS:
        features = lakehouse.to_arrow(FEATURES, partitions={EVENT_DATE: day}).num_rows
        predictions = lakehouse.to_arrow(PREDICTIONS, partitions={EVENT_DATE: day}).num_rows
        assert features > 0 and predictions == features, day


def test_regrow_monitor_follows_scoring_through_the_asset(project, first):
    runs = first.monitor_runs
    assert runs, "regrow_monitor never ran"
    assert {(run_type, state) for _, run_type, state in runs} == {("asset_triggered", "success")}
    # Every backfilled day was monitored, and the policy decided once on each of them.
    lakehouse = lakehouse_of(project.settings)
    monitored = lakehouse.sql(f"SELECT DISTINCT {MONITOR_DATE} d FROM {MONITORING} ORDER BY 1")
    assert [r["d"] for r in monitored.to_pylist()] == DAYS
    decided = lakehouse.sql(
        f"SELECT {DECISION_DATE} d FROM {DECISIONS} WHERE actor = 'airflow:{MONITOR}' ORDER BY 1"
    )
    assert [r["d"] for r in decided.to_pylist()] == DAYS


def test_the_same_backfill_reprocessed_changes_no_table(project, services, first, second):
    assert min(second.result.backfill_ids) > max(first.result.backfill_ids)
    assert second.result.runs == dict.fromkeys(DAYS, "success"), second.result
    # The days really ran again (each wrote new table versions), and regrow_score after them.
    for table, version in first.versions.items():
        assert second.versions[table] > version, table
    assert len(second.score_runs) > len(first.score_runs)
    assert {(t, s) for _, t, s in second.score_runs} == {("asset_triggered", "success")}
    assert len(second.monitor_runs) > len(first.monitor_runs)
    assert {(t, s) for _, t, s in second.monitor_runs} == {("asset_triggered", "success")}
    assert all(first.tables[t] for t in (EVENTS, FEATURES, PREDICTIONS, MONITORING, DECISIONS))
    for table in TABLES:
        assert second.tables[table] == first.tables[table], table
