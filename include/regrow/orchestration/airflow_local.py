"""Run regrow's Airflow DAGs on a laptop or in CI, with no Airflow services.

``airflow dags test`` runs a whole DAG run in one process against a metadata database; all
it needs is an ``AIRFLOW_HOME`` with a migrated SQLite database and the right environment.
These functions build that environment, migrate the database once, and run a DAG for one
day as a subprocess. Tests, ``make demo`` and ``regrow dags test`` share them::

    env = airflow_env(Path("airflow_home"))
    ensure_db(env)
    result = dags_test("regrow_ingest", dt.date(2026, 1, 1), env)

What the DAG files themselves are wired from lives in :mod:`regrow.orchestration.dags`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from regrow.orchestration.connect import HOST
from regrow.orchestration.dags import DAGS_FOLDER, REPO_ROOT
from regrow.settings import PARAMS_ENV, AirflowSettings, ConfigError, load_settings

logger = logging.getLogger(__name__)

# `make demo` and `regrow dags test` use this home; tests use a temporary one.
PROJECT_HOME = REPO_ROOT / "airflow_home"
SPARK_CONN_ENV = "AIRFLOW_CONN_SPARK_DEFAULT"
# A `spark` connection whose master is `local[*]`: spark-submit runs the job on this machine.
LOCAL_SPARK_CONNECTION = json.dumps({"conn_type": "spark", "host": "local[*]"})
_MIGRATED_STAMP = ".regrow-db-migrated"


def airflow_env(
    home: Path,
    params: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An environment in which the ``airflow`` CLI runs regrow's DAGs with no services.

    Args:
        home: the ``AIRFLOW_HOME`` (created if missing): SQLite metadata DB, logs, config.
        params: the params.yaml the DAGs and jobs read; default: ``$REGROW_PARAMS`` if set.
        extra: variables set last (e.g. ``AIRFLOW__LOGGING__LOGGING_LEVEL``).

    Returns:
        A copy of ``os.environ`` with every ``AIRFLOW__*`` setting of the caller removed (so
        a developer's own Airflow config cannot leak in), and: the DAGs folder of this repo,
        no example DAGs, the ``spark_default`` connection as ``local[*]`` unless
        ``AIRFLOW_CONN_SPARK_DEFAULT`` is already set, the Spark Connect connection as the
        local server of the ``spark`` section (127.0.0.1) unless set, this interpreter for PySpark, and
        this interpreter's ``bin`` first on ``PATH`` (so ``spark-submit`` is the venv's).
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW__") and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
    }
    bin_dir = str(Path(sys.executable).parent)
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "PYSPARK_PYTHON": sys.executable,
        # spark-submit's local driver binds to loopback, not the machine's first interface.
        "SPARK_LOCAL_IP": env.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
    }
    env.setdefault(SPARK_CONN_ENV, LOCAL_SPARK_CONNECTION)
    if params is not None:
        env[PARAMS_ENV] = str(Path(params).resolve())
    settings = load_settings(params)
    # The Spark Connect connection: regrow's local server (`regrow spark start`).
    name, value = spark_connect_connection(
        settings.airflow.spark_connect_conn_id, settings.spark.connect_port
    )
    env.setdefault(name, value)
    env |= dict(extra or {})
    return env


def spark_connect_connection(conn_id: str, port: int, host: str = HOST) -> tuple[str, str]:
    """The environment variable and value that define the Airflow connection ``conn_id``
    (type ``spark_connect``) to a Spark Connect server at ``host:port``."""
    value = json.dumps({"conn_type": "spark_connect", "host": host, "port": port})
    return f"AIRFLOW_CONN_{conn_id.upper()}", value


def ensure_db(env: Mapping[str, str]) -> None:
    """Run ``airflow db migrate`` once for this environment's metadata DB.

    A stamp in ``AIRFLOW_HOME`` records the DB URL and Airflow version that were migrated,
    so later calls return at once (migrate itself is idempotent but costs seconds); a new
    Airflow version migrates again. A file lock keeps two processes from migrating at once.

    Raises:
        RuntimeError: the migration failed; the message carries the CLI output.
    """
    home = Path(env["AIRFLOW_HOME"])
    stamp = home / _MIGRATED_STAMP
    wanted = (
        f"{env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']} airflow=={version('apache-airflow-core')}"
    )
    with open(home / ".regrow-db.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db_file = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
        if stamp.is_file() and stamp.read_text() == wanted and Path(db_file).is_file():
            return
        logger.info("migrating the Airflow metadata DB in %s", home)
        _airflow(["db", "migrate"], env, f" in {home}")
        stamp.write_text(wanted)


def check_logical_dates(cfg: AirflowSettings, days: list[dt.date]) -> None:
    """Refuse days before ``airflow.start_date``: Airflow creates no task instance for a
    logical date before a DAG's start, so such a run "succeeds" having done nothing.

    Raises:
        ConfigError: naming the first such day, ``airflow.start_date`` and the fix.
    """
    early = [d for d in days if d < cfg.start_date]
    if early:
        raise ConfigError(
            f"{early[0]} is before airflow.start_date ({cfg.start_date}): Airflow would run no "
            f"task for it and report success. Set airflow.start_date in params.yaml to "
            f"{early[0]} or earlier (the first day of your data), or run a later day"
        )


def dags_test(
    dag_id: str,
    day: dt.date | str,
    env: Mapping[str, str],
    timeout: float | None = None,
    conf: Mapping[str, object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``airflow dags test <dag_id> <day>``: one whole DAG run, in-process, no scheduler.

    ``conf`` is the run's configuration (``--conf``): it sets the DAG's params.

    Returns the completed process: ``returncode`` (non-zero when the run failed) and
    ``stdout`` (stdout and stderr interleaved: the task logs). Call :func:`ensure_db` first.
    """
    day = day.isoformat() if isinstance(day, dt.date) else day
    command = [_airflow_cli(), "dags", "test", dag_id, day]
    if conf:
        command += ["--conf", json.dumps(dict(conf))]
    started = time.monotonic()
    result = subprocess.run(
        command,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    logger.info(
        "airflow dags test %s %s: exit %d in %.1f s",
        dag_id, day, result.returncode, time.monotonic() - started,
    )  # fmt: skip
    return result


def backfill(
    dag_id: str,
    start: dt.date,
    end: dt.date,
    env: Mapping[str, str],
    timeout: float | None = None,
) -> dict[dt.date, subprocess.CompletedProcess[str]]:
    """Backfill ``start``..``end`` (inclusive) with no scheduler: one ``dags test`` per day.

    ``airflow backfill create`` only records the runs; a scheduler, a DAG processor and the
    API server must be up to execute them. So the days are planned by the real thing,
    ``airflow backfill create --dry-run`` (the logical dates the DAG's schedule gives, also
    for runs that exist already), and each is run in order with :func:`dags_test`. Stops
    at the first failed day, as ``max_active_runs=1`` with ``depends_on_past`` would.

    Returns:
        The completed ``dags test`` per day run, in order; the last one failed if a day did.
    """
    results: dict[dt.date, subprocess.CompletedProcess[str]] = {}
    for day in backfill_plan(dag_id, start, end, env):
        results[day] = dags_test(dag_id, day, env, timeout=timeout)
        if results[day].returncode != 0:
            break
    return results


def backfill_plan(
    dag_id: str, start: dt.date, end: dt.date, env: Mapping[str, str]
) -> list[dt.date]:
    """The days ``airflow backfill create --dry-run`` would run, oldest first.

    The DAG is (re)serialized into the metadata DB first: the dry run reads it from there.
    """
    _airflow(["dags", "reserialize"], env)
    plan = _airflow([
        "backfill", "create", "--dag-id", dag_id, "--dry-run",
        "--from-date", start.isoformat(), "--to-date", end.isoformat(),
        "--reprocess-behavior", "completed",
    ], env)  # fmt: skip
    table = plan.stdout.split("Runs to be attempted", 1)[-1]
    days = {
        dt.date.fromisoformat(d)
        for d in re.findall(r"^\|\s*(\d{4}-\d{2}-\d{2})[ T]", table, re.MULTILINE)
    }
    return sorted(days)


def task_states(dag_id: str, day: dt.date | str, env: Mapping[str, str]) -> dict[str, str | None]:
    """``{task_id: state}`` of the latest run of ``dag_id`` for ``day`` (SQLite metadata DB).

    Read straight from the SQLite file: asking the ``airflow`` CLI costs seconds per call.
    """
    run = _latest_run(dag_id, day, env)
    if run is None:
        return {}
    with sqlite3.connect(_sqlite_file(env)) as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run[0]),
        ).fetchall()
    return dict(rows)


