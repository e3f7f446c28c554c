"""Spark job: build one day's silver.features from bronze.events (spark-submit-able).

    python jobs/features.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Reads the day's bronze.events partition and the earlier days its longest window reaches;
a missing one stops the job with its name. Replaces the day's partition.
"""

from regrow.data.features import build_features
from regrow.orchestration.jobs import run_day_job

if __name__ == "__main__":
    run_day_job(__doc__, build_features)
