"""Training sets: matured labels only, split by time, statistics fitted on train only.

Given a cut-off day (``split.cutoff_date``, exclusive: the set knows what happened before
00:00 UTC of that day) and a window (``split.window_days`` before it):

1. events of the window come from ``silver.features``, their labels *as of the cut-off*
   from ``silver.labels`` (:func:`regrow.data.labels.labels_as_of`): an event whose label is
   unknown at the cut-off is left out, never taken as a negative;
2. the matured events are split by time, by whole days: the newest ``test_days`` are the
   test split, the ``validation_days`` before them validation, the rest train (never at
   random);
3. every statistic (median imputation, scaling, category codes, the rare-category bucket)
   is fitted on train only (:class:`Transform`) and applied to all three; class balancing,
   if configured, happens after the split, on train only;
4. :func:`check_leakage` proves the result holds no future information, and stops loudly
   if it does;
5. the set is written as a snapshot: one Parquet file per split (raw feature values; the
   model inputs are ``Transform.apply`` of them), ``transform.json`` and
   ``manifest.json`` (Delta table versions, row counts, label rates, time bounds, content
   hash), under ``split.output_dir``, which DVC tracks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regrow.catalog import (
    ARRIVED,
    EVENT_DATE,
    FEATURES,
    LABEL_DATE,
    LABEL_STATUS,
    LABELS,
    SILVER_LABELS,
    UNKNOWN,
    WINDOW_CLOSED,
    feature_columns,
    key_columns,
)
from regrow.data.labels import cutoff_instant, labels_as_of, newest_matured_day, window_closed
from regrow.data.transform import TrainsetError, Transform
from regrow.settings import DatasetSettings, Settings, SplitSettings

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from regrow.stage import StageContext
    from regrow.storage.lakehouse import Lakehouse

logger = logging.getLogger(__name__)

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
MANIFEST, TRANSFORM = "manifest.json", "transform.json"


class LeakageError(RuntimeError):
    """A training set holds information from after its cut-off, or its splits overlap."""


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as UTC-aware (Spark hands them to pandas naive, in the session time zone,
    which regrow.orchestration.spark sets to UTC)."""
    for c in frame.columns:
        if str(frame[c].dtype).startswith("datetime64") and frame[c].dt.tz is None:
            frame[c] = frame[c].dt.tz_localize("UTC")
    return frame


# ---------------------------------------------------------------------- selection
def resolve_cutoff(lakehouse: Lakehouse, cfg: SplitSettings, cutoff: dt.date | None) -> dt.date:
    """The cut-off day: the argument, else ``split.cutoff_date``, else the day after the
    newest day of silver.features."""
    if cutoff or cfg.cutoff_date:
        return cutoff or cfg.cutoff_date
    days = lakehouse.partition_rows(FEATURES)
    if not days:
        raise TrainsetError(f"{FEATURES} has no day yet: build features first (regrow features)")
    return max(dt.date.fromisoformat(d) for d in days) + dt.timedelta(days=1)


def _check_coverage(lakehouse: Lakehouse, cutoff: dt.date, window_days: int) -> list[dt.date]:
    """The window's days that have features; stops when the window is outside the data or
    a day inside it (or a landing day's labels) was not built."""
    start, end = cutoff - dt.timedelta(days=window_days), cutoff - dt.timedelta(days=1)
    present = sorted(dt.date.fromisoformat(d) for d in lakehouse.partition_rows(FEATURES))
    if not present:
        raise TrainsetError(f"{FEATURES} has no day yet: build features first (regrow features)")
    first, last = present[0], present[-1]
    if end > last:
        raise TrainsetError(
            f"cut-off {cutoff} is after the newest day of {FEATURES} ({last}): events and labels "
            f"of {last + dt.timedelta(days=1)}..{end} are not known. Set split.cutoff_date to "
            f"{last + dt.timedelta(days=1)} or earlier, or build those days first"
        )
    if end < first:
        raise TrainsetError(
            f"window {start}..{end} (cut-off {cutoff}, {window_days} days) is outside the data: "
            f"{FEATURES} has {first}..{last}"
        )
    days = [start + dt.timedelta(days=i) for i in range(window_days)]
    days = [d for d in days if d >= first]
    lakehouse.require_days(FEATURES, days, EVENT_DATE, hint=": build it (regrow features --date D)")
    # Every landing day whose bronze labels exist must have been joined into silver.labels.
    bronze, silver = lakehouse.partition_rows(LABELS), lakehouse.partition_rows(SILVER_LABELS)
    unbuilt = [d for d in days if str(d) in bronze and str(d) not in silver]
    if unbuilt:
        raise TrainsetError(
            f"{SILVER_LABELS} has no partition label_date={unbuilt[0]}"
            f"{f' (and {len(unbuilt) - 1} more)' if len(unbuilt) > 1 else ''} although "
            f"bronze.labels has: build it (regrow labels --date {unbuilt[0]})"
        )
    return days


