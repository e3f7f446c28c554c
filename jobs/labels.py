"""Spark job: join one landing day's labels to their events into silver.labels.

    python jobs/labels.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Replaces the day's partition (empty when no label arrived that day).
"""

from regrow.data.labels import build_labels
from regrow.orchestration.jobs import run_day_job

if __name__ == "__main__":
    run_day_job(__doc__, build_labels)
