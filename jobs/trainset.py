"""Spark job: build the training-set snapshot of a cut-off from silver (spark-submit-able).

    python jobs/trainset.py [--cutoff 2026-01-21] [--params params.yaml]

The cut-off is exclusive; without it (or with an empty one: the DAG's unset
``cutoff_date``) ``split.cutoff_date`` is used, else the day after the newest
silver.features day. Replaces the snapshot in ``split.output_dir`` (Parquet per split,
transform.json, manifest.json) and prints the manifest.
"""

import argparse
import datetime as dt
import json

from regrow.orchestration.jobs import setup_logging


def optional_day(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def main(argv: list[str] | None = None) -> None:
    from regrow.data.trainset import build_trainset
    from regrow.orchestration.spark import get_spark
    from regrow.settings import load_settings
    from regrow.storage.lakehouse import Lakehouse

    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--cutoff", type=optional_day, default=None, help="cut-off day, exclusive, YYYY-MM-DD"
    )
    parser.add_argument(
        "--params", default=None, help="params.yaml (default: $REGROW_PARAMS or ./params.yaml)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    settings = load_settings(args.params)
    lakehouse = Lakehouse(settings.lakehouse, settings.resolve(settings.lakehouse.root))
    result = build_trainset(get_spark(settings.spark), settings, lakehouse, args.cutoff)
    print(json.dumps(result.manifest, indent=2))


if __name__ == "__main__":
    main()