def load_matured(
    spark: SparkSession, settings: Settings, lakehouse: Lakehouse, cutoff: dt.date
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The window's events with their label as of the cut-off, matured ones only.

    Returns:
        The rows (raw silver.features columns, label, label time, label status) and facts
        for the manifest: table versions, the window, counts per label status.
    """
    from pyspark.sql import functions as F

    dataset, cfg = settings.dataset, settings.split
    days = _check_coverage(lakehouse, cutoff, cfg.window_days)
    at = cutoff_instant(cutoff)
    versions = {FEATURES: lakehouse.table_version(FEATURES)}
    columns = [*key_columns(dataset), EVENT_DATE]
    events = lakehouse.read(
        spark, FEATURES, version=versions[FEATURES], partitions={EVENT_DATE: days}
    ).select(*columns, *feature_columns(dataset, settings.features))
    if lakehouse.exists(SILVER_LABELS):
        versions[SILVER_LABELS] = lakehouse.table_version(SILVER_LABELS)
        labels = lakehouse.read(
            spark, SILVER_LABELS, version=versions[SILVER_LABELS], partitions={LABEL_DATE: days}
        )
    else:
        labels = spark.createDataFrame(
            [], f"`{dataset.event_id}` string, `{dataset.label}` int, "
            f"`{dataset.label_timestamp}` timestamp, {LABEL_DATE} date"
        )  # fmt: skip
    labelled = labels_as_of(events, labels, dataset, at)
    eligible = F.col(LABEL_STATUS) != F.lit(UNKNOWN)
    if cfg.matured == "window_closed":
        eligible = eligible & window_closed(dataset, at)
    labelled = labelled.withColumn("__eligible", eligible).cache()
    counts = {
        r[LABEL_STATUS] + ("" if r["__eligible"] else "_excluded"): r["n"]
        for r in labelled.groupBy(LABEL_STATUS, "__eligible").agg(F.count("*").alias("n")).collect()
    }
    frame = _utc(labelled.where("__eligible").drop("__eligible").toPandas())
    # A Spark Connect toPandas() puts its query metrics in .attrs, which pyarrow would try
    # (and fail, with a warning) to store in the Parquet file's metadata.
    frame.attrs.clear()
    labelled.unpersist()
    total = sum(counts.values())
    facts = {
        "tables": versions,
        "window": {"start": str(days[0]), "end": str(days[-1]), "days": len(days)},
        "candidates": {"events": total, **dict(sorted(counts.items()))},
    }
    if frame.empty:
        first_closed = days[0] + (cutoff - newest_matured_day(dataset, cutoff))
        raise TrainsetError(
            f"cut-off {cutoff}: none of the {total} events of {days[0]}..{days[-1]} has a matured "
            f"label (split.matured={cfg.matured}; label windows are {dataset.label_delay_days} "
            f"days, so events of {days[0]} mature from {first_closed} on). Move the cut-off "
            f"later or widen split.window_days"
        )
    return frame, facts


def split_by_time(
    frame: pd.DataFrame, cfg: SplitSettings, dataset: DatasetSettings
) -> dict[str, pd.DataFrame]:
    """Train / validation / test by whole event days: test the newest ``test_days``,
    validation the ``validation_days`` before, train the rest."""
    days = sorted(frame[EVENT_DATE].unique())
    needed = cfg.test_days + cfg.validation_days + 1
    if len(days) < needed:
        raise TrainsetError(
            f"the matured events cover {len(days)} day(s) ({days[0]}..{days[-1]}); a time split "
            f"needs at least {needed} (split.test_days={cfg.test_days} + "
            f"split.validation_days={cfg.validation_days} + 1 for train)"
        )
    test_days = set(days[-cfg.test_days :])
    validation_days = set(days[-needed + 1 : -cfg.test_days])
    which = frame[EVENT_DATE].map(
        lambda d: TEST if d in test_days else VALIDATION if d in validation_days else TRAIN
    )
    order = [dataset.event_timestamp, dataset.event_id]
    return {
        name: frame[which == name].sort_values(order, kind="stable").reset_index(drop=True)
        for name in SPLITS
    }


def balance(train: pd.DataFrame, cfg: SplitSettings, dataset: DatasetSettings) -> pd.DataFrame:
    """Class balance of the training split only: undersample negatives or oversample
    positives (with replacement) to ``balance_ratio`` negatives per positive; seeded."""
    import numpy as np
    import pandas as pd

    if cfg.balance == "none":
        return train
    positive = train[dataset.label] == dataset.positive_label
    pos, neg = train[positive], train[~positive]
    if pos.empty or neg.empty:
        raise TrainsetError(f"cannot {cfg.balance}: the training split has a single class")
    rng = np.random.default_rng(cfg.seed)
    if cfg.balance == "undersample":
        n = min(len(neg), max(1, round(len(pos) * cfg.balance_ratio)))
        neg = neg.iloc[np.sort(rng.choice(len(neg), n, replace=False))]
    else:
        n = max(len(pos), round(len(neg) / cfg.balance_ratio))
        pos = pos.iloc[np.sort(rng.choice(len(pos), n, replace=True))]
    order = [dataset.event_timestamp, dataset.event_id]
    return pd.concat([pos, neg]).sort_values(order, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------- leakage
def check_leakage(
    splits: Mapping[str, pd.DataFrame], dataset: DatasetSettings, cutoff: dt.date
) -> None:
    """Stop when a training set could know the future.

    Checks: no event at or after the cut-off; no label that arrived after it (a closed
    window's label time is when it closed, at the latest the cut-off); no unknown label;
    no event id or entity-time key in two splits; train strictly before validation
    strictly before test.

    Raises:
        LeakageError: listing every violation with an example.
    """
    import pandas as pd

    at = pd.Timestamp(cutoff_instant(cutoff))
    ts, label_ts = dataset.event_timestamp, dataset.label_timestamp
    problems = []
    splits = {name: _utc(frame.copy()) for name, frame in splits.items()}
    for name, frame in splits.items():
        if frame.empty:
            continue
        late = frame[frame[ts] >= at]
        if not late.empty:
            problems.append(
                f"{name}: {len(late)} event(s) at or after the cut-off {at}, e.g. "
                f"{late.iloc[0][dataset.event_id]} at {late.iloc[0][ts]}"
            )
        arrived = frame[LABEL_STATUS] == ARRIVED
        future = frame[(frame[label_ts] > at) | (arrived & (frame[label_ts] >= at))]
        if not future.empty:
            problems.append(
                f"{name}: {len(future)} label(s) that arrived after the cut-off {at}, e.g. "
                f"{future.iloc[0][dataset.event_id]} labelled at {future.iloc[0][label_ts]}"
            )
        unknown = frame[
            frame[dataset.label].isna() | ~frame[LABEL_STATUS].isin([ARRIVED, WINDOW_CLOSED])
        ]
        if not unknown.empty:
            problems.append(
                f"{name}: {len(unknown)} row(s) whose label was not known at the cut-off"
            )
    names = [n for n in SPLITS if n in splits]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(splits[a][dataset.event_id]) & set(splits[b][dataset.event_id])
            # Without an entity the event id is the only key.
            entity = dataset.entity_id or dataset.event_id
            keys_a = set(zip(splits[a][entity], splits[a][ts], strict=True))
            keys_b = set(zip(splits[b][entity], splits[b][ts], strict=True))
            if shared or keys_a & keys_b:
                example = sorted(shared)[:1] or sorted(keys_a & keys_b, key=str)[:1]
                problems.append(
                    f"{a} and {b} share {len(shared)} event id(s) and {len(keys_a & keys_b)} "
                    f"entity-time key(s), e.g. {example[0]}"
                )
    for earlier, later in zip(names, names[1:], strict=False):
        if splits[earlier].empty or splits[later].empty:
            continue
        last, first = splits[earlier][ts].max(), splits[later][ts].min()
        if not last < first:
            problems.append(f"{earlier} ends at {last}, not before {later} starts at {first}")
    if problems:
        raise LeakageError("training set leaks:\n  - " + "\n  - ".join(problems))


# -------------------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class TrainSet:
    """A written snapshot: where it is, its manifest, and the fitted transform."""

    path: Path
    manifest: dict[str, Any]
    transform: Transform

    def as_dict(self) -> dict[str, Any]:
        return self.manifest


def _split_facts(frame: pd.DataFrame, dataset: DatasetSettings) -> dict[str, Any]:
    positives = int((frame[dataset.label] == dataset.positive_label).sum())
    ts = frame[dataset.event_timestamp]
    return {
        "rows": len(frame),
        "positives": positives,
        "label_rate": round(positives / len(frame), 6) if len(frame) else None,
        "first_event": ts.min().isoformat() if len(frame) else None,
        "last_event": ts.max().isoformat() if len(frame) else None,
        "first_day": str(frame[EVENT_DATE].min()) if len(frame) else None,
        "last_day": str(frame[EVENT_DATE].max()) if len(frame) else None,
    }


def fit_transform(train: pd.DataFrame, settings: Settings) -> Transform:
    """The :class:`Transform` of a training split: numeric, boolean and derived features
    imputed and scaled, categorical ones coded (statistics of ``train`` only)."""
    dataset = settings.dataset
    numeric = [*dataset.numeric_features, *dataset.boolean_features]
    numeric += [c for c in feature_columns(dataset, settings.features) if c not in dataset.features]
    return Transform.fit(
        train, numeric, list(dataset.categorical_features), settings.split.rare_category_min_count
    )


def build_trainset(
    ctx: StageContext,
    cutoff: dt.date | None = None,
    output_dir: str | Path | None = None,
) -> TrainSet:
    """Build, check and write the training set of a cut-off (see the module docstring).

    Raises:
        TrainsetError: the cut-off or window is outside the data, no label has matured,
            too few days for the split.
        MissingPartitionError: a day inside the window was not built.
        LeakageError: the result would hold future information (a bug; nothing is written).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    spark, settings, lakehouse = ctx.spark, ctx.settings, ctx.lakehouse
    dataset, cfg = settings.dataset, settings.split
    cutoff = resolve_cutoff(lakehouse, cfg, cutoff)
    frame, facts = load_matured(spark, settings, lakehouse, cutoff)
    splits = split_by_time(frame, cfg, dataset)
    rows_before = len(splits[TRAIN])
    splits[TRAIN] = balance(splits[TRAIN], cfg, dataset)
    check_leakage(splits, dataset, cutoff)

    transform = fit_transform(splits[TRAIN], settings)
    keys = [
        *key_columns(dataset), EVENT_DATE, dataset.label, dataset.label_timestamp, LABEL_STATUS,
    ]  # fmt: skip
    out = Path(output_dir or settings.resolve(cfg.output_dir))
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.parquet"):
        stale.unlink()
    digest = hashlib.sha256()
    files = {}
    for name, part in splits.items():
        # Raw feature values, not transformed ones: a model applies its own transform.json,
        # so a champion can be scored on a challenger's data and a warm start can continue a
        # parent on new rows with the parent's statistics.
        data = part[[*keys, *transform.columns]]
        table = pa.Table.from_pandas(data, preserve_index=False)
        files[name] = f"{name}.parquet"
        pq.write_table(table, out / files[name], compression="zstd")
        digest.update((out / files[name]).read_bytes())
    transform_json = json.dumps(transform.to_dict(), indent=2, sort_keys=True) + "\n"
    (out / TRANSFORM).write_text(transform_json, encoding="utf-8")
    digest.update(transform_json.encode())

    manifest = {
        "dataset": dataset.name,
        "cutoff_date": str(cutoff),
        "cutoff": cutoff_instant(cutoff).isoformat(),
        "matured": cfg.matured,
        "label_delay_days": dataset.label_delay_days,
        **facts,
        "splits": {name: _split_facts(part, dataset) for name, part in splits.items()},
        "balance": {"method": cfg.balance, "train_rows_before": rows_before},
        "rare_or_unseen_categories": {name: transform.rare(part) for name, part in splits.items()},
        "columns": {
            "event_id": dataset.event_id,
            "entity_id": dataset.entity_id,
            "event_timestamp": dataset.event_timestamp,
            "label": dataset.label,
            "features": transform.columns,
        },
        "files": {**files, "transform": TRANSFORM},
        "content_hash": f"sha256:{digest.hexdigest()}",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _write_metrics(settings, manifest)
    logger.info(
        "training set of cut-off %s -> %s: %s; %s",
        cutoff, out,
        ", ".join(f"{n} {s['rows']} rows (label rate {s['label_rate']})"
                  for n, s in manifest["splits"].items()),
        manifest["content_hash"],
    )  # fmt: skip
    return TrainSet(out, manifest, transform)


def _write_metrics(settings: Settings, manifest: Mapping[str, Any]) -> None:
    """The manifest's numbers, flat enough for ``dvc metrics show``."""
    metrics = {
        name: {k: s[k] for k in ("rows", "positives", "label_rate")}
        for name, s in manifest["splits"].items()
    }
    metrics["features"] = len(manifest["columns"]["features"])
    metrics["candidates"] = manifest["candidates"]
    path = Path(settings.resolve(settings.split.metrics_file))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def load_trainset(path: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any], Transform]:
    """Read a snapshot back: the splits, the manifest and the transform."""
    import pandas as pd

    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise TrainsetError(
            f"no training set at {path}: {MANIFEST} is missing (run regrow trainset)"
        )
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    transform = Transform.from_dict(json.loads((path / TRANSFORM).read_text(encoding="utf-8")))
    splits = {name: pd.read_parquet(path / manifest["files"][name]) for name in SPLITS}
    return splits, manifest, transform
