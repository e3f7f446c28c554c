"""Spark job: build one day's silver.features from bronze.events (spark-submit-able).

    python jobs/features.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Reads the day's bronze.events partition and the earlier days its longest window reaches;
a missing one stops the job with its name. Replaces the day's partition.
"""

import sys

from regrow.data.features import build_features
from regrow.orchestration.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, build_features, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
