"""Spark job: ingest one day's landing files into bronze (spark-submit-able).

    python jobs/ingest.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Rows that break the contract or a row-level expectation go to bronze.quarantine with the
reason; the report counts both and lists the reasons.
"""

import sys

from regrow.data.ingest import ingest_day
from regrow.orchestration.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, ingest_day, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
