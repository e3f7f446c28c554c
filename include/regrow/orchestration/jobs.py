"""What every Spark job in ``jobs/`` shares: its command line, its context and its output.

A job is ``python jobs/<name>.py [--date YYYY-MM-DD [--to YYYY-MM-DD]] [--params
params.yaml] [--run-id ID]`` plus its own options (``--to``: every day of the range in this
one Spark application, as a day-by-day run writes them); it builds the stage context once,
calls one library stage with it, and prints the stage's report as JSON (the Airflow task
log shows it). Under Airflow the run id defaults to the DAG run's
(``AIRFLOW_CTX_DAG_RUN_ID``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from regrow.orchestration.context import setup_logging, stage_context
from regrow.orchestration.spark import SparkServerError
from regrow.settings import load_settings
from regrow.stage import new_run_id

logger = logging.getLogger(__name__)

# The option of every daily job: the day, passed to the stage as ``day``; with ``--to``,
# every day of the range, oldest first, in this one Spark application.
DAY_OPTION: dict[str, dict[str, Any]] = {
    "--date": {
        "dest": "day",
        "required": True,
        "type": dt.date.fromisoformat,
        "help": "the day, YYYY-MM-DD (the first of a range with --to)",
    },
    "--to": {
        "dest": "to",
        "default": None,
        "type": dt.date.fromisoformat,
        "help": "the last day of a range, YYYY-MM-DD (inclusive)",
    },
}


@dataclass(frozen=True)
class RangeReport:
    """The reports of a daily stage over a range of days."""

    reports: list[Any]

    def as_dict(self) -> dict[str, Any]:
        return {"days": [r.as_dict() for r in self.reports]}


def each_day(
    stage: Callable[..., Any], of_days: Callable[..., Callable[[dt.date], Any]] | None = None
) -> Callable[..., Any]:
    """``stage(ctx, day)`` for every day of ``day``..``to`` (``to`` None: ``day`` alone),
    with Spark's expressions interpreted if the days are small (:func:`interpreted_if_small`).
    ``of_days(ctx, days)``, when the stage has one, builds a range's days instead (small
    days computed together: :mod:`regrow.data.passes`)."""
    from regrow.data.backfill import interpreted_if_small

    def over_range(ctx: Any, day: dt.date, to: dt.date | None = None, **options: Any) -> Any:
        if to is not None and to < day:
            raise JobArgumentError(f"--to {to} is before --date {day}")
        days = [day + dt.timedelta(days=k) for k in range(((to or day) - day).days + 1)]
        with interpreted_if_small(ctx, days):
            if to is None:
                return stage(ctx, day, **options)
            if of_days is not None:
                build = of_days(ctx, days, **options)
                return RangeReport([build(d) for d in days])
            return RangeReport([stage(ctx, d, **options) for d in days])

    return over_range


class JobArgumentError(ValueError):
    """A job's arguments that cannot run (a range that ends before it starts)."""


def job_parser(doc: str, options: Mapping[str, Mapping[str, Any]]) -> argparse.ArgumentParser:
    """The parser of a job described by the first line of its ``doc``, with ``options``
    (``{flag: add_argument keywords}``) besides ``--params`` and ``--run-id``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    for flag, kwargs in options.items():
        parser.add_argument(flag, **kwargs)
    parser.add_argument(
        "--params", default=None, help="params.yaml (default: $REGROW_PARAMS or ./params.yaml)"
    )
    parser.add_argument(
        "--spark-remote",
        default=None,
        help="a Spark Connect server (sc://host:port) to run on (default: spark.remote of "
        "params.yaml, else $SPARK_REMOTE, else Spark in this process)",
    )
    parser.add_argument(
        "--run-id",
        default=os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or new_run_id(),
        help="recorded on every row written (default: the Airflow run id, else manual__<now>)",
    )
    return parser


def run_job(
    doc: str,
    stage: Callable[..., Any],
    options: Mapping[str, Mapping[str, Any]] = DAY_OPTION,
    argv: list[str] | None = None,
    expected: tuple[type[Exception], ...] = (),
    of_days: Callable[..., Callable[[dt.date], Any]] | None = None,
) -> int:
    """Parse the job's arguments, call ``stage(ctx, **options)`` and print its report.

    Options left unset (``None``) are not passed, so the stage's own defaults hold.
    ``of_days``: the daily stage's builder of a range's days (:func:`each_day`).
    Returns the exit code: 1 when the stage raised one of ``expected`` (logged as one
    error, e.g. a day blocked by its validation), else 0; anything else propagates.
    """
    args = vars(job_parser(doc, options).parse_args(argv))
    params, run_id, remote = args.pop("params"), args.pop("run_id"), args.pop("spark_remote")
    setup_logging()
    if "to" in args:  # a daily job: one day, or a range in this application
        stage = each_day(stage, of_days)
    settings = load_settings(params)
    if remote:
        settings = settings.model_copy(
            update={"spark": settings.spark.model_copy(update={"remote": remote})}
        )
    ctx = stage_context(settings, run_id)
    try:
        report = stage(ctx, **{k: v for k, v in args.items() if v is not None})
    except (*expected, JobArgumentError, SparkServerError) as err:
        logger.error("%s", err)
        return 1
    print(json.dumps(report.as_dict(), indent=2, default=str))
    return 0
