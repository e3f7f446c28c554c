"""Spark job: monitor days of gold.predictions into gold.monitoring (spark-submit-able).

    python jobs/monitor.py --dates 2026-01-05,2026-01-06 [--step drift|performance|all]
                           [--params params.yaml] [--run-id ID]

drift: every feature, the champion's score and the matured label rate against the
reference window (Spark counts, scipy tests, corrected across the day's tests).
performance: the champion's estimated performance on each day and its realised
performance on the newest matured day. Each step replaces its own rows of the day.
"""

import datetime as dt
import sys

from regrow.monitoring.monitor import STEPS, MonitorError, monitor_days
from regrow.orchestration.jobs import run_job


def _dates(text: str) -> list[dt.date]:
    return [dt.date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()]


OPTIONS = {
    "--dates": {"dest": "days", "required": True, "type": _dates,
                "help": "the days, YYYY-MM-DD, comma-separated"},
    "--step": {"dest": "step", "default": "all", "choices": [*STEPS, "all"],
               "type": str, "help": "drift, performance or all (default)"},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, monitor_days, OPTIONS, argv=argv, expected=(MonitorError,))


if __name__ == "__main__":
    sys.exit(main())
