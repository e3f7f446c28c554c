"""A day's ingest and scoring on a real Spark standalone cluster, through real Airflow.

A master and one worker (1 core, 1 GiB) run on 127.0.0.1 from the pyspark wheel
(:mod:`tests.spark_cluster`); the tables live in a bucket of a real S3 server (moto) on
127.0.0.1, on the delta-spark engine (Delta's connector and hadoop-aws are shipped to the
executors with every application, ``spark.jars``). ``airflow dags test`` runs
``regrow_ingest`` and ``regrow_score`` with ``airflow.spark_via: submit``: every Spark job is
a ``spark-submit`` to the ``spark_default`` connection's master, the cluster. The landing
files stay on the local disk (the cluster is on this machine; the S3 landing sensor is
covered by its own tests).

The failure path: ``spark_default`` naming a closed port fails ``ingest_events`` after its
one retry (``airflow.retries: 1`` here, 1 s apart, to keep the test short), naming the
connection and the master, and nothing of that day is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pyarrow.csv as pv
import pytest

from regrow.catalog import CHAMPION, EVENT_DATE, EVENTS, FEATURES, QUARANTINE
from regrow.data import landing
from regrow.data.simulate import write_landing
from regrow.model.registry import Registry
from regrow.model.retrain import train_and_gate
from regrow.model.scoring import read_predictions
from regrow.orchestration.airflow_local import (
    SPARK_CONN_ENV,
    airflow_env,
    dags_test,
    ensure_db,
    run_state,
    task_states,
)
from regrow.settings import load_settings
from tests import spark_cluster
from tests.conftest import context_of, lakehouse_of, write_params
from tests.snapshots import write_snapshot

logger = logging.getLogger(__name__)
# Minutes of spark-submit applications on a one-core cluster: started first.
# stack: `make test-stack` runs this file (`make test` leaves it out: see pyproject.toml).
pytestmark = [pytest.mark.slow, pytest.mark.stack]

# This test's ports (fixed: the lead gave each helper a range).
MASTER_PORT, MASTER_WEB_PORT, WORKER_WEB_PORT = 17077, 18090, 18091
BUCKET = "regrow-cluster"
DAY = dt.date(2026, 1, 1)  # ingested and scored on the cluster
DOWN_DAY = DAY + dt.timedelta(days=1)  # landed; its ingest meets a master that is down
INGEST_TASKS = (
    "wait_for_events", "ingest_events", "validate_bronze",
    "build_features", "build_labels", "validate_silver",
)  # fmt: skip
BRANCH = {"choose_path": "success", "backfill_range": "skipped", "publish_range": "skipped"}
# The Spark applications of the day, by name: five of regrow_ingest, one of regrow_score
# (a mapped task's application is named by its task: its day is an argument).
SUBMITTED = {f"regrow_{t}_{DAY:%Y%m%d}" for t in INGEST_TASKS[1:]} | {"regrow_score_batch"}


def spark_connection(master: str) -> dict[str, str]:
    """``airflow_env``'s ``extra`` that points ``spark_default`` at ``master``."""
    return {SPARK_CONN_ENV: json.dumps({"conn_type": "spark", "host": master})}


@pytest.fixture(scope="module")
def s3(s3_server: str) -> str:
    """The session's S3 server (moto on 127.0.0.1, tests/conftest.py) with this module's
    bucket; its AWS_* environment is what regrow, spark-submit and the cluster's executors
    read, as today."""
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=BUCKET)
    return s3_server


