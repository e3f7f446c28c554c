"""Spark job: build the training-set snapshot of a cut-off from silver (spark-submit-able).

    python jobs/trainset.py [--cutoff 2026-01-21] [--params params.yaml]

The cut-off is exclusive; without it (or with an empty one: the DAG's unset
``cutoff_date``) ``split.cutoff_date`` is used, else the day after the newest
silver.features day. Replaces the snapshot in ``split.output_dir`` (Parquet per split,
transform.json, manifest.json) and prints the manifest.
"""

import datetime as dt
import sys

from regrow.data.trainset import build_trainset
from regrow.orchestration.jobs import run_job


def optional_day(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


CUTOFF_OPTION = {
    "--cutoff": {
        "type": optional_day,
        "default": None,
        "help": "cut-off day, exclusive, YYYY-MM-DD",
    }
}


def main(argv: list[str] | None = None) -> int:
    return run_job(__doc__, build_trainset, CUTOFF_OPTION, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
