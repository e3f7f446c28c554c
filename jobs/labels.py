"""Spark job: join one landing day's labels to their events into silver.labels.

    python jobs/labels.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Replaces the day's partition (empty when no label arrived that day).
"""

import sys

from regrow.data.labels import build_labels
from regrow.orchestration.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, build_labels, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
