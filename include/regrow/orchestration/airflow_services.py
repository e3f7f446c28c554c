"""A real local Airflow: api-server, scheduler, dag-processor and triggerer as background
processes of one ``AIRFLOW_HOME``, with regrow's DAGs and plugin. ``regrow airflow up`` and
``make airflow`` start it; the scheduler then runs the DAGs on their schedules, Assets and
backfills (``airflow backfill create``), as in production::

    services = start(Path("airflow_home"), port=8080)
    print(services.url, services.username, services.password)
    stop(Path("airflow_home"))

The environment is :func:`regrow.orchestration.airflow_local.airflow_env`'s plus:

- **LocalExecutor on SQLite.** Airflow 3.3 allows it: the Airflow 2 check that refused any
  executor but the SequentialExecutor on SQLite is gone (the SequentialExecutor itself was
  removed in 3.0) and ``airflow standalone`` runs exactly this. SQLite has one writer at a
  time: the DB is put in WAL mode (readers never block the writer) and every component
  waits up to a minute for the write lock (:mod:`regrow.orchestration.airflow_db`). Parallelism is ``AIRFLOW__CORE__PARALLELISM``,
  here 4 unless ``extra_env`` says otherwise: the LocalExecutor forks that many workers at
  start (the default 32 would be 32 processes on a laptop), and 4 task slots cover what
  regrow runs at once (ingest's features and labels side by side, a sensor, scoring).
- **SimpleAuthManager** (Airflow 3's default): one user, ``admin`` with role ``admin``
  (``[core] simple_auth_manager_users``). On its first start the api-server generates the
  password and writes it, as JSON ``{"admin": "..."}``, to
  ``[core] simple_auth_manager_passwords_file`` (here ``<home>/simple_auth_manager_passwords.json.generated``,
  Airflow's default place); it is kept across restarts. No password is ever committed.
- The API on 127.0.0.1:``port`` only; tasks reach the Execution API there.
- Connections: ``spark_default`` and ``spark_connect_default`` from ``airflow_env``;
  ``aws_default``, MLflow or any other from ``AIRFLOW_CONN_*`` variables of the caller's
  environment (``airflow_env`` keeps them), never from a file in git.
- Logs are read from the files in ``<home>/logs`` (one machine): the scheduler and the
  triggerer run with ``--skip-serve-logs`` and take no port but the API's.

Backfills on these services: :mod:`regrow.orchestration.airflow_backfills`. Pid files and
each component's log: ``<home>/services/<component>.pid|.log``; what
:func:`stop` must undo is in ``<home>/services/state.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from regrow.orchestration import connect
from regrow.orchestration.airflow_local import (
    _airflow_cli,
    airflow_env,
    ensure_db,
    spark_connect_connection,
)
from regrow.orchestration.connect import HOST
from regrow.orchestration.dags import DAGS_FOLDER, REPO_ROOT
from regrow.settings import find_params, load_settings

logger = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USERNAME = "admin"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
PARALLELISM = 4
HEALTH_PATH = "/api/v2/monitor/health"
# The SQLite busy timeout of every component (see that module).
_CONNECT_ARGS = "regrow.orchestration.airflow_db.SQLITE_CONNECT_ARGS"
_SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
_ARGS = {
    "api-server": lambda port: ["--host", HOST, "--port", str(port), "--workers", "1"],
    "scheduler": lambda port: ["--skip-serve-logs"],
    "dag-processor": lambda port: [],
    "triggerer": lambda port: ["--skip-serve-logs"],
}


class ServicesError(RuntimeError):
    """A component did not come up (or go down); the message is one line naming the
    component, the port and its log."""


@dataclass
class Services:
    home: Path
    port: int
    url: str  # like "http://127.0.0.1:8080"
    username: str
    password: str  # the UI login
    password_file: Path  # where Airflow wrote the generated password
    pids: dict[str, int]  # component -> pid

    def log(self, component: str) -> Path:
        """The log file of ``component`` (api-server, scheduler, dag-processor, triggerer)."""
        return log_file(self.home, component)


def services_dir(home: Path) -> Path:
    return Path(home).resolve() / "services"


def log_file(home: Path, component: str) -> Path:
    return services_dir(home) / f"{component}.log"


def pid_file(home: Path, component: str) -> Path:
    return services_dir(home) / f"{component}.pid"


def password_file(home: Path) -> Path:
    return Path(home).resolve() / "simple_auth_manager_passwords.json.generated"


def services_env(
    home: Path,
    port: int,
    params: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every component (and of an ``airflow`` CLI that talks to them):
    ``airflow_env``'s plus the services' settings above; ``extra_env`` is set last."""
    home = Path(home).resolve()
    url = f"http://{HOST}:{port}"
    service = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__AUTH_MANAGER": _SIMPLE_AUTH,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(home)),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # A task's calls to the Execution API write to SQLite, waiting behind the scheduler's
        # writes: on a busy laptop they take longer than the default 5 s, and a task whose
        # start call times out five times is killed before it ran.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": _CONNECT_ARGS,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": _CONNECT_ARGS,
    }
    return airflow_env(home, params, {**service, **dict(extra_env or {})})


