"""Spark job: run the Great Expectations gates on one day's tables (spark-submit-able).

    python jobs/validate.py --date 2026-01-05 [--table bronze.events ...] [--params params.yaml]

Without --table, the bronze tables. Exits non-zero when a critical expectation fails: the
day is blocked, and the log names each failure and the Data Docs page.
"""

import sys

from regrow.orchestration.jobs import DAY_OPTION, run_job
from regrow.validation import ValidationError, validate_day

TABLE_OPTION = {
    "--table": {"dest": "tables", "action": "append", "help": "table to validate (repeatable)"}
}


def main(argv: list[str] | None = None) -> int:
    return run_job(
        __doc__,
        validate_day,
        {**DAY_OPTION, **TABLE_OPTION},
        expected=(ValidationError,),
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
