"""S3 through the Airflow Amazon provider, end to end: a real moto server on 127.0.0.1, the
connection as ``AIRFLOW_CONN_AWS_DEFAULT`` (``endpoint_url`` in its extra), and no ``AWS_*``
variable in the tasks' environment, so the connection is what reaches the bucket.

Landing files, the lakehouse (``lakehouse.root: s3://...``) and the MLflow artifacts are in
the bucket; MLflow tracks in a local SQLite store. The champion is trained in this process
(``train_and_gate`` on a simulated snapshot, as tests/integration/test_scoring.py makes it),
with the same connection through :func:`regrow.orchestration.aws.aws_environment`. Then one
simulated day runs through real Airflow (``airflow dags test``), every DAG of the chain:
``regrow_ingest`` (the provider's ``S3KeySensor``, five Spark jobs on the session's Spark
Connect server), ``regrow_score`` and ``regrow_monitor``. Then every file under the test's
temp dir is listed: nothing but the allowed local files (named below) is outside the bucket.

Bad input: a connection whose endpoint is a closed port of 127.0.0.1 fails the sensor (and
a Python task) after its retries, naming the connection and the endpoint, with nothing
written; a connection id that does not exist falls back to the environment.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from regrow.catalog import EVENT_DATE, EVENTS, FEATURES, MONITORING, PREDICTIONS
from regrow.data.simulate import write_landing
from regrow.model.retrain import train_and_gate
from regrow.orchestration.airflow_local import (
    airflow_env,
    dags_test,
    ensure_db,
    run_state,
    task_states,
)
from regrow.orchestration.aws import S3UnreachableError, aws_access, aws_environment
from regrow.settings import load_settings
from tests.conftest import connect_env, context_of, lakehouse_of, write_params
from tests.snapshots import write_snapshot

logger = logging.getLogger(__name__)
# This process reads the connection through the Amazon provider, which loads Airflow's
# config: a throwaway home per xdist worker (as tests/dags/conftest.py), never ~/airflow.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ.setdefault(
    "AIRFLOW_HOME", str(Path(tempfile.gettempdir()) / f"regrow-dagbag-home-{_WORKER}")
)
# Minutes of `airflow dags test` subprocesses: started first (see pytest_collection_modifyitems).
pytestmark = pytest.mark.slow

MOTO_PORT = 5600
CLOSED_PORT = 5609  # nothing listens there: an unreachable endpoint
BUCKET = "regrow-s3-provider"
KEY_ID, SECRET = "s3-provider-key", "s3-provider-secret-do-not-log"
START = dt.date(2026, 1, 1)
DAY = START  # the simulated day run through the DAGs (index 0)
BAD_DAY = START + dt.timedelta(days=1)
INGEST_TASKS = (
    "wait_for_events", "ingest_events", "validate_bronze",
    "build_features", "build_labels", "validate_silver",
)  # fmt: skip
SECTIONS = {
    "simulator": {"start_date": START, "days": 1, "events_per_day": 150, "n_entities": 200},
    "dataset": {"label_delay_days": 3},
    "train": {"nthread": 1},
    "spark": {"shuffle_partitions": 2},
}
AIRFLOW = {
    "start_date": START,
    "sensor_poke_interval_seconds": 1,
    "sensor_timeout_seconds": 30,
    "retry_delay_seconds": 1,
}
# What may be outside the bucket, under the test's temp dir (relative paths). Written by
# the setup, as a project has them: the test's params, and what training the champion
# leaves in the DVC workspace (dvc.yaml's outs: the snapshot, the model copy, the pinned
# test set, metrics and plots; DVC pushes them to its own remote).
SETUP_FILES = ("params.yaml", "trainset/", "data/model/", "data/pinned-test/",
               "metrics.json", "plots/")  # fmt: skip
# Written by the day's DAG runs: the Airflow and MLflow metadata DBs, Airflow's config and
# task logs, and reports_dir (the monitoring HTML report and the Great Expectations Data
# Docs: reports_dir is a local folder in regrow, never S3).
RUN_FILES = (
    "mlflow.db",  # MLflow tracking + registry metadata (SQLite)
    "airflow_home/airflow.db",  # Airflow metadata DB (SQLite)
    "airflow_home/airflow.cfg",
    "airflow_home/.regrow-db",  # regrow's migration stamp and lock
    "airflow_home/simple_auth_manager_passwords.json.generated",
    "airflow_home/logs/",  # task logs
    "reports/",  # reports_dir: monitoring report, Data Docs
)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def connection(endpoint: str) -> str:
    """``AIRFLOW_CONN_AWS_DEFAULT``: an aws connection with keys and an endpoint_url."""
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    return json.dumps({"conn_type": "aws", "login": KEY_ID, "password": SECRET, "extra": extra})


def without_aws(env: dict[str, str]) -> dict[str, str]:
    """``env`` without a single AWS credential or endpoint variable."""
    return {k: v for k, v in env.items() if not k.startswith(("AWS_", "MLFLOW_S3_"))}


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1:5600 (this test's own: it sets no environment)."""
    assert _free(MOTO_PORT), f"port {MOTO_PORT} is in use"
    assert _free(CLOSED_PORT), f"port {CLOSED_PORT} must stay closed"
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{MOTO_PORT}"
    try:
        for _ in range(150):
            if not _free(MOTO_PORT):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"moto server did not start on {endpoint}")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3_client(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
    )  # fmt: skip


