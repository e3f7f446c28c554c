"""Spark job: build one day's silver.features from bronze.events (spark-submit-able).

    python jobs/features.py --date 2026-01-05 [--to 2026-01-31] [--params params.yaml] [--run-id ID]

Reads the day's bronze.events partition and the earlier days its longest window reaches;
a missing one stops the job with its name. Replaces the day's partition. A range (--to)
computes its small days together, then writes each day's partition.
"""

import sys

from regrow.data.features import build_features, features_of_days
from regrow.orchestration.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, build_features, argv=argv, of_days=features_of_days)


if __name__ == "__main__":
    sys.exit(main())
