"""What every spark-submit job in ``jobs/`` shares: its command line and logging.

A job is ``python jobs/<name>.py --date YYYY-MM-DD [--params params.yaml] [--run-id ID]``;
under Airflow the run id defaults to the DAG run's (``AIRFLOW_CTX_DAG_RUN_ID``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from typing import Any


def day_job_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a one-day job, described by the first line of its ``doc``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument(
        "--date", required=True, type=dt.date.fromisoformat, help="the day, YYYY-MM-DD"
    )
    parser.add_argument(
        "--params", default=None, help="params.yaml (default: $REGROW_PARAMS or ./params.yaml)"
    )
    parser.add_argument(
        "--run-id",
        default=os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
        or f"manual__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}",
        help="recorded on every row written (default: the Airflow run id, else manual__<now>)",
    )
    return parser


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("py4j", "great_expectations"):  # GX logs each function it registers
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_day_job(doc: str, build: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Parse a one-day job's arguments, then ``build(spark, settings, day, run_id,
    lakehouse)`` and print its report as JSON (the task log shows it)."""
    from regrow.orchestration.spark import get_spark
    from regrow.settings import load_settings
    from regrow.storage.lakehouse import Lakehouse

    args = day_job_parser(doc).parse_args(argv)
    setup_logging()
    settings = load_settings(args.params)
    lakehouse = Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))
    report = build(get_spark(settings.spark), settings, args.date, args.run_id, lakehouse)
    print(json.dumps(report.as_dict(), indent=2))
