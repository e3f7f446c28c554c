"""Backfills the Airflow way, on the services of :mod:`regrow.orchestration.airflow_services`:
``airflow backfill create`` records the runs, their scheduler runs them (one day after
another with ``airflow.max_active_runs`` 1), and the DAGs downstream follow through Assets.
``regrow airflow backfill`` and ``make airflow-backfill`` call these::

    env = airflow_services.environment(Path("airflow_home"))
    ids = create_backfill(env, "regrow_ingest", dt.date(2026, 1, 1), dt.date(2026, 1, 7))
    result = wait_for_backfill(env, ids)   # result.runs: {day: "success", ...}

(:func:`regrow.orchestration.airflow_local.backfill` is the other way: no services, one
``airflow dags test`` per day.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from regrow.orchestration.airflow_local import _airflow_cli
from regrow.orchestration.airflow_services import ServicesError
from regrow.settings import PARAMS_ENV, load_settings

logger = logging.getLogger(__name__)

# `airflow backfill create` that found the DB locked before it created anything is run
# again, this many times.
_LOCKED_RETRIES = 3


@dataclass
class BackfillRun:
    """A backfill of the running services: its ids (one, or more when Airflow created it in
    parts, see :func:`create_backfill`) and the state of each day's run."""

    backfill_ids: list[int]
    dag_id: str
    runs: dict[dt.date, str]  # logical date -> run state
    completed: bool

    @property
    def failed(self) -> list[dt.date]:
        return [day for day, state in self.runs.items() if state != "success"]


def create_backfill(
    env: Mapping[str, str],
    dag_id: str,
    start: dt.date,
    end: dt.date,
    reprocess: str = "none",
    max_active_runs: int | None = None,
) -> list[int]:
    """``airflow backfill create`` for ``start``..``end`` (inclusive): the scheduler of the
    services runs it. ``reprocess`` is ``--reprocess-behavior`` (none, failed, completed:
    which days that ran already run again). ``max_active_runs`` defaults to
    ``airflow.max_active_runs`` (the backfill's own default would be 10 at once).

    On SQLite, Airflow's backfill creation (a commit per run) can fail with "database is
    locked" when the scheduler commits between its read and its write (SQLite gives up at
    once there, whatever the busy timeout). It is then run again, up to
    ``_LOCKED_RETRIES`` times; a backfill left with part of its runs is first marked
    complete (its runs still run: the scheduler starts a backfill's runs whatever its
    ``completed_at``), so that Airflow accepts the next one, which creates the rest.

    Returns:
        The ids of the backfills that hold the range's runs, oldest first (usually one).

    Raises:
        ServicesError: Airflow refused it (no day in the range, one already running...).
    """
    if max_active_runs is None:
        max_active_runs = load_settings(env.get(PARAMS_ENV)).airflow.max_active_runs
    command = [
        _airflow_cli(), "backfill", "create", "--dag-id", dag_id,
        "--from-date", start.isoformat(), "--to-date", end.isoformat(),
        "--reprocess-behavior", reprocess, "--max-active-runs", str(max_active_runs),
    ]  # fmt: skip
    created: list[int] = []
    for attempt in range(_LOCKED_RETRIES + 1):
        before = _last_backfill(env, dag_id)
        done = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
        output = done.stdout + done.stderr
        after = _last_backfill(env, dag_id)
        if after != before:
            created.append(after)
        if done.returncode == 0 or (created and "No runs to create" in output):
            break
        if "database is locked" not in output or attempt == _LOCKED_RETRIES:
            raise ServicesError(
                f"airflow backfill create {dag_id} {start}..{end} failed: {_reason(done)}"
                + (f" (backfill {created[-1]} holds part of its runs)" if created else "")
            )
        if after != before:
            _close(env, after)
        logger.info("airflow backfill create: the metadata DB was locked; trying again")
        time.sleep(2.0 * (attempt + 1))
    logger.info("backfill %s of %s: %s..%s", created, dag_id, start, end)
    return created


def _reason(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    reason = next(
        (line for line in reversed(lines) if "Error" in line or "Warning" in line),
        lines[-1] if lines else f"exit {done.returncode}",
    )
    return reason.strip()[:300]


def _last_backfill(env: Mapping[str, str], dag_id: str) -> int | None:
    with contextlib.closing(sqlite3.connect(_db_file(env), timeout=60)) as db:
        return db.execute("SELECT max(id) FROM backfill WHERE dag_id = ?", (dag_id,)).fetchone()[0]


def _close(env: Mapping[str, str], backfill_id: int) -> None:
    """Mark a backfill complete, as the scheduler does once its runs are done."""
    with contextlib.closing(sqlite3.connect(_db_file(env), timeout=60)) as db, db:
        db.execute(
            "UPDATE backfill SET completed_at = strftime('%Y-%m-%d %H:%M:%f000', 'now') "
            "WHERE id = ? AND completed_at IS NULL",
            (backfill_id,),
        )


def backfill_state(env: Mapping[str, str], backfill_ids: int | list[int]) -> BackfillRun:
    """The runs (by logical date) of one backfill or of the parts of one (see
    :func:`create_backfill`), and whether they are done (the scheduler marked every part
    complete and no run is queued or running)."""
    ids = [backfill_ids] if isinstance(backfill_ids, int) else list(backfill_ids)
    marks = ",".join("?" * len(ids))
    with contextlib.closing(sqlite3.connect(_db_file(env), timeout=60)) as db:
        backfills = db.execute(
            f"SELECT dag_id, completed_at FROM backfill WHERE id IN ({marks})", ids
        ).fetchall()
        rows = db.execute(
            f"SELECT substr(logical_date, 1, 10), state FROM dag_run WHERE backfill_id IN ({marks}) "
            "ORDER BY logical_date",
            ids,
        ).fetchall()
    runs = {dt.date.fromisoformat(day): state for day, state in rows}
    completed = all(done is not None for _, done in backfills) and not any(
        state in ("queued", "running") for state in runs.values()
    )
    return BackfillRun(ids, backfills[0][0], runs, completed)


def wait_for_backfill(
    env: Mapping[str, str],
    backfill_ids: int | list[int],
    timeout: float | None = None,
    on_change: Callable[[BackfillRun], None] | None = None,
) -> BackfillRun:
    """Wait until the scheduler has finished the backfill (every run succeeded or failed).

    Raises:
        ServicesError: it did not finish within ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        state = backfill_state(env, backfill_ids)
        if on_change is not None and state.runs != seen:
            on_change(state)
        seen = state.runs
        if state.completed:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise ServicesError(
                f"backfill {state.backfill_ids} of {state.dag_id} did not finish in "
                f"{timeout:.0f} s: " + ", ".join(f"{day} {run}" for day, run in state.runs.items())
            )
        time.sleep(2.0)


def _db_file(env: Mapping[str, str]) -> str:
    return env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