def bucket_keys(endpoint: str) -> list[str]:
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture
def as_a_task(monkeypatch):
    """This process as a task sees it: the connection, and no AWS_* variable."""

    def use(endpoint: str) -> None:
        for key in list(os.environ):
            if key.startswith(("AWS_", "MLFLOW_S3_")):
                monkeypatch.delenv(key)
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection(endpoint))

    return use


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, moto: str, spark_connect, mlflow_template) -> SimpleNamespace:
    """The bucket with the day's landing files, a champion whose artifacts are in the
    bucket, and an Airflow home whose only AWS access is the connection."""
    tmp = tmp_path_factory.mktemp("s3_provider")
    s3_client(moto).create_bucket(Bucket=BUCKET)
    shutil.copyfile(mlflow_template, tmp / "mlflow.db")
    params = write_params(
        tmp,
        landing={"path": f"s3://{BUCKET}/landing"},
        lakehouse={"root": f"s3://{BUCKET}/lake"},
        mlflow={"artifact_location": f"s3://{BUCKET}/mlartifacts"},
        airflow=AIRFLOW,
        **SECTIONS,
    )
    settings = load_settings(params)
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(("AWS_", "MLFLOW_S3_")):
                patch.delenv(key)
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection(moto))
        with aws_environment(settings) as access:
            assert access.from_connection
            write_landing(
                settings.dataset, settings.simulator, settings.landing,
                settings.resolve(settings.landing.path), 1,
            )  # fmt: skip
            # A champion trained on later simulated days: scoring and monitoring need one.
            # (of the repo's 2000 events a day, stable: enough for the first gate).
            world = settings.simulator.model_copy(
                update={"events_per_day": 2000, "n_entities": 3000, "scenario": "stable"}
            )
            snapshot = write_snapshot(
                settings.model_copy(update={"simulator": world}), tmp / "trainset", (1, 14)
            )
            outcome = train_and_gate(context_of(settings), snapshot, "test", None).outcome
            assert outcome.promoted, outcome
    env = airflow_env(
        tmp / "airflow_home",
        params=params,
        extra={**connect_env(spark_connect), "AIRFLOW_CONN_AWS_DEFAULT": connection(moto)},
    )
    env = without_aws(env)
    ensure_db(env)
    return SimpleNamespace(
        tmp=tmp, params=params, settings=settings, env=env, endpoint=moto, setup=files(tmp)
    )


