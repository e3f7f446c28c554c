"""pandas_cycle: one day of regrow's daily cycle as a plain pandas + XGBoost script, the
baseline of the ``daily_cycle`` benchmark.

    python bench/pandas_cycle.py --landing DIR --day YYYY-MM-DD --model DIR --out DIR \\
        [--params params.yaml]

It does to the data what regrow's ingest → validate → features → labels → score chain does,
with none of its bookkeeping: no Delta tables, no quarantine table, no Great Expectations,
no lineage, no registry. From ``params.yaml`` it takes only the configuration (column
names, windows, label window, threshold, Parquet codec) and from :mod:`regrow.catalog` only
column names; every computation is written here:

- **read**: the day's landing CSV files of events and labels, and the events of the earlier
  days that the longest feature window and the label window reach (a script keeps no
  state between days, so it reads them again from their landing files), every column as
  text (``pyarrow.csv``: only an empty field is null);
- **clean**: type the columns; drop a row with a missing required value (event id, entity,
  timestamp; event id, label, label time), a value that does not parse as its type, a
  non-finite number, an event time outside its landing day or in the future, a label not
  in ``label_values`` or later than its landing day; then keep the first row of an event
  id (per landing day) and the latest label of an event id;
- **features**: regrow's silver.features (:mod:`regrow.data.features`): per entity and
  window, the count and sums of the events in ``[t - window, t)`` (strictly before, as
  Spark's range frame ending 1 µs before the event), the seconds since the previous event
  and the ratio to the mean over the longest window, vectorised over all entities at once
  (see :func:`compute_features`);
- **labels**: the day's labels joined to their events of the label window (entity, event
  time, event day); a label whose event did not land in it is dropped;
- **score**: the model's transform (``transform.json``: numeric columns imputed with the
  train median then standardised, categories coded, rare and unseen values sharing one
  code), then ``Booster.inplace_predict`` on the float32 matrix, XGBoost on all cores;
- **write**: the day's events, features, labels and predictions as one Parquet file each,
  with the lakehouse's codec.

``run_cycle`` returns the seconds of each step; the command line prints them as JSON with
the process's peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import xgboost as xgb

from regrow.catalog import EVENT_DATE, LABEL_DATE, SECONDS_SINCE_PRIOR, derived_columns

if TYPE_CHECKING:
    from regrow.settings import DatasetSettings, FeatureSettings, Settings

# What a model directory holds (daily_cycle writes them from regrow's trained model).
BOOSTER_FILE = "model.ubj"
TRANSFORM_FILE = "transform.json"
# The value a missing category takes before it is coded (as regrow.data.transform).
MISSING = "__missing__"
# What Spark's cast to boolean accepts.
TRUE_TEXT = ("true", "t", "yes", "y", "1")
FALSE_TEXT = ("false", "f", "no", "n", "0")


def run_cycle(
    landing_root: str | Path,
    day: dt.date,
    model_path: str | Path,
    out_dir: str | Path,
    settings: Settings,
) -> dict[str, float]:
    """Read, clean, featurise, label, score and write ``day``; the seconds of each step.

    Args:
        landing_root: the landing folder (``{root}/{events,labels}/YYYY-MM-DD/*.csv``).
        model_path: a folder with ``model.ubj`` (the booster) and ``transform.json``.
        out_dir: where ``events``, ``features``, ``labels`` and ``predictions`` ``.parquet``
            go (replaced).
        settings: regrow's settings (``dataset``, ``features``, ``score``, ``lakehouse``).
    """
    dataset, cfg = settings.dataset, settings.features
    if settings.landing.format != "csv":
        raise ValueError(f"pandas_cycle reads CSV landing files, not {settings.landing.format}")
    root = Path(landing_root)
    history = max(cfg.lookback_days(), dataset.label_delay_days)
    days = [day - dt.timedelta(days=n) for n in range(history, -1, -1)]
    days = [d for d in days if _files(root, "events", d)]
    steps: dict[str, float] = {}

    started = time.perf_counter()
    raw_events = {d: _read_csv(_files(root, "events", d)) for d in days}
    raw_labels = _read_csv(_files(root, "labels", day))
    steps["read"] = _lap(started)

    started = time.perf_counter()
    now = pd.Timestamp.now(tz="UTC")
    events = pd.concat(
        [_clean_events(raw, dataset, d, now) for d, raw in raw_events.items()], ignore_index=True
    )
    del raw_events
    labels = _clean_labels(raw_labels, dataset, day)
    steps["clean"] = _lap(started)

    started = time.perf_counter()
    features = compute_features(events, dataset, cfg, day)
    steps["features"] = _lap(started)

    started = time.perf_counter()
    # Event times are on their landing day (checked when cleaning): times select days.
    ts = events[dataset.event_timestamp]
    window = ts >= _midnight(day - dt.timedelta(days=dataset.label_delay_days))
    labelled_events = window & events[dataset.event_id].isin(labels[dataset.event_id])
    label_window = events.loc[
        labelled_events, [dataset.event_id, dataset.entity_id, dataset.event_timestamp, EVENT_DATE]
    ]
    # Inner: a label of an event not landed in the label window is dropped.
    labelled = labels.merge(label_window, on=dataset.event_id, how="inner")
    labelled = labelled[
        [dataset.event_id, dataset.entity_id, dataset.event_timestamp, EVENT_DATE,
         dataset.label, dataset.label_timestamp]
    ].assign(**{LABEL_DATE: day})  # fmt: skip
    steps["labels"] = _lap(started)

    started = time.perf_counter()
    predictions = score(features, Path(model_path), dataset, settings.score.threshold)
    steps["score"] = _lap(started)

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    codec = settings.lakehouse.compression
    codec = None if codec == "none" else codec
    day_events = events.loc[ts >= _midnight(day)]
    for name, frame in (
        ("events", day_events),
        ("features", features),
        ("labels", labelled),
        ("predictions", predictions),
    ):
        frame.to_parquet(out / f"{name}.parquet", compression=codec, index=False)
    steps["write"] = _lap(started)
    return steps


# ------------------------------------------------------------------------------ read
def _midnight(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def _files(root: Path, kind: str, day: dt.date) -> list[str]:
    return sorted(glob.glob(str(root / kind / day.isoformat() / "*.csv")))


def _read_csv(files: list[str]) -> pd.DataFrame:
    """The rows of ``files``, in order, every column as text; only an empty field is null."""
    frames = []
    for path in files:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            names = next(csv.reader(handle), [])
        if not names:  # an empty file: nothing landed
            continue
        convert = pcsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
        )
        parse = pcsv.ParseOptions(newlines_in_values=True)
        table = pcsv.read_csv(path, parse_options=parse, convert_options=convert)
        frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
        frames.append(frame.rename(columns=str.strip))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ----------------------------------------------------------------------------- clean
def _typed(raw: pd.DataFrame, types: dict[str, str], required: list[str]):
    """The columns of ``raw`` typed, and which rows are bad (a required value missing, a
    value that does not parse, a non-finite number; every row when no file has a column)."""
    out = {}
    bad = np.zeros(len(raw), dtype=bool)
    for column, logical in types.items():
        if column not in raw:
            out[column] = pd.Series(pd.NA, index=raw.index)
            bad[:] = True
            continue
        text = raw[column]
        blank = (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool, na_value=True)
        if logical == "string":
            value = text.where(~blank)
            parsed = np.ones(len(raw), dtype=bool)
        elif logical == "double":
            value = pd.to_numeric(text, errors="coerce").to_numpy("float64", na_value=np.nan)
            parsed = np.isfinite(value)
        elif logical == "int":  # "1" and "1.0" are the same label; "1.5" is not one
            number = pd.to_numeric(text, errors="coerce").to_numpy("float64", na_value=np.nan)
            parsed = np.isfinite(number) & (number == np.floor(number))
            value = pd.Series(number, index=raw.index).where(parsed).astype("Int64")
        elif logical == "timestamp":
            value = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            parsed = value.notna().to_numpy()
            value = value.dt.as_unit("us")
        elif logical == "boolean":
            word = text.str.strip().str.lower()
            true = word.isin(TRUE_TEXT).to_numpy(bool, na_value=False)
            parsed = true | word.isin(FALSE_TEXT).to_numpy(bool, na_value=False)
            value = pd.Series(true, index=raw.index, dtype="boolean").mask(~parsed)
        else:
            raise ValueError(f"column {column}: unknown logical type {logical!r}")
        bad |= ~blank & ~parsed
        if column in required:
            bad |= blank
        out[column] = value
    return pd.DataFrame(out, index=raw.index), bad


def _keep(frame: pd.DataFrame, good: np.ndarray) -> pd.DataFrame:
    """The ``good`` rows (no copy when every row is: taking strings is not free)."""
    return frame if good.all() else frame.loc[good]


def _clean_events(
    raw: pd.DataFrame, dataset: DatasetSettings, day: dt.date, now: pd.Timestamp
) -> pd.DataFrame:
    """A landing day's valid events, the first row of each event id kept, with
    ``event_date``."""
    required = [dataset.event_id, dataset.entity_id, dataset.event_timestamp]
    events, bad = _typed(raw, dataset.event_columns(), required)
    ts = events[dataset.event_timestamp]
    start = _midnight(day)
    end = start + pd.Timedelta(days=1)
    outside = ((ts < start) | (ts >= end) | (ts > now)).to_numpy(bool, na_value=False)
    events = _keep(events, ~bad & ~outside)
    events = events.drop_duplicates(subset=dataset.event_id, keep="first")
    return events.assign(**{EVENT_DATE: day})


def _clean_labels(raw: pd.DataFrame, dataset: DatasetSettings, day: dt.date) -> pd.DataFrame:
    """The day's valid labels, the latest of each event id kept (whether their event
    landed is checked when they are joined to it)."""
    required = [dataset.event_id, dataset.label, dataset.label_timestamp]
    labels, bad = _typed(raw, dataset.label_columns(), required)
    if labels.empty:
        return labels[[dataset.event_id, dataset.label, dataset.label_timestamp]]
    end = _midnight(day) + pd.Timedelta(days=1)
    bad |= ~labels[dataset.label].isin(dataset.label_values).to_numpy(bool, na_value=False)
    bad |= (labels[dataset.label_timestamp] >= end).to_numpy(bool, na_value=False)
    labels = _keep(labels, ~bad)
    latest = labels.sort_values(dataset.label_timestamp, ascending=False, kind="stable")
    latest = latest.drop_duplicates(subset=dataset.event_id, keep="first")
    return latest[[dataset.event_id, dataset.label, dataset.label_timestamp]]


# -------------------------------------------------------------------------- features
def compute_features(
    events: pd.DataFrame, dataset: DatasetSettings, cfg: FeatureSettings, day: dt.date
) -> pd.DataFrame:
    """regrow's silver.features of ``day``'s events, from ``events`` (the day and the days
    before it that the longest window reaches).

    The events are sorted by entity and time, so an event's window ``[t - w, t)`` is a run
    of rows ending just before the entity's first event at ``t``: binary searches find
    each run's bounds, prefix sums give its count, sums and means, its last row is the
    previous event. (``groupby(entity).rolling(w, on=time, closed="left")`` gives the same
    numbers, but finds the bounds entity by entity in Python: 3x slower at 200,000 rows,
    worse with more entities.)
    """
    entity, ts = dataset.entity_id, dataset.event_timestamp
    micros = {w: s * 1_000_000 for w, s in cfg.window_seconds().items()}
    longest = max(micros, key=micros.get)
    history = events.sort_values([entity, ts], kind="stable", ignore_index=True)
    us = history[ts].dt.tz_convert(None).to_numpy("datetime64[us]").astype("int64")
    us -= us.min()
    # One sorted key for all entities: each entity's times shifted past the previous
    # entity's (and its longest window), so no search crosses from one entity into another.
    group = np.cumsum(history[entity].ne(history[entity].shift()).to_numpy(bool, na_value=True))
    span = int(us.max()) + 1 + micros[longest]
    if int(group[-1]) * span >= 2**63:
        raise OverflowError(f"{group[-1]} entities over {span} µs do not fit one int64 key")
    key = us + (group - 1) * span
    end = np.searchsorted(key, key, side="left")  # before the entity's first event at t

    def window_sum(values: np.ndarray, start: np.ndarray) -> np.ndarray:
        # The sum of the entity's rows before each row: per entity, so that rounding stays
        # at the scale of one entity's history, not of every row's.
        before = pd.Series(values).groupby(group).cumsum().to_numpy() - values
        return before[end] - before[start]

    derived = {}
    for w in cfg.windows:
        start = np.searchsorted(key, key - micros[w], side="left")
        derived[f"prior_events_{w}"] = (end - start).astype("int64")
        for c in cfg.sum_columns:
            values = history[c].to_numpy("float64", na_value=np.nan)
            derived[f"{c}_prior_sum_{w}"] = window_sum(np.nan_to_num(values), start)
        if w == longest:
            previous = np.where(end > start, us[np.maximum(end - 1, 0)], -1)
            derived[SECONDS_SINCE_PRIOR] = np.where(previous >= 0, (us - previous) / 1e6, np.nan)
            for c in cfg.ratio_columns:
                values = history[c].to_numpy("float64", na_value=np.nan)
                present = ~np.isnan(values)
                n = window_sum(present.astype("float64"), start)
                with np.errstate(divide="ignore", invalid="ignore"):
                    mean = window_sum(np.where(present, values, 0.0), start) / n
                    ratio = values / mean
                derived[f"{c}_to_prior_mean_{w}"] = np.where((n > 0) & (mean != 0), ratio, np.nan)
    base = [dataset.event_id, entity, ts, *dataset.features]
    out = pd.concat(
        [history[base], pd.DataFrame(derived, index=history.index), history[[EVENT_DATE]]], axis=1
    )
    out = out.loc[history[ts] >= _midnight(day)]  # the days before are only history
    return out[[*base, *derived_columns(cfg), EVENT_DATE]].reset_index(drop=True)


# ----------------------------------------------------------------------------- score
def score(
    features: pd.DataFrame, model_path: Path, dataset: DatasetSettings, threshold: float
) -> pd.DataFrame:
    """Prediction rows of the day's features: keys, score, decision, threshold, day."""
    booster = xgb.Booster(model_file=str(model_path / BOOSTER_FILE))
    transform = json.loads((model_path / TRANSFORM_FILE).read_text())
    scores = booster.inplace_predict(model_matrix(features, transform)).astype("float64")
    keys = [dataset.event_id, dataset.entity_id, dataset.event_timestamp]
    return features[keys].assign(
        score=scores, decision=scores >= threshold, threshold=threshold,
        **{EVENT_DATE: features[EVENT_DATE]},
    )  # fmt: skip


def model_matrix(features: pd.DataFrame, transform: dict) -> np.ndarray:
    """The model inputs as a float32 matrix: numeric columns imputed with the train median
    and standardised, category values coded by the train codes (rare and unseen values,
    and a missing value not seen in train, share the rare code)."""
    columns = []
    for c, stats in transform["numeric"].items():
        values = features[c].to_numpy("float64", na_value=np.nan)
        values = np.where(np.isnan(values), stats["median"], values)
        columns.append(((values - stats["mean"]) / stats["std"]).astype("float32"))
    for c, spec in transform["categorical"].items():
        known = sorted(spec["codes"], key=spec["codes"].get)  # a value's position is its code
        codes = pd.Categorical(features[c].fillna(MISSING), categories=known).codes
        columns.append(np.where(codes < 0, spec["rare_code"], codes).astype("float32"))
    return np.column_stack(columns)


# ------------------------------------------------------------------------------- CLI
def _lap(started: float) -> float:
    return time.perf_counter() - started


def _peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM on Linux, getrusage elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)


def main(argv: list[str] | None = None) -> int:
    from regrow.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", required=True, help="the landing folder")
    parser.add_argument("--day", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--model", required=True, help="folder of model.ubj and transform.json")
    parser.add_argument("--out", required=True, help="folder the Parquet files go to")
    parser.add_argument("--params", default=os.environ.get("REGROW_PARAMS"), help="params.yaml")
    args = parser.parse_args(argv)
    settings: Settings = load_settings(args.params)
    steps = run_cycle(args.landing, args.day, args.model, args.out, settings)
    print(json.dumps({"steps_s": steps, "peak_rss_mib": _peak_rss_mib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
