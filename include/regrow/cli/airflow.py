"""``regrow dags test``: run a DAG locally with ``airflow dags test``, one run per day;
``regrow airflow up|down|status``: a real local Airflow with its services."""

from __future__ import annotations

import contextlib
import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from regrow.cli.common import ParamsOption, app, dags_app, days_of, fail, settings_of
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


airflow_app = typer.Typer(
    help="A real local Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor "
    "on SQLite) with regrow's DAGs and plugin: the UI, schedules, Assets and backfills.",
    no_args_is_help=True,
)
app.add_typer(airflow_app, name="airflow")

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="AIRFLOW_HOME of the services (default: airflow_home/ of the project).",
        show_default=False,
    ),
]


def _home(home: Path | None) -> Path:
    from regrow.orchestration.airflow_local import PROJECT_HOME

    return (home or PROJECT_HOME).resolve()


@airflow_app.command("up")
def airflow_up(
    port: Annotated[int, typer.Option(help="Port of the UI and API (127.0.0.1).")] = 8080,
    params: ParamsOption = None,
    home: HomeOption = None,
) -> None:
    """Start Airflow in the background and wait until it runs regrow's DAGs."""
    from regrow.orchestration import airflow_services

    try:
        settings_of(params)  # params.yaml checked before anything starts
        services = airflow_services.start(_home(home), port, find_params(params))
    except (ConfigError, airflow_services.ServicesError) as err:
        raise fail(str(err)) from None
    _echo_services(services)
    typer.echo("stop it: regrow airflow down (make airflow-stop)")


@airflow_app.command("down")
def airflow_down(home: HomeOption = None) -> None:
    """Stop what `regrow airflow up` started (and the Spark Connect server if it started it)."""
    from regrow.orchestration import airflow_services

    where = _home(home)
    stopped = airflow_services.stop(where)
    typer.echo(f"stopped {', '.join(stopped)} ({where})" if stopped else
               f"no Airflow of regrow runs on {where}")  # fmt: skip


@airflow_app.command("status")
def airflow_status(home: HomeOption = None) -> None:
    """Whether Airflow runs, where, and its components (exit code 1 when it does not)."""
    from regrow.orchestration import airflow_services

    services = airflow_services.status(_home(home))
    if services is None:
        raise fail(f"no Airflow of regrow runs on {_home(home)}: run `regrow airflow up`")
    dead = [c for c in airflow_services.COMPONENTS if c not in services.pids]
    _echo_services(services)
    if dead:
        raise fail(f"{', '.join(dead)} exited: read {services.log(dead[0])}; "
                   "restart: regrow airflow down && regrow airflow up")  # fmt: skip


def _echo_services(services) -> None:
    pids = ", ".join(f"{c} {pid}" for c, pid in services.pids.items())
    typer.echo(f"Airflow runs at {services.url} ({pids})")
    typer.echo(f"login: user {services.username}, password in {services.password_file}")
    typer.echo(f"logs: {services.log('scheduler').parent}/<component>.log")


class Reprocess(StrEnum):
    none = "none"
    failed = "failed"
    completed = "completed"


@airflow_app.command("backfill")
def airflow_backfill(
    date_from: Annotated[
        dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First logical date.")
    ],
    to: Annotated[
        dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Last logical date (inclusive).")
    ],
    dag_id: Annotated[str, typer.Option(help="The DAG to backfill.")] = "regrow_ingest",
    reprocess: Annotated[
        Reprocess,
        typer.Option(help="Days that ran already: none (skip them), failed, completed (all)."),
    ] = Reprocess.none,
    wait: Annotated[bool, typer.Option(help="Wait until every run has finished.")] = True,
    home: HomeOption = None,
) -> None:
    """Backfill a DAG the Airflow way (`airflow backfill create`) on the running services:
    their scheduler runs the days, and downstream DAGs follow through Assets."""
    from regrow.orchestration import airflow_backfills, airflow_services

    start, end = date_from.date(), to.date()
    try:
        env = airflow_services.environment(_home(home))
        backfill_ids = airflow_backfills.create_backfill(env, dag_id, start, end, reprocess.value)
    except (ConfigError, airflow_services.ServicesError) as err:
        raise fail(str(err)) from None
    url = f"{env['AIRFLOW__API__BASE_URL']}/dags/{dag_id}"
    name = ", ".join(map(str, backfill_ids))
    typer.echo(f"backfill {name} of {dag_id} {start}..{end} created: {url}")
    if not wait:
        return

    def progress(state) -> None:
        runs = ", ".join(f"{day} {run}" for day, run in state.runs.items())
        typer.echo(f"  {runs}")

    result = airflow_backfills.wait_for_backfill(env, backfill_ids, on_change=progress)
    if result.failed:
        raise fail(f"backfill {name}: {len(result.failed)} of {len(result.runs)} runs "
                   f"did not succeed ({', '.join(map(str, result.failed))}): see {url}")  # fmt: skip
    typer.echo(f"backfill {name}: {len(result.runs)} runs succeeded")
