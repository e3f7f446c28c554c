"""``regrow spark start|stop|status``: the local Spark Connect server that DAG tasks, the
CLI, DVC stages and the demo run their Spark work on (one warm JVM)."""

from __future__ import annotations

from typing import Annotated

import typer

from regrow.cli.common import ParamsOption, app, fail, settings_of
from regrow.settings import ConfigError

spark_app = typer.Typer(
    help="The local Spark Connect server (127.0.0.1, spark.connect_port): one warm JVM for "
    "every Spark job. Point the CLI at it with SPARK_REMOTE=sc://127.0.0.1:<port>.",
    no_args_is_help=True,
)
app.add_typer(spark_app, name="spark")

PortOption = Annotated[
    int | None, typer.Option(help="Port (default: spark.connect_port).", show_default=False)
]


@spark_app.command("start")
def start(params: ParamsOption = None, port: PortOption = None) -> None:
    """Start the server (no-op if it already answers) and print its URL."""
    from regrow.orchestration import connect

    try:
        settings = settings_of(params)
        was_running = connect.local_server(settings, port).running()
        server = connect.start(settings, port)
    except ConfigError as err:
        raise fail(str(err)) from None
    state = "already running" if was_running else f"started (pid {server.pid()})"
    typer.echo(f"Spark Connect server {state} at {server.url}; log: {server.log_file}")
    typer.echo(f"use it: export SPARK_REMOTE={server.url}")


@spark_app.command("stop")
def stop(params: ParamsOption = None, port: PortOption = None) -> None:
    """Stop the server this project started."""
    from regrow.orchestration import connect

    try:
        settings = settings_of(params)
        stopped = connect.stop(settings, port)
    except ConfigError as err:
        raise fail(str(err)) from None
    server = connect.local_server(settings, port)
    typer.echo(f"stopped the Spark Connect server at {server.url}" if stopped else
               f"no Spark Connect server of this project runs at {server.url}")  # fmt: skip


@spark_app.command("status")
def status(params: ParamsOption = None, port: PortOption = None) -> None:
    """Whether the server answers (exit code 1 when it does not)."""
    from regrow.orchestration import connect

    try:
        server = connect.local_server(settings_of(params), port)
    except ConfigError as err:
        raise fail(str(err)) from None
    if not server.running():
        raise fail(f"no Spark Connect server answers at {server.url}: run `regrow spark start`")
    pid = server.pid()
    typer.echo(f"Spark Connect server running at {server.url}" + (f" (pid {pid})" if pid else ""))