def run_state(dag_id: str, day: dt.date | str, env: Mapping[str, str]) -> str | None:
    """The state (``success``, ``failed`` ...) of the latest run of ``dag_id`` for ``day``;
    None if it never ran in this environment's SQLite metadata DB."""
    run = _latest_run(dag_id, day, env)
    return run[1] if run else None


def _latest_run(dag_id: str, day: dt.date | str, env: Mapping[str, str]) -> tuple | None:
    day = day.isoformat() if isinstance(day, dt.date) else day
    db_file = _sqlite_file(env)
    if not Path(db_file).is_file():
        return None
    with sqlite3.connect(db_file) as db:
        return db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND substr(logical_date, 1, 10) = ? "
            "ORDER BY id DESC LIMIT 1",
            (dag_id, day),
        ).fetchone()


def _sqlite_file(env: Mapping[str, str]) -> str:
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if not url.startswith("sqlite:///"):
        raise ValueError(f"regrow reads run states from a SQLite metadata DB only, not {url}")
    return url.removeprefix("sqlite:///")


def _airflow(
    args: list[str], env: Mapping[str, str], where: str = ""
) -> subprocess.CompletedProcess:
    """Run ``airflow <args>``; a failure raises with the command, its exit code and output."""
    result = subprocess.run(
        [_airflow_cli(), *args], env=dict(env), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`airflow {' '.join(args)}` failed{where} (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def _airflow_cli() -> str:
    # The `airflow` of this interpreter's environment, not whichever one is first on PATH.
    return str(Path(sys.executable).parent / "airflow")
