"""Spark job: ingest one day's landing files into bronze (spark-submit-able).

python jobs/ingest.py --date 2026-01-05 [--params params.yaml] [--run-id ID]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os

from regrow.ingest import ingest_day
from regrow.settings import load_settings
from regrow.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--date", required=True, type=dt.date.fromisoformat, help="day to ingest, YYYY-MM-DD"
    )
    parser.add_argument(
        "--params", default=None, help="params.yaml (default: $REGROW_PARAMS or ./params.yaml)"
    )
    parser.add_argument(
        "--run-id", default=os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"), help="recorded on every row"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(args.params)
    spark = get_spark(settings.spark)
    report = ingest_day(spark, settings, args.date, run_id=args.run_id)
    print(json.dumps(report.as_dict(), indent=2))


if __name__ == "__main__":
    main()