def start(
    home: Path,
    port: int = 8080,
    params: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> Services:
    """Start Airflow's four components on ``home`` and wait until the API answers its
    health check, every component reports healthy, and the DAG processor has parsed every
    regrow DAG. Services already running on ``home`` are returned as they are.

    When ``airflow.spark_via`` is ``connect`` and the DAGs' Spark Connect connection is the
    local server, that server is started too (if it is not up yet), and :func:`stop` stops
    it again.

    Raises:
        ServicesError: the port is taken, a component exited or did not come up within
            ``timeout`` seconds, or a DAG file does not import: one line naming the port
            and the log to read. What was started is stopped again.
    """
    home = Path(home).resolve()
    running = status(home)
    if running is not None:
        dead = [c for c in COMPONENTS if c not in running.pids]
        if dead or running.port != port:
            why = f"{', '.join(dead)} exited" if dead else f"not on port {port}"
            raise ServicesError(
                f"Airflow already runs on {home} at {running.url} ({why}): stop it first "
                "(regrow airflow down, make airflow-stop)"
            )
        return running
    if _read_state(home):  # a start that crashed, or services killed: undo what is left
        stop(home)
    _check_port_free(port, home)
    params = find_params(params)  # the same file for every component, and for stop()
    env = services_env(home, port, params, extra_env)
    settings = load_settings(params)
    ensure_db(env)
    _use_wal(env)
    services_dir(home).mkdir(parents=True, exist_ok=True)
    state: dict = {
        "port": port,
        "pids": {},
        "spark_started": False,
        "params": str(params),
    }
    started_at = _utc_now()
    try:
        if settings.airflow.spark_via == "connect" and _uses_local_server(env, settings):
            server = connect.local_server(settings)
            if not server.running():
                logger.info("starting the Spark Connect server at %s", server.url)
                connect.start(settings)
                state["spark_started"] = True
        _write_state(home, state)
        for component in COMPONENTS:
            state["pids"][component] = _spawn(component, port, env, home)
            _write_state(home, state)
        services = _services(home, port, state["pids"], "")
        _wait_until_up(services, env, started_at, timeout)
    except BaseException:
        stop(home)
        raise
    services.password = _read_password(home)
    return services


def stop(home: Path, timeout: float = 60.0) -> list[str]:
    """Stop what :func:`start` started on ``home``: each component's whole process group
    (its workers and task processes with it), SIGTERM then SIGKILL after ``timeout``
    seconds, and the Spark Connect server if ``start`` started it.

    Returns:
        The names of what was stopped (components, and ``spark-connect``); empty when
        nothing of ``home`` was running.
    """
    home = Path(home).resolve()
    state = _read_state(home)
    stopped: list[str] = []
    pids = {c: pid for c, pid in state.get("pids", {}).items() if _alive(pid)}
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_group_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in pids.values():
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
    stopped += list(pids)
    if state.get("spark_started"):
        settings = load_settings(Path(state["params"]))
        connect.close_sessions()
        if connect.stop(settings, timeout=timeout):
            stopped.append("spark-connect")
    for component in COMPONENTS:
        pid_file(home, component).unlink(missing_ok=True)
    _state_file(home).unlink(missing_ok=True)
    return stopped


def status(home: Path) -> Services | None:
    """The services running on ``home``; None when none of them runs. (One component
    that died leaves the others listed: ``pids`` has the live ones only.)"""
    home = Path(home).resolve()
    state = _read_state(home)
    pids = {c: pid for c, pid in state.get("pids", {}).items() if _alive(pid)}
    if not pids:
        return None
    return _services(home, state["port"], pids, _read_password(home))


# -- the CLI's environment ------------------------------------------------------------


def environment(home: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment in which the ``airflow`` CLI talks to the services running on
    ``home`` (their DB, port and params; ``extra_env`` as given to :func:`start`, which
    keeps no copy of it: it may hold connections' secrets)."""
    home = Path(home).resolve()
    state = _read_state(home)
    if not state or status(home) is None:
        raise ServicesError(f"no Airflow of regrow runs on {home}: run `regrow airflow up` first")
    return services_env(home, state["port"], Path(state["params"]), extra_env)


# -- starting ------------------------------------------------------------------------------


def _check_port_free(port: int, home: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError as err:
            raise ServicesError(
                f"the Airflow api-server cannot listen on {HOST}:{port}: the port is taken "
                f"({err.strerror}); pick another one with --port (make airflow AIRFLOW_PORT=...) "
                f"(its log would be {log_file(home, 'api-server')})"
            ) from None


def _use_wal(env: Mapping[str, str]) -> None:
    """Put the SQLite metadata DB in write-ahead-log mode (kept in the file): readers then
    never block the one writer. In SQLite's default mode the four components and an
    ``airflow`` CLI beside them wait on each other's reads and fail with "database is
    locked" on a busy machine."""
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(_db_file(env), timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")


def _uses_local_server(env: Mapping[str, str], settings) -> bool:
    """Whether the DAGs' Spark Connect connection is this project's local server."""
    name, value = spark_connect_connection(
        settings.airflow.spark_connect_conn_id, settings.spark.connect_port
    )
    return env.get(name) == value


def _spawn(component: str, port: int, env: Mapping[str, str], home: Path) -> int:
    log = log_file(home, component)
    with open(log, "ab") as out:
        out.write(f"--- {_utc_now()} regrow starts airflow {component}\n".encode())
        out.flush()
        process = subprocess.Popen(
            [_airflow_cli(), component, *_ARGS[component](port)],
            env=dict(env),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it whole
        )
    pid_file(home, component).write_text(f"{process.pid}\n")
    logger.info("airflow %s: pid %d, log %s", component, process.pid, log)
    return process.pid


def _wait_until_up(services: Services, env: Mapping[str, str], since: str, timeout: float):
    dag_ids = sorted(p.stem for p in DAGS_FOLDER.glob("regrow_*.py"))
    deadline = time.monotonic() + timeout
    waiting_for = "the api-server"
    while True:
        for component, pid in services.pids.items():
            if not _alive(pid):
                error = _last_error(services.log(component))
                raise ServicesError(
                    f"airflow {component} (port {services.port}) exited while starting"
                    f"{f' ({error})' if error else ''}: read {services.log(component)}"
                )
        health = _health(services.url)
        if health is None:
            waiting_for = "api-server"
        else:
            unhealthy = [
                c for c, key in (("scheduler", "scheduler"), ("triggerer", "triggerer"),
                                 ("dag-processor", "dag_processor"))
                if (health.get(key) or {}).get("status") != "healthy"
            ]  # fmt: skip
            if unhealthy:
                waiting_for = unhealthy[0]
            else:
                broken = _import_errors(env)
                if broken:
                    file, error = broken
                    raise ServicesError(
                        f"the DAG file {file} does not import ({error}): read "
                        f"{services.log('dag-processor')}"
                    )
                missing = _unparsed(env, dag_ids, since)
                if not missing:
                    return
                waiting_for = "dag-processor"
        if time.monotonic() > deadline:
            what = (
                f"the DAG processor did not parse {', '.join(missing)}"
                if waiting_for == "dag-processor" and health is not None
                else f"airflow {waiting_for} did not come up"
            )
            raise ServicesError(
                f"{what} in {timeout:.0f} s (port {services.port}): read "
                f"{services.log(waiting_for)}"
            )
        time.sleep(1.0)


def _health(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url + HEALTH_PATH, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _import_errors(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The first regrow DAG file with an import error, and its error's last line."""
    with contextlib.closing(sqlite3.connect(_db_file(env), timeout=60)) as db:
        rows = db.execute("SELECT filename, stacktrace FROM import_error").fetchall()
    for filename, stacktrace in rows:
        if Path(filename or "").name.startswith("regrow_"):
            lines = (stacktrace or "").strip().splitlines()
            return filename, lines[-1] if lines else "no trace"
    return None


def _unparsed(env: Mapping[str, str], dag_ids: list[str], since: str) -> list[str]:
    """The DAGs of ``dag_ids`` the DAG processor has not parsed since ``since``."""
    with contextlib.closing(sqlite3.connect(_db_file(env), timeout=60)) as db:
        rows = db.execute(
            f"SELECT dag_id FROM dag WHERE is_stale = 0 AND last_parsed_time >= ? "
            f"AND dag_id IN ({','.join('?' * len(dag_ids))})",
            (since, *dag_ids),
        ).fetchall()
    parsed = {row[0] for row in rows}
    return [d for d in dag_ids if d not in parsed]


def _last_error(log: Path) -> str:
    """The last line of ``log`` that reads like an error, shortened, or ''."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if any(word in line for word in ("Error", "error", "Exception", "address already")):
            return line.strip()[:200]
    return ""


# -- state ---------------------------------------------------------------------------------


def _services(home: Path, port: int, pids: dict[str, int], password: str) -> Services:
    return Services(
        home=home,
        port=port,
        url=f"http://{HOST}:{port}",
        username=USERNAME,
        password=password,
        password_file=password_file(home),
        pids=dict(pids),
    )


def _read_password(home: Path) -> str:
    try:
        return json.loads(password_file(home).read_text()).get(USERNAME, "")
    except (OSError, ValueError):
        return ""


def _state_file(home: Path) -> Path:
    return services_dir(home) / "state.json"


def _write_state(home: Path, state: dict) -> None:
    _state_file(home).write_text(json.dumps(state, indent=2) + "\n")


def _read_state(home: Path) -> dict:
    try:
        return json.loads(_state_file(home).read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is an ``airflow`` process (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _running(pid)  # no /proc (macOS): whether it can be signalled
    return _running(pid) and b"airflow" in cmdline


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True  # signalled fine, no /proc
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    # Only zombies left (reaped by their parent later, or by init): nothing runs.
    return any(_running(int(p.name)) for p in Path("/proc").glob("[0-9]*") if _pgid(p) == pgid)


def _pgid(proc: Path) -> int | None:
    try:
        return int(proc.joinpath("stat").read_text().rsplit(")", 1)[-1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)


def _db_file(env: Mapping[str, str]) -> str:
    return env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")


def _utc_now() -> str:
    # As SQLAlchemy stores a UTC datetime in SQLite: comparable as text.
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
