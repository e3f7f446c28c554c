"""Spark job: build one day's silver.features from bronze.events (spark-submit-able).

    python jobs/features.py --date 2026-01-05 [--params params.yaml] [--run-id ID]

Reads the day's bronze.events partition and the earlier days its longest window reaches;
a missing one stops the job with its name. Replaces the day's partition.
"""

from __future__ import annotations

import json

from regrow.features import build_features
from regrow.jobs import day_job_parser, setup_logging
from regrow.lakehouse import Lakehouse
from regrow.settings import load_settings
from regrow.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    args = day_job_parser(__doc__).parse_args(argv)
    setup_logging()
    settings = load_settings(args.params)
    lakehouse = Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))
    report = build_features(get_spark(settings.spark), settings, args.date, args.run_id, lakehouse)
    print(json.dumps(report.as_dict(), indent=2))


if __name__ == "__main__":
    main()
