"""``regrow spark start|stop|status``: the local Spark Connect server that DAG tasks, the
CLI, DVC stages and the demo run their Spark work on (one warm JVM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regrow.cli.common import ParamsOption, app, fail, settings_of

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
    """Start the server (no-op if a Spark Connect server already answers at its port; another
    program there is an error naming the port) and print its URL."""
    from regrow.orchestration import connect

    settings = settings_of(params)
    was_running = connect.local_server(settings, port).running()
    server = connect.start(settings, port)
    state = "already running" if was_running else f"started (pid {server.pid()})"
    typer.echo(f"Spark Connect server {state} at {server.url}; log: {server.log_file}")
    typer.echo(f"use it: export SPARK_REMOTE={server.url}")


@spark_app.command("stop")
def stop(params: ParamsOption = None, port: PortOption = None) -> None:
    """Stop the server this project started."""
    from regrow.orchestration import connect

    settings = settings_of(params)
    stopped = connect.stop(settings, port)
    server = connect.local_server(settings, port)
    typer.echo(f"stopped the Spark Connect server at {server.url}" if stopped else
               f"no Spark Connect server of this project runs at {server.url}")  # fmt: skip


@spark_app.command("status")
def status(params: ParamsOption = None, port: PortOption = None) -> None:
    """Whether the server answers (exit code 1 when it does not)."""
    from regrow.orchestration import connect

    server = connect.local_server(settings_of(params), port)
    if not server.running():
        raise fail(f"no Spark Connect server answers at {server.url}: run `regrow spark start`")
    if not server.serves():
        raise fail(server.not_served())
    pid = server.pid()
    typer.echo(f"Spark Connect server running at {server.url}" + (f" (pid {pid})" if pid else ""))


jars_app = typer.Typer(
    help="The pinned JVM jars regrow adds to Spark: Delta Lake's connector (the delta-spark "
    "engine) and hadoop-aws (s3a://). `make setup` fetches them.",
    no_args_is_help=True,
)
app.add_typer(jars_app, name="jars")


@jars_app.command("fetch")
def jars_fetch(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put them (default: $REGROW_JARS_DIR, else "
                     "~/.cache/regrow/jars/spark-<line>).", show_default=False),
    ] = None,
) -> None:  # fmt: skip
    """Download the jars not yet there (each checked against its pinned SHA-1)."""
    from regrow.orchestration import jars

    fetched: list[str] = []

    def echo(message: str) -> None:
        fetched.append(message)
        typer.echo(message)

    paths = jars.fetch(directory, echo=echo)
    typer.echo(f"{len(paths)} jars for Spark {jars.SPARK_LINE} in {paths[0].parent}: "
               "lakehouse.engine auto picks delta-spark")  # fmt: skip
    if fetched:
        typer.echo("a Spark Connect server started before this has none: regrow spark stop")


@jars_app.command("status")
def jars_status() -> None:
    """Which jars are there, and the engine ``lakehouse.engine: auto`` picks with them."""
    from regrow.orchestration import jars

    directory = jars.jars_dir()
    for artifact in jars.ARTIFACTS:
        state = "ok" if jars.is_fetched(artifact, directory) else "missing"
        typer.echo(f"{state:8} {artifact.role:6} {artifact.coordinate}")
    engine = "delta-spark" if jars.present(jars.DELTA, directory) else "delta-rs"
    typer.echo(f"in {directory}: lakehouse.engine auto picks {engine}")
