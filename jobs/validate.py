"""Spark job: run the Great Expectations gates on one day's tables (spark-submit-able).

    python jobs/validate.py --date 2026-01-05 [--table bronze.events ...] [--params params.yaml]

Without --table, the bronze tables. Exits non-zero when a critical expectation fails: the
day is blocked.
"""

from __future__ import annotations

import logging
import sys

from regrow.orchestration.jobs import day_job_parser, setup_logging
from regrow.orchestration.spark import get_spark
from regrow.settings import load_settings
from regrow.storage.lakehouse import Lakehouse
from regrow.validation import ValidationError, validate_day


def main(argv: list[str] | None = None) -> int:
    parser = day_job_parser(__doc__)
    parser.add_argument("--table", action="append", help="table to validate (repeatable)")
    args = parser.parse_args(argv)
    setup_logging()
    settings = load_settings(args.params)
    lakehouse = Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))
    kwargs = {"tables": args.table} if args.table else {}
    try:
        validate_day(
            get_spark(settings.spark), settings, lakehouse, args.date, args.run_id, **kwargs
        )
    except ValidationError as err:
        logging.getLogger("regrow.validate").error(
            "%s\nData Docs: %s", err, err.outcome.data_docs_path
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
