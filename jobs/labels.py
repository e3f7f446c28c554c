"""Spark job: join one landing day's labels to their events into silver.labels.

    python jobs/labels.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Replaces the day's partition (empty when no label arrived that day).
"""

from __future__ import annotations

import json

from regrow.jobs import day_job_parser, setup_logging
from regrow.labels import build_labels
from regrow.lakehouse import Lakehouse
from regrow.settings import load_settings
from regrow.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    args = day_job_parser(__doc__).parse_args(argv)
    setup_logging()
    settings = load_settings(args.params)
    lakehouse = Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))
    report = build_labels(get_spark(settings.spark), settings, args.date, args.run_id, lakehouse)
    print(json.dumps(report.as_dict(), indent=2))


if __name__ == "__main__":
    main()
