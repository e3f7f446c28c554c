"""Shared fixtures: one real SparkSession per test session, isolated params files,
and a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from regrow.settings import Settings, load_settings
from tests.shared import CONNECT, close_session, locked, open_session

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# py4j logs "Closing down clientserver connection" at interpreter exit, after pytest has
# closed the streams: a harmless "--- Logging error ---" without this.
logging.getLogger("py4j").setLevel(logging.WARNING)
_OWNS_SHARED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_OWNS_SHARED] = open_session()


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_OWNS_SHARED, False):
        close_session()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow (minutes of Airflow or DVC subprocesses) come first. Under xdist
    (``--dist loadfile --no-loadscope-reorder``, see pyproject.toml) the first files go to
    the workers first, so these overlap each other and the rest instead of running last and
    alone. The sort is stable, so every worker collects the same order."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def spark():
    from regrow.orchestration.spark import get_spark
    from regrow.settings import SparkSettings

    # REGROW_TEST_SPARK_REMOTE=sc://127.0.0.1:<port>: the whole suite on a Spark Connect
    # server (`regrow spark start`) instead of a Spark in this process, the CLI's too.
    if os.environ.get("REGROW_TEST_SPARK_REMOTE"):
        os.environ["SPARK_REMOTE"] = os.environ["REGROW_TEST_SPARK_REMOTE"]
    session = get_spark(
        SparkSettings(
            master="local[2]",
            app_name="regrow-tests",
            shuffle_partitions=2,
            conf={"spark.ui.enabled": "false", "spark.sql.adaptive.enabled": "true"},
        )
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_connect():
    """A real Spark Connect server (regrow's own, from the pyspark wheel) on a free port of
    127.0.0.1, for the session; DAG tasks (``airflow.spark_via: connect``) and jobs run with
    ``--spark-remote`` use it. Its ``port`` goes into a test's ``spark.connect_port``, from
    which :func:`regrow.orchestration.airflow_local.airflow_env` makes the connection.

    One server for every xdist worker (tests/shared.py): each of its clients has a session
    of its own, and each server is a JVM that compiles Spark's code again (one server per
    worker used 105 and 175 CPU-seconds in a suite run). The first worker to ask starts it; the process
    that runs pytest stops it at the end (:func:`pytest_unconfigure`).

    A Spark Connect session cannot live beside the session's classic one in one process:
    whatever uses this server runs in a subprocess."""
    from regrow.orchestration import connect

    with locked(CONNECT) as home:
        params = home / "params.yaml"
        if not params.exists():
            home.mkdir()
            write_params(home, spark={"connect_port": _free_port()})
        server = connect.start(load_settings(params))
    return server


def connect_env(server) -> dict[str, str]:
    """``airflow_env``'s ``extra`` that points the DAGs' Spark Connect connection at
    ``server`` (the :func:`spark_connect` fixture)."""
    from regrow.orchestration.airflow_local import spark_connect_connection

    name, value = spark_connect_connection("spark_connect_default", server.port)
    return {name: value}


def write_params(directory: Path, **sections: dict) -> Path:
    """A params.yaml in ``directory``: the repo's file with ``sections`` merged over it,
    and landing, lakehouse and reports under ``directory``."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["landing"]["path"] = str(directory / "landing")
    raw["lakehouse"]["root"] = str(directory / "lakehouse")
    # delta-rs unless a test says otherwise: the engine-parametrized files run on both
    # (tests/engines/), and tests/engines/test_engine_choice.py covers `auto`.
    raw["lakehouse"]["engine"] = "delta-rs"
    raw["reports_dir"] = str(directory / "reports")
    # The suites in git are the ones under test.
    raw["validation"]["expectations_dir"] = str(REPO / "expectations")
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def lakehouse_of(settings: Settings):
    """The lakehouse a test's settings point at."""
    from regrow.storage.lakehouse import Lakehouse

    return Lakehouse.from_settings(settings)


def context_of(settings: Settings, spark=None, run_id: str = "test", lakehouse=None, actor=None):
    """The stage context of a test: its settings, the session's Spark (stages that need no
    Spark may leave it out), and a run id."""
    from regrow.orchestration.context import stage_context

    return stage_context(settings, run_id, spark=spark, lakehouse=lakehouse, actor=actor)


def quarantined(lakehouse, kind: str, day) -> list[dict]:
    """The quarantine rows of one kind (events/labels) and ingest day."""
    return lakehouse.sql(
        f"SELECT * FROM bronze.quarantine WHERE source_kind = '{kind}' AND ingest_date = DATE '{day}'"
    ).to_pylist()


@pytest.fixture(scope="module")
def engine() -> str:
    """The ``lakehouse.engine`` of :func:`make_settings`' params: delta-rs here. The files
    of ``tests/engines/`` collect the engine-parametrized test files again and override
    this fixture with ``delta-spark``, so each file runs on both engines (on two xdist
    workers). Params written by :func:`write_params` alone are on delta-rs."""
    return "delta-rs"


@pytest.fixture
def make_settings(tmp_path: Path, engine: str):
    """``make_settings(simulator={"days": 3})`` -> Settings rooted in tmp_path, on
    :func:`engine`."""

    def make(**sections: dict) -> Settings:
        lakehouse = {"engine": engine, **sections.pop("lakehouse", {})}
        return load_settings(write_params(tmp_path, lakehouse=lakehouse, **sections))

    return make


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, migrated once per session (creating one costs ~3.5 s)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def mlflow_db(tmp_path: Path, mlflow_template: Path) -> Path:
    """A fresh copy of the migrated store at ``tmp_path/mlflow.db``: where the default
    ``mlflow.tracking_uri`` (``sqlite:///mlflow.db``) of ``make_settings`` points."""
    import shutil

    return Path(shutil.copyfile(mlflow_template, tmp_path / "mlflow.db"))


def _free_port() -> int:
    """A free port of 127.0.0.1 for a server a test starts (below the ephemeral range:
    :func:`regrow.orchestration.connect.free_port`)."""
    from regrow.orchestration.connect import free_port

    return free_port()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections for the whole test: bound (so that
    nothing else takes it meanwhile) but not listening. A port bound and closed again may
    be handed to another process at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def web_server() -> Iterator[int]:
    """The port of a real web server on 127.0.0.1 (it answers every request with an HTTP
    error): another program on a port where regrow expects a Spark Connect server."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", _free_port()), http.server.BaseHTTPRequestHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto) on 127.0.0.1; yields its endpoint URL and sets
    the AWS_* environment that boto3, s3fs, pyarrow and delta-rs read."""
    port = _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"moto server did not start on {endpoint}")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server: str, request) -> str:
    """A fresh bucket on the test S3 server; yields its s3:// URI."""
    import boto3

    name = f"regrow-{abs(hash(request.node.nodeid)) % 10**8}-{int(time.time() * 1000) % 10**6}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"
