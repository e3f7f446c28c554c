"""``regrow`` commands that read the lakehouse and the tracking store: tables, history,
query and the MLflow UI."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from regrow.cli.common import (
    Format,
    FormatOption,
    LimitOption,
    ParamsOption,
    app,
    context_of,
    echo_rows,
    fail,
    settings_of,
)


@app.command()
def tables(params: ParamsOption = None) -> None:
    """List every table: name, Delta version, row count, partitioning and location."""
    lakehouse = context_of(params).lakehouse
    infos = lakehouse.tables()
    if not infos:
        typer.echo(f"no tables under {lakehouse.root}")
        return
    width = max(len(i.table) for i in infos)
    typer.echo(f"{'table':<{width}}  {'version':>7}  {'rows':>10}  partitioned by / location")
    for info in infos:
        typer.echo(
            f"{info.table:<{width}}  {info.version:>7}  {info.rows:>10}  "
            f"{','.join(info.partition_by) or '-'}  {info.uri}"
        )


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="Table name, e.g. bronze.events.")],
    params: ParamsOption = None,
    limit: Annotated[int, typer.Option(help="Newest commits to show.")] = 20,
) -> None:
    """Show a table's Delta commits, newest first (version, time, operation, metrics)."""

    commits = context_of(params).lakehouse.history(table, limit)
    for c in commits:
        when = dt.datetime.fromtimestamp(c["timestamp"] / 1000, dt.UTC).isoformat(
            timespec="seconds"
        )
        extra = {k: v for k, v in c.items() if k.startswith("regrow.")}
        typer.echo(f"v{c['version']:<5} {when}  {c.get('operation', '?'):<14} {json.dumps(extra)}")


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help='SQL over the tables, e.g. "SELECT count(*) FROM bronze.events".')
    ],
    params: ParamsOption = None,
    format: FormatOption = Format.table,
    limit: LimitOption = 50,
) -> None:
    """Run SQL (DuckDB) over the Delta tables, named layer.name (bronze.events ...).

    Only the tables the query names are loaded. Examples:
    regrow query "SELECT event_date, count(*) FROM bronze.events GROUP BY 1 ORDER BY 1"
    regrow query "SELECT model_alias, model_version, avg(score), sum(decision::int)
    FROM gold.predictions WHERE event_date = '2026-01-30' GROUP BY ALL"
    """

    result = context_of(params).lakehouse.sql(sql)
    echo_rows(result, format, limit)


@app.command("mlflow-ui")
def mlflow_ui(
    params: ParamsOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Open the MLflow UI on the project's tracking store (mlflow.tracking_uri)."""
    import os
    import sys

    from regrow.model.registry import artifact_location, tracking_uri

    settings = settings_of(params)
    uri = tracking_uri(settings)
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "file:")) and "://" in uri:
        raise fail(f"mlflow.tracking_uri is a server ({uri}): open it in a browser instead")
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} for {uri} (Ctrl-C stops it)")
    # MLflow 3's server also starts its job runner (a supervisor and seven huey consumers,
    # each importing MLflow) for its GenAI jobs, which regrow never submits: 10 processes,
    # 2.5 GB of RSS and 21 CPU-s at start instead of 2, 0.5 GB and 5 CPU-s (measured on 2
    # cores, docs/operations.md). Set the variable to true to have them.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--default-artifact-root", artifact_location(settings),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    os.execv(sys.executable, command)
