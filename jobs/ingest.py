"""Spark job: ingest one day's landing files into bronze (spark-submit-able).

python jobs/ingest.py --date 2026-01-05 [--params params.yaml] [--run-id ID]
"""

from __future__ import annotations

import json

from regrow.data.ingest import ingest_day
from regrow.orchestration.jobs import day_job_parser, setup_logging
from regrow.orchestration.spark import get_spark
from regrow.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    args = day_job_parser(__doc__).parse_args(argv)
    setup_logging()
    settings = load_settings(args.params)
    report = ingest_day(get_spark(settings.spark), settings, args.date, run_id=args.run_id)
    print(json.dumps(report.as_dict(), indent=2))


if __name__ == "__main__":
    main()
