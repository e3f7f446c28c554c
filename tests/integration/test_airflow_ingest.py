"""regrow_ingest under real Airflow: ``airflow dags test`` in a temp AIRFLOW_HOME (SQLite).

Two days are backfilled (planned by ``airflow backfill create --dry-run``, run one
``dags test`` per day: see :func:`regrow.orchestration.airflow_local.backfill`): a simulated day (sensor,
five Spark jobs on a Spark Connect server), checked in the Delta tables, then a day whose events file has a
header and no row, blocked by the bronze gate. A day whose landing file never arrives
makes the sensor poke, time out and fail the run with the missing path in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.csv as pv
import pytest
import yaml

from regrow.catalog import (
    BRONZE_TABLES,
    EVENT_DATE,
    EVENTS,
    FEATURES,
    LABELS,
    QUARANTINE,
    SILVER_LABELS,
    SILVER_TABLES,
    VALIDATION,
)
from regrow.data import landing
from regrow.data.simulate import write_landing
from regrow.orchestration.airflow_local import (
    airflow_env,
    backfill,
    dags_test,
    ensure_db,
    run_state,
    task_states,
)
from regrow.settings import load_settings
from regrow.storage.lakehouse import Lakehouse
from tests.conftest import connect_env

logger = logging.getLogger(__name__)
# Minutes of `airflow dags test` subprocesses: started first (see pytest_collection_modifyitems).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "regrow_ingest"
START = dt.date(2026, 1, 1)
GOOD_DAY = START
BLOCKED_DAY = START + dt.timedelta(days=1)  # an events file with a header and no row
DAYS = [GOOD_DAY, BLOCKED_DAY]  # the backfill
MISSING_DAY = BLOCKED_DAY + dt.timedelta(days=1)  # never landed
SENSOR_TIMEOUT_SECONDS = 4
TASKS = (
    "wait_for_events", "ingest_events", "validate_bronze",
    "build_features", "build_labels", "validate_silver",
)  # fmt: skip
# The daily chain, chosen: the catch-up range's tasks are skipped.
BRANCH = {"choose_path": "success", "backfill_range": "skipped", "publish_range": "skipped"}
TASKS_OK = {**BRANCH, **dict.fromkeys(TASKS, "success")}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, spark_connect) -> SimpleNamespace:
    """Params pointing at a temp landing zone and lakehouse, simulated days, a migrated DB."""
    tmp = tmp_path_factory.mktemp("airflow_ingest")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["landing"]["path"] = str(tmp / "landing")
    raw["lakehouse"]["root"] = str(tmp / "lakehouse")
    raw["reports_dir"] = str(tmp / "reports")
    raw["validation"]["expectations_dir"] = str(REPO / "expectations")
    raw["simulator"] |= {
        "start_date": START,
        "days": 1,
        "events_per_day": 150,
        "n_entities": 200,
    }
    raw["airflow"] |= {
        "start_date": START,
        "sensor_poke_interval_seconds": 1,
        "sensor_timeout_seconds": SENSOR_TIMEOUT_SECONDS,
        "retry_delay_seconds": 1,  # a failing Spark job retries in seconds, not minutes
        "retries": 0,  # the failure paths below fail for good; retrying only costs time
    }
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(params)
    landing_root = settings.resolve(settings.landing.path)
    write_landing(settings.dataset, settings.simulator, settings.landing, landing_root, 1)
    folder = Path(landing.day_dir(landing_root, "events", BLOCKED_DAY))
    folder.mkdir(parents=True)
    header = ",".join(settings.dataset.event_columns())
    (folder / "part-00000.csv").write_text(header + "\n", encoding="utf-8")

    # The Spark jobs run on the session's Spark Connect server (airflow.spark_via: connect).
    env = airflow_env(tmp / "airflow_home", params=params, extra=connect_env(spark_connect))
    ensure_db(env)
    return SimpleNamespace(
        settings=settings,
        env=env,
        landing_root=landing_root,
        lakehouse=Lakehouse.from_settings(settings),
    )


@pytest.fixture(scope="module")
def backfilled(workspace: SimpleNamespace) -> dict:
    started = time.monotonic()
    results = backfill(DAG_ID, DAYS[0], DAYS[-1], workspace.env)
    logger.info("backfill of %d days: %.1f s", len(results), time.monotonic() - started)
    return results


def _landed_rows(ws: SimpleNamespace, day: dt.date) -> int:
    files = landing.find_files(ws.landing_root, ws.settings.landing, "events", day)
    return sum(pv.read_csv(f).num_rows for f in files)


def _rows(ws: SimpleNamespace, table: str, **partition) -> int:
    if not ws.lakehouse.exists(table):
        return 0
    return ws.lakehouse.to_arrow(table, partitions=partition).num_rows


def test_backfill_plans_every_day_and_stops_at_the_blocked_one(backfilled: dict):
    assert list(backfilled) == DAYS
    good, blocked = backfilled[GOOD_DAY], backfilled[BLOCKED_DAY]
    assert good.returncode == 0, f"dags test {GOOD_DAY} failed:\n{good.stdout[-5000:]}"
    assert blocked.returncode != 0, blocked.stdout[-5000:]


def test_the_good_day_succeeds_task_by_task(workspace, backfilled):
    assert task_states(DAG_ID, GOOD_DAY, workspace.env) == TASKS_OK
    assert run_state(DAG_ID, GOOD_DAY, workspace.env) == "success"
    assert run_state(DAG_ID, GOOD_DAY + dt.timedelta(days=30), workspace.env) is None


def test_bronze_holds_every_landed_event_once(workspace, backfilled):
    landed = _landed_rows(workspace, GOOD_DAY)
    events = _rows(workspace, EVENTS, **{EVENT_DATE: GOOD_DAY})
    quarantined = _rows(workspace, QUARANTINE, ingest_date=GOOD_DAY, source_kind="events")
    assert landed > 0
    assert events > 0.9 * landed, f"{events} of {landed} landed events in bronze"
    # Nothing dropped silently: every landed row is in bronze.events or in quarantine.
    assert events + quarantined == landed
    assert workspace.lakehouse.to_arrow(EVENTS).num_rows == events, "rows of other days"


def test_silver_has_one_feature_row_per_bronze_event(workspace, backfilled):
    events = _rows(workspace, EVENTS, **{EVENT_DATE: GOOD_DAY})
    assert _rows(workspace, FEATURES, **{EVENT_DATE: GOOD_DAY}) == events
    # Entities with several events that day have earlier ones in their windows.
    seen = workspace.lakehouse.sql(f"SELECT max(prior_events_24h) n FROM {FEATURES}").to_pylist()
    assert seen[0]["n"] > 0
    # Every label that landed is joined to its event in silver.labels.
    assert _rows(workspace, SILVER_LABELS) == _rows(workspace, LABELS)


def test_sensor_fails_when_the_landing_file_is_missing(workspace):
    expected = landing.day_pattern(
        workspace.landing_root, workspace.settings.landing, "events", MISSING_DAY
    )
    started = time.monotonic()
    result = dags_test(DAG_ID, MISSING_DAY, workspace.env)
    elapsed = time.monotonic() - started
    log = result.stdout

    assert result.returncode != 0, log[-5000:]
    assert task_states(DAG_ID, MISSING_DAY, workspace.env) == {
        **BRANCH,
        "wait_for_events": "failed",
        **dict.fromkeys(TASKS[1:], "upstream_failed"),
    }
    assert run_state(DAG_ID, MISSING_DAY, workspace.env) == "failed"
    # It waited (poked more than once, rescheduling in between) for the day's file ...
    assert log.count(f"waiting for landing files matching {expected}") >= 2, log[-5000:]
    assert "UP_FOR_RESCHEDULE" in log
    # ... then timed out, and the alert names the task and the day.
    assert "Sensor has timed out" in log
    assert f"ALERT {DAG_ID}.wait_for_events failed for {MISSING_DAY}" in log
    assert elapsed > SENSOR_TIMEOUT_SECONDS
    assert _rows(workspace, EVENTS, **{EVENT_DATE: MISSING_DAY}) == 0


def test_the_good_day_is_validated_and_recorded(workspace, backfilled):
    results = workspace.lakehouse.sql(
        "SELECT CAST(day AS VARCHAR) d, \"table\" t, bool_and(success OR severity = 'warning') ok "
        "FROM gold.validation GROUP BY 1, 2"
    ).to_pylist()
    recorded = {(r["d"], r["t"]): r["ok"] for r in results}
    for table in (*BRONZE_TABLES, *SILVER_TABLES):
        assert recorded[(str(GOOD_DAY), table)] is True, table
    docs = Path(workspace.settings.resolve(workspace.settings.reports_dir), "data_docs")
    assert (docs / "index.html").is_file()


def test_a_day_failing_a_critical_expectation_is_blocked(workspace, backfilled):
    log = backfilled[BLOCKED_DAY].stdout

    assert task_states(DAG_ID, BLOCKED_DAY, workspace.env) == {
        **BRANCH,
        "wait_for_events": "success",
        "ingest_events": "success",
        "validate_bronze": "failed",
        # Nothing is built on a blocked day.
        **dict.fromkeys(TASKS[3:], "upstream_failed"),
    }
    assert run_state(DAG_ID, BLOCKED_DAY, workspace.env) == "failed"
    assert f"{BLOCKED_DAY} is blocked" in log
    assert "expect_table_row_count_to_be_between" in log
    assert "Data Docs: " in log
    failed = workspace.lakehouse.sql(
        f"SELECT expectation_type FROM {VALIDATION} WHERE day = DATE '{BLOCKED_DAY}' "
        "AND NOT success AND severity = 'critical'"
    ).to_pylist()
    assert {"expect_table_row_count_to_be_between"} <= {r["expectation_type"] for r in failed}
    assert _rows(workspace, FEATURES, **{EVENT_DATE: BLOCKED_DAY}) == 0


def test_a_catch_up_range_is_one_run_of_one_spark_application(workspace, backfilled):
    """A manual run naming a range runs jobs/backfill.py instead of the daily chain and
    publishes the range's days to regrow_score; a reversed range fails at once."""
    run_day = GOOD_DAY + dt.timedelta(days=10)  # the run's own day never landed: not read
    conf = {"catch_up_from": str(GOOD_DAY), "catch_up_to": str(GOOD_DAY)}
    result = dags_test(DAG_ID, run_day, workspace.env, conf=conf)
    assert result.returncode == 0, result.stdout[-5000:]
    assert task_states(DAG_ID, run_day, workspace.env) == {
        "choose_path": "success", "backfill_range": "success", "publish_range": "success",
        **dict.fromkeys(TASKS, "skipped"),
    }  # fmt: skip
    db = workspace.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        extras = conn.execute(
            "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.source_task_id = 'publish_range'"
        ).fetchall()
    assert {name: json.loads(extra) for name, extra in extras} == {
        "bronze.events": {"days": [str(GOOD_DAY)]},
        "silver.features": {"days": [str(GOOD_DAY)]},
    }
    assert _rows(workspace, FEATURES, **{EVENT_DATE: GOOD_DAY}) == _rows(
        workspace, EVENTS, **{EVENT_DATE: GOOD_DAY}
    )
    reversed_day = run_day + dt.timedelta(days=1)
    conf = {"catch_up_from": str(GOOD_DAY), "catch_up_to": str(GOOD_DAY - dt.timedelta(days=1))}
    result = dags_test(DAG_ID, reversed_day, workspace.env, conf=conf)
    assert result.returncode != 0
    assert "catch_up_to 2025-12-31 is before catch_up_from 2026-01-01" in result.stdout
    assert task_states(DAG_ID, reversed_day, workspace.env)["choose_path"] == "failed"
