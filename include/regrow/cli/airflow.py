"""``regrow dags test``: run a DAG locally with ``airflow dags test``, one run per day."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from regrow.cli.common import ParamsOption, dags_app, days_of, fail, settings_of
from regrow.settings import ConfigError, find_params


@dags_app.command("test")
def dags_test(
    dag_id: Annotated[str, typer.Argument(help="DAG id, e.g. regrow_ingest.")],
    date: Annotated[
        dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Logical date of the run.")
    ],
    to: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day of a range (inclusive)."),
    ] = None,
    params: ParamsOption = None,
    airflow_home: Annotated[
        Path, typer.Option(help="AIRFLOW_HOME (SQLite metadata DB inside).")
    ] = Path(".airflow"),
) -> None:
    """Run a DAG for one day or a range of days with `airflow dags test` (one run per day)."""
    from regrow.orchestration import connect
    from regrow.orchestration.airflow_local import (
        airflow_env,
        check_logical_dates,
        ensure_db,
        task_states,
    )
    from regrow.orchestration.airflow_local import dags_test as run_dag

    days = days_of(date, to)
    try:
        settings = settings_of(params)
        check_logical_dates(settings.airflow, days)
    except ConfigError as err:
        raise fail(str(err)) from None
    env = airflow_env(airflow_home.resolve(), params=find_params(params))
    ensure_db(env)
    # The DAG's Spark jobs run on the local Spark Connect server: started for these runs
    # unless it is already up (then left running), stopped after them.
    server = (
        connect.running(settings)
        if settings.airflow.spark_via == "connect"
        else contextlib.nullcontext()
    )
    try:
        with server:
            for day in days:
                result = run_dag(dag_id, day, env)
                code = result.returncode
                typer.echo(f"{dag_id} {day}: {'success' if code == 0 else f'FAILED (exit {code})'}")
                if code != 0:
                    typer.echo(result.stdout[-4000:] if result.stdout else "", err=True)
                    raise typer.Exit(code=1)
                if not task_states(dag_id, day, env):
                    raise fail(f"{dag_id} {day}: the run has no task: nothing was done")
    except ConfigError as err:  # the server did not start (its log's end is in the message)
        raise fail(str(err)) from None