@pytest.fixture(scope="module")
def cluster(s3: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[spark_cluster.Cluster]:
    """A master and one worker of 1 core and 1 GiB; its executors get the AWS_* environment
    (a cluster node's role or environment)."""
    home = tmp_path_factory.mktemp("spark_cluster")
    started = time.monotonic()
    running = spark_cluster.start(home, MASTER_PORT, MASTER_WEB_PORT, WORKER_WEB_PORT)
    logger.info("cluster %s up in %.1f s", running.url, time.monotonic() - started)
    yield running
    spark_cluster.stop(running)


@pytest.fixture(scope="module")
def workspace(s3: str, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Params with the lakehouse in the bucket (delta-spark), two landed days, a champion
    in a local MLflow store."""
    tmp = tmp_path_factory.mktemp("cluster_workspace")
    params = write_params(
        tmp,
        lakehouse={"root": f"s3://{BUCKET}/lakehouse", "engine": "delta-spark"},
        simulator={
            "start_date": DAY,
            "days": 2,
            "events_per_day": 150,
            "n_entities": 200,
            "scenario": "stable",
        },  # fmt: skip
        spark={
            "shuffle_partitions": 2,
            # No driver UI (its port is not ours); executors well inside the worker's 1 GiB.
            "conf": {"spark.ui.enabled": "false", "spark.executor.memory": "512m"},
        },
        train={"nthread": 1},
        score={"threshold": 0.05},
        airflow={
            "start_date": DAY,
            "spark_via": "submit",
            "sensor_poke_interval_seconds": 1,
            "retries": 1,  # the failure path retries once, 1 s later: see the module doc
            "retry_delay_seconds": 1,
        },
    )
    settings = load_settings(params)
    landing_root = settings.resolve(settings.landing.path)
    write_landing(settings.dataset, settings.simulator, settings.landing, landing_root)
    # The champion: trained on 14 simulated days of the contract's features (more events
    # than the landed days, so that it beats the gate's baselines).
    bigger = settings.simulator.model_copy(update={"events_per_day": 2000})
    snapshot = write_snapshot(settings.model_copy(update={"simulator": bigger}),
                              tmp / "trainset", (0, 13))  # fmt: skip
    outcome = train_and_gate(context_of(settings), snapshot, "test", None).outcome
    assert outcome.promoted, outcome
    return SimpleNamespace(
        tmp=tmp,
        params=params,
        settings=settings,
        landing_root=landing_root,
        lakehouse=lakehouse_of(settings),
    )


@pytest.fixture(scope="module")
def day_on_cluster(workspace, cluster) -> SimpleNamespace:
    """regrow_ingest, then regrow_score, for DAY through ``airflow dags test``, every Spark
    job submitted to the cluster."""
    env = airflow_env(
        workspace.tmp / "airflow_home", params=workspace.params, extra=spark_connection(cluster.url)
    )
    ensure_db(env)
    started = time.monotonic()
    ingest = dags_test("regrow_ingest", DAY, env)
    logger.info("regrow_ingest on the cluster: %.1f s", time.monotonic() - started)
    score = None
    if ingest.returncode == 0:
        score = dags_test("regrow_score", DAY, env, conf={"dates": [str(DAY)]})
    return SimpleNamespace(env=env, ingest=ingest, score=score)


def test_the_day_is_ingested_and_scored_through_airflow(day_on_cluster):
    ingest, score = day_on_cluster.ingest, day_on_cluster.score
    assert ingest.returncode == 0, ingest.stdout[-8000:]
    assert task_states("regrow_ingest", DAY, day_on_cluster.env) == {
        **BRANCH,
        **dict.fromkeys(INGEST_TASKS, "success"),
    }
    assert score is not None and score.returncode == 0, score.stdout[-8000:]
    assert run_state("regrow_score", DAY, day_on_cluster.env) == "success"


def test_every_spark_job_ran_on_the_cluster(day_on_cluster, cluster):
    """The master lists the day's applications as completed, each with the worker's core;
    each driver was submitted to it (spark-submit's command line in the task logs), and
    each application ran its tasks in an executor on the worker."""
    assert day_on_cluster.score is not None, day_on_cluster.ingest.stdout[-8000:]
    apps = cluster.completed_apps()
    assert sorted(a["name"] for a in apps) == sorted(SUBMITTED)
    assert {a["state"] for a in apps} == {"FINISHED"}
    assert {a["cores"] for a in apps} == {1}
    logs = day_on_cluster.ingest.stdout + day_on_cluster.score.stdout
    assert logs.count(f"--master {cluster.url}") == len(SUBMITTED)
    for job in ("ingest", "validate", "features", "labels", "score"):
        assert f"jobs/{job}.py to {cluster.url} (connection 'spark_default')" in logs, job
    # Each application's executor ran on the worker, in a folder of its own under work/.
    work = cluster.home / "work"
    assert {p.name for p in work.glob("app-*")} == {a["id"] for a in apps}
    for app in apps:
        stderr = "".join(p.read_text() for p in (work / app["id"]).glob("*/stderr"))
        assert "Finished task" in stderr, app["name"]


def _landed_rows(ws, day: dt.date) -> int:
    files = landing.find_files(ws.landing_root, ws.settings.landing, "events", day)
    return sum(pv.read_csv(f).num_rows for f in files)


def test_the_tables_in_the_bucket_hold_the_day(workspace, day_on_cluster, s3):
    assert day_on_cluster.score is not None and day_on_cluster.score.returncode == 0
    import boto3

    keys = [
        o["Key"]
        for page in boto3.client("s3", endpoint_url=s3)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=BUCKET, Prefix="lakehouse/")
        for o in page.get("Contents", [])
    ]
    for table in ("bronze/events", "silver/features", "gold/predictions"):
        assert any(k.startswith(f"lakehouse/{table}/_delta_log/") for k in keys), table
        assert any(
            f"{EVENT_DATE}={DAY}/" in k and k.startswith(f"lakehouse/{table}/") for k in keys
        )

    lakehouse = workspace.lakehouse
    landed = _landed_rows(workspace, DAY)
    events = lakehouse.to_arrow(EVENTS, partitions={EVENT_DATE: DAY}).num_rows
    quarantined = lakehouse.sql(
        f"SELECT count(*) n FROM {QUARANTINE} WHERE ingest_date = DATE '{DAY}'"
    ).to_pylist()[0]["n"]
    assert landed > 0 and events > 0.9 * landed
    assert events + quarantined == landed
    features = lakehouse.to_arrow(FEATURES, partitions={EVENT_DATE: DAY})
    assert features.num_rows == events

    rows = read_predictions(lakehouse, DAY, alias=None).to_pylist()
    champion = Registry(workspace.settings).alias(CHAMPION)
    event_id = workspace.settings.dataset.event_id
    assert sorted(r[event_id] for r in rows) == sorted(features.column(event_id).to_pylist())
    assert {(r["model_alias"], str(r["model_version"])) for r in rows} == {
        (CHAMPION, champion.version)
    }


def test_a_master_that_is_down_fails_the_task_naming_it(workspace, closed_port):
    """spark_default names a master nobody runs: ingest_events fails at once on each of its
    two tries, naming the connection and the address; the day is not written."""
    master = f"spark://127.0.0.1:{closed_port}"
    env = airflow_env(
        workspace.tmp / "airflow_home_down", params=workspace.params, extra=spark_connection(master)
    )
    ensure_db(env)
    result = dags_test("regrow_ingest", DOWN_DAY, env)
    log = result.stdout

    assert result.returncode != 0, log[-8000:]
    assert task_states("regrow_ingest", DOWN_DAY, env) == {
        **BRANCH,
        "wait_for_events": "success",
        "ingest_events": "failed",
        **dict.fromkeys(INGEST_TASKS[2:], "upstream_failed"),
    }
    expected = (
        f"no Spark master answers at 127.0.0.1:{closed_port} ({master}, the Airflow "
        "connection 'spark_default')"
    )
    assert log.count(expected) >= 2, log[-8000:]  # the first try and its retry
    assert f"ALERT regrow_ingest.ingest_events failed for {DOWN_DAY} (try 2)" in log
    assert "Spark-Submit cmd" not in log  # nothing was submitted
    lakehouse = workspace.lakehouse
    for table, column in ((EVENTS, EVENT_DATE), (QUARANTINE, "ingest_date")):
        if lakehouse.exists(table):
            found = lakehouse.sql(
                f"SELECT count(*) n FROM {table} WHERE {column} = DATE '{DOWN_DAY}'"
            ).to_pylist()
            assert found[0]["n"] == 0, table