def files(root: Path) -> dict[str, int]:
    """Every file under ``root``: relative path -> modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def day_run(workspace) -> dict[str, subprocess.CompletedProcess[str]]:
    """The day through regrow_ingest, regrow_score and regrow_monitor (real Airflow)."""
    results = {"regrow_ingest": dags_test("regrow_ingest", DAY, workspace.env)}
    dates = {"dates": [str(DAY)]}
    if results["regrow_ingest"].returncode == 0:
        results["regrow_score"] = dags_test("regrow_score", DAY, workspace.env, conf=dates)
    if results.get("regrow_score") and results["regrow_score"].returncode == 0:
        results["regrow_monitor"] = dags_test("regrow_monitor", DAY, workspace.env, conf=dates)
    return results


def xcom(env, dag_id: str, task_id: str):
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT x.value FROM xcom x JOIN dag_run r ON x.dag_run_id = r.id "
            "WHERE r.dag_id = ? AND x.task_id = ? AND x.key = 'return_value' "
            "ORDER BY r.id DESC LIMIT 1",
            (dag_id, task_id),
        ).fetchone()
    return json.loads(row[0]) if row else None


def test_the_day_runs_through_every_dag_on_the_connection(workspace, day_run):
    for dag_id in ("regrow_ingest", "regrow_score", "regrow_monitor"):
        assert dag_id in day_run, f"{dag_id} did not run: an earlier DAG failed"
        result = day_run[dag_id]
        assert result.returncode == 0, f"{dag_id}:\n{result.stdout[-8000:]}"
        assert run_state(dag_id, DAY, workspace.env) == "success"
    states = task_states("regrow_ingest", DAY, workspace.env)
    assert {t: states[t] for t in INGEST_TASKS} == dict.fromkeys(INGEST_TASKS, "success")
    assert task_states("regrow_score", DAY, workspace.env) == {
        "select_days": "success",
        "score_batch": "success",
    }
    # The provider's S3KeySensor pushed the day's landing files, as the local sensor does.
    landed = xcom(workspace.env, "regrow_ingest", "wait_for_events")
    keys = bucket_keys(workspace.endpoint)
    assert landed and landed == sorted(
        f"s3://{BUCKET}/{k}" for k in keys if k.startswith(f"landing/events/{DAY}/")
    )
    log = day_run["regrow_ingest"].stdout
    assert f"Poking for key : s3://{BUCKET}/landing/events/{DAY}/*" in log
    # The tasks said where their access came from, and never showed the secret.
    assert (
        f"S3 access: Airflow connection 'aws_default' (its access key) at the endpoint {workspace.endpoint}"
        in log
    )
    for result in day_run.values():
        assert SECRET not in result.stdout


def test_tables_and_model_artifacts_are_in_the_bucket(workspace, day_run, as_a_task):
    assert all(r.returncode == 0 for r in day_run.values())
    keys = bucket_keys(workspace.endpoint)
    for table in (EVENTS, FEATURES, PREDICTIONS, MONITORING):
        folder = "lake/" + table.replace(".", "/") + "/"
        assert any(k.startswith(folder + "_delta_log/") for k in keys), table
    assert any(k.startswith("mlartifacts/") and k.endswith(".ubj") for k in keys), keys
    as_a_task(workspace.endpoint)
    with aws_environment(workspace.settings):
        lakehouse = lakehouse_of(workspace.settings)
        events = lakehouse.to_arrow(EVENTS, partitions={EVENT_DATE: DAY}).num_rows
        scored = lakehouse.to_arrow(PREDICTIONS, partitions={EVENT_DATE: DAY}).num_rows
        monitored = lakehouse.sql(
            f"SELECT count(*) n FROM {MONITORING} WHERE monitor_date = DATE '{DAY}'"
        ).to_pylist()[0]["n"]
    assert events > 100 and scored == events  # the champion scored each ingested event once
    assert monitored > 0


def test_nothing_but_metadata_logs_and_reports_is_written_outside_the_bucket(workspace, day_run):
    assert all(r.returncode == 0 for r in day_run.values())
    now = files(workspace.tmp)
    outside = [p for p in now if not p.startswith(SETUP_FILES + RUN_FILES)]
    assert outside == [], f"written outside the bucket: {outside}"
    # The DAG runs wrote (or changed) only metadata, logs and reports.
    by_runs = [p for p, t in now.items() if workspace.setup.get(p) != t]
    assert by_runs and all(p.startswith(RUN_FILES) for p in by_runs), by_runs
    assert any(p.startswith("reports/monitoring/") for p in by_runs), by_runs
    for local in ("lakehouse", "landing", "mlartifacts"):  # the params' defaults: unused
        assert not (workspace.tmp / local).exists(), local


@pytest.fixture(scope="module")
def unreachable(workspace, tmp_path_factory) -> SimpleNamespace:
    """The same project (airflow.retries: 2), its connection's endpoint a closed port."""
    home = tmp_path_factory.mktemp("s3_provider_unreachable")
    bad = f"http://127.0.0.1:{CLOSED_PORT}"
    env = airflow_env(
        home / "airflow_home",
        params=workspace.params,
        extra={"AIRFLOW_CONN_AWS_DEFAULT": connection(bad)},
    )
    env = without_aws(env)
    ensure_db(env)
    before = bucket_keys(workspace.endpoint)
    return SimpleNamespace(env=env, endpoint=bad, before=before)


