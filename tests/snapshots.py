"""Training-set snapshots made straight from the simulator, without Spark.

The model-side tests (training, registry, gate) need realistic labelled rows, not the
feature pipeline: these snapshots hold the contract's own features of simulated days, with
the simulator's true labels, in the layout ``regrow.data.trainset.build_trainset`` writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd

from regrow.catalog import ARRIVED, EVENT_DATE, LABEL_STATUS, WINDOW_CLOSED
from regrow.data.simulate import TRUTH_LABEL, TRUTH_LABEL_TIME, simulate_day
from regrow.data.trainset import MANIFEST, SPLITS, TRANSFORM
from regrow.data.transform import Transform
from regrow.settings import Settings


def simulated_days(settings: Settings, first: int, last: int) -> pd.DataFrame:
    """Days ``first..last`` (0-based) of the simulator, with their true labels."""
    dataset = settings.dataset
    frames = [simulate_day(dataset, settings.simulator, i) for i in range(first, last + 1)]
    events = pd.concat(frames, ignore_index=True)
    events[EVENT_DATE] = events[dataset.event_timestamp].dt.date
    events[dataset.label] = events.pop(TRUTH_LABEL)
    closed = events[dataset.event_timestamp] + pd.Timedelta(days=dataset.label_delay_days)
    events[dataset.label_timestamp] = events.pop(TRUTH_LABEL_TIME).fillna(closed)
    positive = events[dataset.label] == dataset.positive_label
    events[LABEL_STATUS] = positive.map({True: ARRIVED, False: WINDOW_CLOSED})
    return events


def write_snapshot(
    settings: Settings, path: Path, days: tuple[int, int], test_days: int = 2,
    validation_days: int = 2, extra_feature: str | None = None,
) -> Path:  # fmt: skip
    """A snapshot of simulated days ``days`` (inclusive), split by whole days like
    ``build_trainset``: the newest ``test_days`` test, the ``validation_days`` before them
    validation, the rest train. ``extra_feature``: one more numeric column (as when a
    feature window is added), a scaled copy of the first numeric feature."""
    dataset = settings.dataset
    frame = simulated_days(settings, *days)
    numeric = [*dataset.numeric_features, *dataset.boolean_features]
    if extra_feature:
        frame[extra_feature] = frame[dataset.numeric_features[0]] * 1.5
        numeric.append(extra_feature)
    day_list = sorted(frame[EVENT_DATE].unique())
    test = set(day_list[-test_days:])
    validation = set(day_list[-test_days - validation_days : -test_days])
    which = frame[EVENT_DATE].map(
        lambda d: "test" if d in test else "validation" if d in validation else "train"
    )
    splits = {name: frame[which == name].reset_index(drop=True) for name in SPLITS}
    transform = Transform.fit(
        splits["train"],
        numeric,
        list(dataset.categorical_features),
        settings.split.rare_category_min_count,
    )
    path.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for name, part in splits.items():
        part.to_parquet(path / f"{name}.parquet", index=False)
        digest.update((path / f"{name}.parquet").read_bytes())
    (path / TRANSFORM).write_text(json.dumps(transform.to_dict(), sort_keys=True))
    cutoff = max(day_list) + dt.timedelta(days=1)
    manifest = {
        "dataset": dataset.name,
        "cutoff_date": str(cutoff),
        "window": {"start": str(min(day_list)), "end": str(max(day_list)), "days": len(day_list)},
        "tables": {"silver.features": days[1], "silver.labels": days[1]},
        "files": {name: f"{name}.parquet" for name in SPLITS} | {"transform": TRANSFORM},
        "content_hash": f"sha256:{digest.hexdigest()}",
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path
