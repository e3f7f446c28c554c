"""What every ``regrow`` command shares: the Typer apps, the common options, loading the
settings and the stage context, and turning a user's problem into one line on stderr.

Commands import the library inside their bodies: ``regrow --help`` and a typo answer in
about a second, instead of paying for pandas, pyarrow and the rest on every call.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from regrow.cli.errors import Commands, debugging, echo_error, explain, set_debug
from regrow.settings import Settings, load_settings

if TYPE_CHECKING:
    import pyarrow as pa

    from regrow.stage import StageContext

app = typer.Typer(
    help="regrow: a batch ML system that keeps a model fresh by itself.\n\n"
    "Every command reads params.yaml (--params, else $REGROW_PARAMS, else ./params.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Commands,
)


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="REGROW_DEBUG",
            help="On an error, show its traceback; also show regrow's INFO log and Spark's "
            "own log on stderr.",
        ),
    ] = False,
) -> None:
    set_debug(debug)


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
KeepGoingOption = Annotated[
    bool,
    typer.Option(
        "--keep-going",
        help="In a range, go on past a day that fails; the failed days and why are listed at "
        "the end (exit code 1).",
    ),
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
    """params.yaml, validated; logging set up for a command: warnings on stderr (INFO
    lines too with ``--debug``)."""
    from regrow.orchestration.context import setup_logging

    setup_logging()
    logging.getLogger().setLevel(logging.INFO if debugging() else logging.WARNING)
    return load_settings(params)


def context_of(
    params: Path | None, run_id: str | None = None, actor: str | None = None
) -> StageContext:
    """The stage context of a command (Spark and the registry are made on first use).

    Spark's own output (log4j, the JVM's warnings) goes to ``spark.server_dir``/driver.log
    instead of the command's stderr, unless ``--debug``.
    """
    from regrow.orchestration.context import stage_context

    settings = settings_of(params)
    jvm_log = (
        None if debugging() else Path(settings.resolve(settings.spark.server_dir)) / "driver.log"
    )
    return stage_context(settings, run_id, actor=actor, jvm_log=jvm_log)


def fail(message: str) -> typer.Exit:
    """One red line on stderr and exit code 1: raise what this returns."""
    echo_error(message)
    return typer.Exit(code=1)


class DayFailed(Exception):
    """A day of a range that ran but must not count as done (e.g. its ingest quarantined
    more than the gate allows); the message says why."""


def run_days(
    days: Sequence[dt.date], run: Callable[[dt.date], None], keep_going: bool = False
) -> None:
    """``run(day)`` for each day, oldest first. A day that fails stops the range with one
    line naming it, or with ``keep_going`` is reported and skipped; then every failed day
    is listed with its reason and the command exits 1."""
    failed: list[tuple[dt.date, str]] = []
    for i, day in enumerate(days):
        try:
            run(day)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:
            if debugging() and not keep_going:
                raise
            message = explain(err)
            message = message if str(day) in message else f"{day}: {message}"
            if not keep_going:
                left = len(days) - i - 1
                more = (
                    f" ({left} later day(s) not run: --keep-going goes on past it)" if left else ""
                )
                raise fail(message + more) from None
            if debugging():
                import traceback

                traceback.print_exc()
            echo_error(message)
            failed.append((day, message))
    if failed:
        reasons = "; ".join(
            f"{day} ({_shorten(message.removeprefix(f'{day}: '))})" for day, message in failed
        )
        raise fail(f"{len(failed)} of {len(days)} day(s) failed: {reasons}")


def _shorten(text: str, width: int = 120) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def require_date_for_to(date: dt.datetime | None, to: dt.datetime | None) -> None:
    """``--to`` ends the range that ``--date`` starts: without ``--date`` (alone, or
    beside ``--all``, ``--latest`` or ``--new``) it would be ignored, so it is an error."""
    if to is not None and date is None:
        raise fail(
            "--to ends a range that --date starts: give --date D1 --to D2, or leave --to out"
        )


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
