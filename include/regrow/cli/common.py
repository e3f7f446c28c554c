"""What every ``regrow`` command shares: the Typer apps, the common options, loading the
settings and the stage context, and turning a user's problem into one line on stderr.

Commands import the library inside their bodies: ``regrow --help`` and a typo answer in
about a second, instead of paying for pandas, pyarrow and the rest on every call.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regrow.settings import Settings, load_settings

if TYPE_CHECKING:
    import pyarrow as pa

    from regrow.stage import StageContext

app = typer.Typer(
    help="regrow: a batch ML system that keeps a model fresh by itself.\n\n"
    "Every command reads params.yaml (--params, else $REGROW_PARAMS, else ./params.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
expectations_app = typer.Typer(
    help="Great Expectations suites kept in git (validation.expectations_dir).",
    no_args_is_help=True,
)
app.add_typer(expectations_app, name="expectations")
dags_app = typer.Typer(
    help="Run regrow's Airflow DAGs locally (SQLite, no services).", no_args_is_help=True
)
app.add_typer(dags_app, name="dags")


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="params.yaml to use.", show_default=False)
]
DateOption = Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day to build.")]
ToOption = Annotated[
    dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day of a range (inclusive).")
]
AllOption = Annotated[
    bool, typer.Option("--all", help="Every day that bronze.events has, oldest first.")
]
RunIdOption = Annotated[str | None, typer.Option(help="Run id recorded on every row.")]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
LimitOption = Annotated[int, typer.Option(help="Rows to print with --format table.")]


def settings_of(params: Path | None) -> Settings:
    """params.yaml, validated; logging set up for a command."""
    from regrow.orchestration.context import setup_logging

    setup_logging()
    return load_settings(params)


def context_of(
    params: Path | None, run_id: str | None = None, actor: str | None = None
) -> StageContext:
    """The stage context of a command (Spark and the registry are made on first use)."""
    from regrow.orchestration.context import stage_context

    return stage_context(settings_of(params), run_id, actor=actor)


def fail(message: str) -> typer.Exit:
    """One red line on stderr and exit code 1: raise what this returns."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def days_of(date: dt.datetime, to: dt.datetime | None) -> list[dt.date]:
    """The days from ``--date`` to ``--to`` (inclusive), oldest first."""
    first, last = date.date(), (to or date).date()
    if last < first:
        raise fail(f"--to {last} is before --date {first}")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def echo_rows(rows: pa.Table, format: Format, limit: int) -> None:
    """Arrow rows as an aligned table (at most ``limit`` rows), CSV or JSON lines."""
    frame = rows.to_pandas()
    if format is Format.csv:
        typer.echo(frame.to_csv(index=False), nl=False)
    elif format is Format.json:
        typer.echo(frame.to_json(orient="records", lines=True, date_format="iso"), nl=False)
    else:
        with_limit = frame.head(limit)
        typer.echo(with_limit.to_string(index=False))
        if len(frame) > limit:
            typer.echo(f"... {len(frame) - limit} more rows (use --limit or --format csv)")
