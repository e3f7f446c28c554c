"""Spark job: score one day of silver.features into gold.predictions (spark-submit-able).

    python jobs/score.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Loads the registry's champion (and the challenger, scored in shadow) once, scores the
day's events with Arrow batches, replaces the day's gold.predictions partition and runs
the gold.predictions suite on it. No champion, a missing features partition or features
that no longer match the model's signature stop the job with the reason.
"""

import sys

from regrow.model.scoring import score_day
from regrow.orchestration.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, score_day, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
