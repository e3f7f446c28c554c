"""Spark job: a range of days, ingest -> validate -> features -> labels -> validate, in one
Spark application (spark-submit-able).

    python jobs/backfill.py --from 2026-01-01 --to 2026-12-31 [--params params.yaml]

The whole range is checked first (a reversed range, a day without landing files: nothing
is written). A day blocked by its validation stops the range there and fails the job
(exit 1), the days before it done.
"""

import datetime as dt
import sys

from regrow.data.backfill import BackfillError, backfill
from regrow.orchestration.jobs import run_job

OPTIONS = {
    "--from": {"dest": "first", "required": True, "type": dt.date.fromisoformat,
               "help": "the first day, YYYY-MM-DD"},
    "--to": {"dest": "last", "required": True, "type": dt.date.fromisoformat,
             "help": "the last day, YYYY-MM-DD (inclusive)"},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, backfill, OPTIONS, argv=argv, expected=(BackfillError,))


if __name__ == "__main__":
    sys.exit(main())