def tries(env, dag_id: str, task_id: str) -> int:
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT try_number FROM task_instance WHERE dag_id = ? AND task_id = ? "
            "ORDER BY try_number DESC LIMIT 1",
            (dag_id, task_id),
        ).fetchone()
    return row[0] if row else 0


def test_an_unreachable_endpoint_fails_the_sensor_after_its_retries(workspace, unreachable):
    result = dags_test("regrow_ingest", BAD_DAY, unreachable.env)
    log = result.stdout
    assert result.returncode != 0, log[-5000:]
    states = task_states("regrow_ingest", BAD_DAY, unreachable.env)
    assert states["wait_for_events"] == "failed"
    assert {states[t] for t in INGEST_TASKS[1:]} == {"upstream_failed"}
    assert (
        tries(unreachable.env, "regrow_ingest", "wait_for_events")
        == 1 + workspace.settings.airflow.retries
    )
    expected = (
        f"cannot use s3://{BUCKET}/landing (landing.path) with Airflow connection 'aws_default' "
        f"(its access key) at the endpoint {unreachable.endpoint}"
    )
    assert log.count(expected) >= 2, log[-5000:]  # every try, the same line
    assert SECRET not in log
    assert bucket_keys(workspace.endpoint) == unreachable.before  # nothing half-written


def test_an_unreachable_endpoint_fails_a_task_before_it_writes(workspace, unreachable):
    """A Python task (regrow_monitor's select_days reads gold.predictions) checks the
    buckets before it works."""
    result = dags_test("regrow_monitor", BAD_DAY, unreachable.env, conf={"dates": [str(DAY)]})
    log = result.stdout
    assert result.returncode != 0, log[-5000:]
    assert task_states("regrow_monitor", BAD_DAY, unreachable.env)["select_days"] == "failed"
    assert (
        tries(unreachable.env, "regrow_monitor", "select_days")
        == 1 + workspace.settings.airflow.retries
    )
    assert (
        f"cannot use s3://{BUCKET}/lake (lakehouse.root) with Airflow connection 'aws_default' "
        f"(its access key) at the endpoint {unreachable.endpoint}, region us-east-1: the "
        "endpoint cannot be reached; check that the server runs, or fix the extra "
        "endpoint_url / credentials of the Airflow connection 'aws_default'"
    ) in log, log[-5000:]
    assert bucket_keys(workspace.endpoint) == unreachable.before


def test_a_missing_connection_falls_back_to_the_environment(workspace, monkeypatch, caplog):
    """No connection of that id: the AWS_* environment is used, and the log says so."""
    settings = workspace.settings.model_copy(
        update={
            "airflow": workspace.settings.airflow.model_copy(
                update={"aws_conn_id": "regrow_no_such_connection"}
            )
        }
    )
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    for key, value in {
        "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": workspace.endpoint, "AWS_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert not aws_access("regrow_no_such_connection").from_connection
    caplog.set_level(logging.INFO, logger="regrow.orchestration.aws")
    with aws_environment(settings) as access:
        assert not access.from_connection
        assert os.environ["AWS_ENDPOINT_URL"] == workspace.endpoint  # left as it was
        rows = lakehouse_of(settings).to_arrow(EVENTS, partitions={EVENT_DATE: DAY}).num_rows
    assert rows > 0
    assert (
        "S3 access: the environment (no Airflow connection 'regrow_no_such_connection': "
        f"AWS_* variables, profile or role) at the endpoint {workspace.endpoint}"
    ) in caplog.text
    assert SECRET not in caplog.text

    # Without the environment either, the check fails naming both, before any work.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{CLOSED_PORT}")
    with pytest.raises(S3UnreachableError, match="regrow_no_such_connection") as err:
        with aws_environment(settings):
            pytest.fail("the block ran")
    assert f"http://127.0.0.1:{CLOSED_PORT}" in str(err.value)
