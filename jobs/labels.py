"""Spark job: join one landing day's labels to their events into silver.labels.

    python jobs/labels.py --date 2026-01-05 [--to 2026-01-31] [--params params.yaml] [--run-id ID]

Replaces the day's partition (empty when no label arrived that day). A range (--to) joins
its small days' labels together, then writes each day's partition.
"""

import sys

from regrow.data.labels import build_labels, labels_of_days
from regrow.orchestration.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, build_labels, argv=argv, of_days=labels_of_days)


if __name__ == "__main__":
    sys.exit(main())
