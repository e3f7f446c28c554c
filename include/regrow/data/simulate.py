"""The built-in example domain: card transactions with natural, late fraud labels.

Each simulated day lands two kinds of files (layout of :mod:`regrow.data.landing`):

- ``events/{day}/part-00000.{fmt}``: one row per transaction of that day, columns in the
  order of ``dataset.event_columns()``. The roles (event id, entity id, event timestamp) use
  the contract's names; the features are the simulator's own: ``amount``,
  ``distance_from_home_km``, ``merchant_risk``, ``merchant_category``, ``channel``,
  ``country``, ``card_present``. No label column.
- ``labels/{day}/part-00000.{fmt}``: the chargebacks that *arrived* that day (event id,
  entity id, label = ``positive_label``, label timestamp), for frauds of that day or earlier.
  Negatives are implicit: no chargeback within ``label_delay_days``.

Timestamps are ISO-8601 UTC with a ``Z`` suffix in csv/json and ``timestamp[us, UTC]`` in
parquet. Fraud is drawn from a logistic model of the features (amount against the card's
typical amount, distance from home, merchant risk, channel, card present, category), its
intercept calibrated so that the base rate is ``fraud_rate``.

Every day has its own random stream (``seed``, day index), so day *k* is the same whether
5 or 30 days are simulated, and the same settings give byte-identical files. A scenario
(``simulator.scenario``) changes the days from ``drift_onset_day`` on; days before it are
identical to the ``stable`` scenario's (except ``seasonality``, whose weekly cycle runs from
day 0). ``{root}/_scenario.json`` records the ground truth: onset, affected columns and the
per-day counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
from functools import lru_cache
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from regrow.data.landing import Kind, day_dir
from regrow.settings import DatasetSettings, LandingSettings, SimulatorSettings

logger = logging.getLogger(__name__)

NUMERIC_FEATURES = ("amount", "distance_from_home_km", "merchant_risk")
CATEGORICAL_FEATURES = ("merchant_category", "channel", "country")
BOOLEAN_FEATURES = ("card_present",)

# Hidden ground-truth columns of simulate_day()'s frame; never written to an events file.
TRUTH_LABEL = "_truth_label"
TRUTH_LABEL_TIME = "_truth_label_time"
TRUTH_FILE = "_scenario.json"

_SECONDS_PER_DAY = 86_400
_IDS_PER_DAY = 10_000_000
_REFERENCE_EVENTS = 50_000
# Entropy words that keep the random streams of the population, the calibration sample,
# each day and each day's feed faults apart.
_STREAM_POPULATION, _STREAM_REFERENCE, _STREAM_DAY, _STREAM_FAULTS = 1, 2, 3, 4

CHANNELS = ("pos", "online", "mobile")
_POS, _ONLINE, _MOBILE = range(3)
_MOBILE_SHARE = 0.15

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "BR", "MX")
_HOME_WEIGHTS = np.array([0.34, 0.12, 0.10, 0.09, 0.07, 0.07, 0.05, 0.06, 0.05, 0.05])
_COUNTRY_EFFECT = np.array([0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.0, 0.0, 0.4, 0.4])
_ONLINE_ABROAD = 0.25

# merchant categories; the last one is never seen before the new_category scenario's onset.
CATEGORIES = (
    "grocery", "restaurant", "fuel", "travel", "electronics", "fashion",
    "entertainment", "health", "digital_goods", "jewelry", "crypto_exchange",
)  # fmt: skip
NEW_CATEGORY = CATEGORIES[-1]
_CATEGORY_BY_CHANNEL = np.array(
    [  # pos, online, mobile
        [0.28, 0.20, 0.14, 0.03, 0.06, 0.10, 0.07, 0.08, 0.00, 0.04, 0.0],
        [0.05, 0.04, 0.00, 0.15, 0.18, 0.18, 0.10, 0.04, 0.22, 0.04, 0.0],
        [0.10, 0.20, 0.00, 0.10, 0.05, 0.10, 0.15, 0.05, 0.25, 0.00, 0.0],
    ]
)
_AMOUNT_MULTIPLIER = np.array([0.8, 0.7, 1.0, 4.0, 3.0, 1.5, 0.8, 1.0, 0.3, 5.0, 2.5])
_RISK_MEAN = np.array([0.10, 0.15, 0.15, 0.30, 0.40, 0.25, 0.20, 0.10, 0.45, 0.50, 0.60])
_RISK_CONCENTRATION = 8.0
# Log-odds of fraud per category: before (fraud on large purchases) and after a concept
# drift (card testing: many small digital purchases).
_CATEGORY_EFFECT = np.array([-0.5, -0.3, 0.0, 0.3, 0.5, 0.2, 0.0, -0.3, 0.4, 0.6, 1.2])
_DRIFT_CATEGORY_EFFECT = np.array([-0.5, -0.3, 0.0, -0.5, -0.5, 0.0, 0.8, -0.3, 1.8, -1.0, 1.2])

# seasonality: weekly cycle (Monday first) and a three-day holiday peak from the onset.
_WEEKLY_VOLUME = np.array([0.90, 0.92, 0.95, 1.00, 1.15, 1.30, 0.78])
_WEEKLY_AMOUNT = np.array([1.00, 1.00, 1.00, 1.00, 1.05, 1.15, 1.05])
_PEAK_DAYS = 3
_HOURLY_VOLUME = np.array(
    [1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0,
     5.5, 5.0, 4.5, 4.5, 5.0, 5.5, 6.0, 6.0, 5.0, 4.0, 3.0, 2.0]
)  # fmt: skip

_BROKEN_ROW_SHARE = 0.01
_BAD_AMOUNT = "abc"

_DESCRIPTIONS = {
    "stable": "no drift: every day is drawn from the same distribution",
    "covariate_shift": "amounts rise and more payments go online; fraud given features unchanged",
    "prior_shift": "the fraud rate rises; features given fraud unchanged",
    "concept_drift": "fraud moves from large purchases to small digital ones (card testing)",
    "new_category": f"merchant_category value {NEW_CATEGORY!r}, never seen before, appears",
    "seasonality": "weekly volume/amount cycle from day 0; a three-day holiday peak at onset",
    "broken_feed": "onset day: null keys, amount as text, a duplicated and a truncated file",
}


@dataclasses.dataclass(frozen=True)
class SimulationSummary:
    """What :func:`write_landing` wrote.

    ``rows`` counts the simulated rows per kind (``events``, ``labels``); a duplicated or
    truncated file of the ``broken_feed`` scenario is not counted twice.
    """

    root: str
    days: tuple[dt.date, ...]
    files: tuple[str, ...]
    rows: dict[str, int]
    truth_path: str


def check_contract(dataset: DatasetSettings) -> None:
    """Refuse a contract whose features are not exactly the simulator's.

    Raises:
        ValueError: naming the missing, extra or wrongly typed feature columns.
    """
    expected = {
        "numeric_features": NUMERIC_FEATURES,
        "categorical_features": CATEGORICAL_FEATURES,
        "boolean_features": BOOLEAN_FEATURES,
    }
    declared = {kind: getattr(dataset, kind) for kind in expected}
    ours = {c for cols in expected.values() for c in cols}
    theirs = {c for cols in declared.values() for c in cols}
    problems = []
    if missing := sorted(ours - theirs):
        problems.append(f"missing {missing}")
    if extra := sorted(theirs - ours):
        problems.append(f"not produced by the simulator {extra}")
    for kind, cols in expected.items():
        if misplaced := sorted((ours & theirs & set(declared[kind])) - set(cols)):
            problems.append(f"{misplaced} listed under {kind}")
    clashes = sorted({dataset.label, dataset.label_timestamp} & ours)
    if clashes:
        problems.append(f"label columns {clashes} clash with simulated features")
    if problems:
        raise ValueError(
            f"dataset {dataset.name!r}: the contract does not match the simulated card "
            f"transactions: {'; '.join(problems)}. The simulator produces numeric "
            f"{list(NUMERIC_FEATURES)}, categorical {list(CATEGORICAL_FEATURES)}, boolean "
            f"{list(BOOLEAN_FEATURES)}; restore them or point landing.path at your own data."
        )


def simulate_day(dataset: DatasetSettings, sim: SimulatorSettings, day_index: int) -> pd.DataFrame:
    """The events of day ``day_index`` (0-based from ``sim.start_date``), sorted by time.

    Columns: ``dataset.event_columns()`` (timestamps as UTC datetimes), then the hidden truth
    ``TRUTH_LABEL`` (positive or negative label value) and ``TRUTH_LABEL_TIME`` (when the
    chargeback arrives; NaT for legitimate events). The ``broken_feed`` faults are not in this
    frame: they are applied when the day's files are written.
    """
    check_contract(dataset)
    if day_index < 0:
        raise ValueError(f"day_index must be >= 0, got {day_index}")
    world = _world(_seed(sim.seed), sim.n_entities, sim.fraud_rate)
    drifting = sim.scenario != "stable" and day_index >= sim.drift_onset_day
    strength = sim.drift_strength if drifting else 0.0
    day = sim.start_date + dt.timedelta(days=day_index)
    n = _volume(sim, day_index)
    if n >= _IDS_PER_DAY:
        raise ValueError(f"day {day}: {n} events exceed the {_IDS_PER_DAY} event ids of a day")
    rngs = _day_streams(sim.seed, _STREAM_DAY, day_index)

    if sim.scenario == "prior_shift" and strength > 0:
        target = min(0.5, sim.fraud_rate * (1 + 2 * strength))
        pool_size = int(np.ceil(n * 1.5 * target / sim.fraud_rate)) + 100
        pool = _draw(rngs, world, pool_size, sim)
        n_fraud = min(int(rngs[-1].binomial(n, target)), int(pool["fraud"].sum()))
        frauds = np.flatnonzero(pool["fraud"])[:n_fraud]
        legit = np.flatnonzero(~pool["fraud"])[: n - n_fraud]
        keep = np.sort(np.concatenate([frauds, legit]))
        events = {k: v[keep] for k, v in pool.items()}
    else:
        amount_scale = _amount_scale(sim, day_index)
        online_scale, new_share, concept = 1.0, 0.0, 0.0
        if sim.scenario == "covariate_shift":
            amount_scale *= 1 + 0.5 * strength
            online_scale = 1 + strength
        elif sim.scenario == "new_category":
            new_share = min(0.5, 0.06 * strength)
        elif sim.scenario == "concept_drift":
            concept = min(1.0, strength)
        events = _draw(rngs, world, n, sim, amount_scale, online_scale, new_share, concept)

    order = np.lexsort((np.arange(len(events["second"])), events["second"]))
    events = {k: v[order] for k, v in events.items()}
    return _to_frame(dataset, sim, day, day_index, events)


def write_landing(
    dataset: DatasetSettings,
    sim: SimulatorSettings,
    landing: LandingSettings,
    root: str,
    days: int | None = None,
) -> SimulationSummary:
    """Simulate ``days`` days (default ``sim.days``) and land their files under ``root``.

    ``root`` is the resolved landing path, local or ``s3://bucket/prefix``. Each day's folders
    are replaced (rerunning is idempotent); days beyond ``days`` are left alone. Labels that
    would arrive after the last simulated day are not written: they have not arrived yet.
    """
    check_contract(dataset)
    days = sim.days if days is None else days
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    frames = [simulate_day(dataset, sim, d) for d in range(days)]
    labels = _labels_by_day(dataset, sim, frames, days)
    fs, _ = fsspec.core.url_to_fs(root)
    root = root.rstrip("/")
    written: list[str] = []
    per_day = []
    broken: dict[str, object] = {}
    for d, (events, arrived) in enumerate(zip(frames, labels, strict=True)):
        day = sim.start_date + dt.timedelta(days=d)
        event_rows = events[list(dataset.event_columns())]
        broken_day = sim.scenario == "broken_feed" and d == sim.drift_onset_day
        if broken_day and sim.drift_strength > 0:
            event_rows, faults = _break_rows(dataset, sim, d, event_rows)
            files = _broken_files(dataset, landing, event_rows)
            broken = {"date": day.isoformat(), **faults, "files": sorted(files)}
        else:
            files = {f"part-00000.{landing.format}": _serialise(dataset, landing, event_rows)}
        written += _replace_day(fs, day_dir(root, "events", day), files)
        label_file = _serialise(dataset, landing, arrived, kind="labels")
        label_files = {f"part-00000.{landing.format}": label_file}
        written += _replace_day(fs, day_dir(root, "labels", day), label_files)
        per_day.append(
            {
                "day_index": d,
                "date": day.isoformat(),
                "events": len(events),
                "frauds": int((events[TRUTH_LABEL] == dataset.positive_label).sum()),
                "labels": len(arrived),
            }
        )

    truth_path = f"{root}/{TRUTH_FILE}"
    truth = _truth(dataset, sim, landing, days, per_day, broken)
    with fs.open(truth_path, "wb") as out:
        out.write((json.dumps(truth, indent=2) + "\n").encode("utf-8"))
    rows = {
        "events": sum(p["events"] for p in per_day),
        "labels": sum(p["labels"] for p in per_day),
    }
    logger.info(
        "simulated %d day(s) of scenario %s into %s: %d events, %d labels, %d files",
        days, sim.scenario, root, rows["events"], rows["labels"], len(written),
    )  # fmt: skip
    return SimulationSummary(
        root=root,
        days=tuple(sim.start_date + dt.timedelta(days=d) for d in range(days)),
        files=tuple(written),
        rows=rows,
        truth_path=truth_path,
    )


@dataclasses.dataclass(frozen=True)
class _World:
    """The card population and the fraud model's calibrated intercepts."""

    home: np.ndarray
    typical_amount: np.ndarray
    online_propensity: np.ndarray
    travel_propensity: np.ndarray
    activity: np.ndarray
    intercept: float
    drift_intercept: float


def _seed(seed: int) -> int:
    return seed & (2**64 - 1)  # SeedSequence wants a non-negative entropy word


def _day_streams(seed: int, stream: int, day_index: int) -> list[np.random.Generator]:
    # One generator per attribute: changing how one column is drawn never shifts another.
    sequence = np.random.SeedSequence([_seed(seed), stream, day_index])
    return [np.random.default_rng(s) for s in sequence.spawn(10)]


@lru_cache(maxsize=8)
def _world(seed: int, n_entities: int, fraud_rate: float) -> _World:
    rng = np.random.default_rng([seed, _STREAM_POPULATION])
    activity = rng.gamma(2.0, 1.0, n_entities)
    world = _World(
        home=rng.choice(len(COUNTRIES), n_entities, p=_HOME_WEIGHTS),
        typical_amount=rng.lognormal(np.log(40.0), 0.6, n_entities),
        online_propensity=rng.beta(2.0, 5.0, n_entities),
        travel_propensity=rng.beta(1.0, 30.0, n_entities),
        activity=activity / activity.sum(),
        intercept=0.0,
        drift_intercept=0.0,
    )
    rngs = [np.random.default_rng([seed, _STREAM_REFERENCE, i]) for i in range(10)]
    reference = _features(rngs, world, _REFERENCE_EVENTS, 1.0, 1.0, 0.0)
    return dataclasses.replace(
        world,
        intercept=_calibrate(_logit(world, reference), fraud_rate),
        drift_intercept=_calibrate(_drift_logit(world, reference), fraud_rate),
    )


def _calibrate(logit: np.ndarray, rate: float) -> float:
    """The intercept b with mean(sigmoid(logit + b)) == rate (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = (low + high) / 2
        if _sigmoid(logit + mid).mean() < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _volume(sim: SimulatorSettings, day_index: int) -> int:
    if sim.scenario != "seasonality":
        return sim.events_per_day
    s = sim.drift_strength
    weekday = (sim.start_date + dt.timedelta(days=day_index)).weekday()
    factor = 1 + s * (_WEEKLY_VOLUME[weekday] - 1)
    if _in_peak(sim, day_index):
        factor *= 1 + s
    return max(1, round(sim.events_per_day * factor))


def _amount_scale(sim: SimulatorSettings, day_index: int) -> float:
    if sim.scenario != "seasonality":
        return 1.0
    s = sim.drift_strength
    weekday = (sim.start_date + dt.timedelta(days=day_index)).weekday()
    scale = 1 + s * (_WEEKLY_AMOUNT[weekday] - 1)
    if _in_peak(sim, day_index):
        scale *= 1 + 0.25 * s
    return float(scale)


def _in_peak(sim: SimulatorSettings, day_index: int) -> bool:
    return sim.drift_onset_day <= day_index < sim.drift_onset_day + _PEAK_DAYS


def _features(
    rngs: list[np.random.Generator],
    world: _World,
    n: int,
    amount_scale: float,
    online_scale: float,
    new_category_share: float,
) -> dict[str, np.ndarray]:
    """Draw n transactions' features (no fraud yet) from the per-attribute streams."""
    entity = rngs[0].choice(len(world.activity), n, p=world.activity)
    hour = rngs[1].choice(24, n, p=_HOURLY_VOLUME / _HOURLY_VOLUME.sum())
    second = hour * 3600 + rngs[1].integers(0, 3600, n)

    u = rngs[2].random(n)
    online_p = np.minimum(0.95, world.online_propensity[entity] * online_scale)
    channel = np.where(u < online_p, _ONLINE, np.where(u < online_p + _MOBILE_SHARE, _MOBILE, _POS))
    cumulative = np.cumsum(_CATEGORY_BY_CHANNEL / _CATEGORY_BY_CHANNEL.sum(1, keepdims=True), 1)
    category = (rngs[3].random(n)[:, None] > cumulative[channel]).sum(1)
    category = np.minimum(category, len(CATEGORIES) - 2)
    category = np.where(rngs[3].random(n) < new_category_share, len(CATEGORIES) - 1, category)
    card_present = (channel == _POS) & (rngs[4].random(n) < 0.96)

    home = world.home[entity]
    abroad_p = np.where(channel == _ONLINE, _ONLINE_ABROAD, world.travel_propensity[entity])
    abroad = rngs[5].random(n) < abroad_p
    country = np.where(
        abroad, (home + rngs[5].integers(1, len(COUNTRIES), n)) % len(COUNTRIES), home
    )
    distance = np.where(
        abroad, rngs[6].lognormal(np.log(1800.0), 0.6, n), rngs[6].lognormal(np.log(8.0), 1.0, n)
    )
    amount = (
        world.typical_amount[entity]
        * _AMOUNT_MULTIPLIER[category]
        * rngs[7].lognormal(0.0, 0.45, n)
        * amount_scale
    )
    mean = _RISK_MEAN[category]
    risk = rngs[8].beta(mean * _RISK_CONCENTRATION, (1 - mean) * _RISK_CONCENTRATION)
    return {
        "entity": entity,
        "second": second,
        "channel": channel,
        "category": category,
        "card_present": card_present,
        "country": country,
        "distance": np.round(distance, 1),
        "amount": np.maximum(0.5, np.round(amount, 2)),
        "risk": np.round(risk, 3),
    }


def _logit(world: _World, f: dict[str, np.ndarray]) -> np.ndarray:
    """Log-odds of fraud before the intercept: large, far, risky, card-not-present payments."""
    ratio = np.log(f["amount"] / world.typical_amount[f["entity"]])
    return (
        0.9 * ratio
        + 0.35 * np.log1p(f["distance"] / 10)
        + 3.0 * f["risk"]
        + 0.8 * (f["channel"] == _ONLINE)
        + 0.9 * ~f["card_present"]
        + _CATEGORY_EFFECT[f["category"]]
        + _COUNTRY_EFFECT[f["country"]]
    )


def _drift_logit(world: _World, f: dict[str, np.ndarray]) -> np.ndarray:
    """Log-odds of fraud after a concept drift: small card-testing payments."""
    ratio = np.log(f["amount"] / world.typical_amount[f["entity"]])
    return (
        -1.2 * ratio
        + 0.35 * np.log1p(f["distance"] / 10)
        + 1.5 * f["risk"]
        + 0.8 * (f["channel"] == _ONLINE)
        + 0.9 * ~f["card_present"]
        + _DRIFT_CATEGORY_EFFECT[f["category"]]
        + _COUNTRY_EFFECT[f["country"]]
    )


def _draw(
    rngs: list[np.random.Generator],
    world: _World,
    n: int,
    sim: SimulatorSettings,
    amount_scale: float = 1.0,
    online_scale: float = 1.0,
    new_category_share: float = 0.0,
    concept: float = 0.0,
) -> dict[str, np.ndarray]:
    """Features, fraud and label delay of n transactions."""
    f = _features(rngs, world, n, amount_scale, online_scale, new_category_share)
    logit = _logit(world, f) + world.intercept
    if concept > 0:
        logit = (1 - concept) * logit + concept * (_drift_logit(world, f) + world.drift_intercept)
    f["fraud"] = rngs[9].random(n) < _sigmoid(logit)
    delay_days = rngs[9].gamma(2.0, sim.mean_label_delay_days / 2, n)
    f["delay"] = np.round(delay_days * _SECONDS_PER_DAY).astype(np.int64)
    return f


def _to_frame(
    dataset: DatasetSettings,
    sim: SimulatorSettings,
    day: dt.date,
    day_index: int,
    e: dict[str, np.ndarray],
) -> pd.DataFrame:
    n = len(e["second"])
    width = max(5, len(str(sim.n_entities - 1)))
    start = pd.Timestamp(day, tz="UTC")
    event_time = start + pd.to_timedelta(e["second"], unit="s")
    # The window closes label_delay_days after the event: a chargeback always comes before.
    delay = np.clip(e["delay"], 3600, dataset.label_delay_days * _SECONDS_PER_DAY - 1)
    label_time = event_time + pd.to_timedelta(delay, unit="s")
    negative = next(v for v in dataset.label_values if v != dataset.positive_label)
    columns = {
        dataset.event_id: _ids("tx-", day_index * _IDS_PER_DAY + np.arange(n), 12),
        dataset.entity_id: _ids("card-", e["entity"], width),
        dataset.event_timestamp: event_time.as_unit("us"),
        "amount": e["amount"],
        "distance_from_home_km": e["distance"],
        "merchant_risk": e["risk"],
        "merchant_category": np.asarray(CATEGORIES, dtype=object)[e["category"]],
        "channel": np.asarray(CHANNELS, dtype=object)[e["channel"]],
        "country": np.asarray(COUNTRIES, dtype=object)[e["country"]],
        "card_present": e["card_present"].astype(bool),
    }
    frame = pd.DataFrame({c: columns[c] for c in dataset.event_columns()})
    frame[TRUTH_LABEL] = np.where(e["fraud"], dataset.positive_label, negative).astype(np.int64)
    frame[TRUTH_LABEL_TIME] = pd.Series(label_time.as_unit("us")).where(e["fraud"])
    return frame


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    return prefix + pd.Series(numbers, dtype="int64").astype(str).str.zfill(width)


def _labels_by_day(
    dataset: DatasetSettings, sim: SimulatorSettings, frames: list[pd.DataFrame], days: int
) -> list[pd.DataFrame]:
    """The chargebacks arriving on each simulated day, sorted by arrival time."""
    frauds = pd.concat(
        [f.loc[f[TRUTH_LABEL] == dataset.positive_label] for f in frames], ignore_index=True
    )
    start = pd.Timestamp(sim.start_date, tz="UTC")
    arrival_day = (frauds[TRUTH_LABEL_TIME] - start) // pd.Timedelta(days=1)
    labels = pd.DataFrame({
        dataset.event_id: frauds[dataset.event_id],
        dataset.entity_id: frauds[dataset.entity_id],
        dataset.label: np.full(len(frauds), dataset.positive_label, dtype=np.int64),
        dataset.label_timestamp: frauds[TRUTH_LABEL_TIME],
    })  # fmt: skip
    labels = labels.assign(_day=arrival_day.to_numpy())
    labels = labels.sort_values([dataset.label_timestamp, dataset.event_id], kind="stable")
    grouped = {d: g.drop(columns="_day") for d, g in labels.groupby("_day", sort=True)}
    empty = labels.drop(columns="_day").iloc[:0]
    return [grouped.get(d, empty).reset_index(drop=True) for d in range(days)]


def _break_rows(
    dataset: DatasetSettings, sim: SimulatorSettings, day_index: int, rows: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Null keys and amounts as text in a share of the rows of a broken-feed day."""
    rng = _day_streams(sim.seed, _STREAM_FAULTS, day_index)[0]
    n = len(rows)
    k = max(1, min(n // 4, round(n * _BROKEN_ROW_SHARE * sim.drift_strength)))
    picked = rng.permutation(n)[: 4 * k].reshape(4, k)
    rows = rows.copy()
    keys = [dataset.event_id, dataset.entity_id, dataset.event_timestamp]
    for column, where in zip(keys, picked[:3], strict=True):
        rows.loc[rows.index[where], column] = None
    amount = rows["amount"].astype(object)
    amount.iloc[picked[3]] = _BAD_AMOUNT
    rows["amount"] = amount
    faults = {
        "null_rows": {c: int(rows[c].isna().sum()) for c in keys},
        "bad_type_rows": {"amount": k},
        "bad_value": _BAD_AMOUNT,
    }
    return rows, faults


def _broken_files(
    dataset: DatasetSettings, landing: LandingSettings, rows: pd.DataFrame
) -> dict[str, bytes]:
    """The broken day lands three files: the bulk, the bulk again, and a truncated tail."""
    fmt = landing.format
    split = len(rows) - max(2, len(rows) // 10)
    bulk = _serialise(dataset, landing, rows.iloc[:split])
    tail = _serialise(dataset, landing, rows.iloc[split:])
    if fmt == "parquet":
        truncated = tail[: len(tail) * 2 // 3]  # no footer: unreadable
    else:
        body, last = tail.rstrip(b"\n").rsplit(b"\n", 1)
        truncated = body + b"\n" + last[: len(last) // 2]
    return {
        f"part-00000.{fmt}": bulk,
        f"part-00000-redelivered.{fmt}": bulk,
        f"part-00001.{fmt}": truncated,
    }


def _serialise(
    dataset: DatasetSettings, landing: LandingSettings, rows: pd.DataFrame, kind: Kind = "events"
) -> bytes:
    types = dataset.event_columns() if kind == "events" else dataset.label_columns()
    if landing.format == "parquet":
        return _parquet(rows, types)
    text = rows.copy()
    for column, logical in types.items():
        if logical == "timestamp":
            text[column] = _iso(text[column])
        elif logical == "boolean" and landing.format == "csv":
            text[column] = text[column].map({True: "true", False: "false"})
    if landing.format == "csv":
        return text.to_csv(index=False, lineterminator="\n").encode("utf-8")
    if text.empty:
        return b""
    return text.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")


def _iso(times: pd.Series) -> pd.Series:
    return times.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).where(times.notna(), None)


_ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
}


def _parquet(rows: pd.DataFrame, types: dict[str, str]) -> bytes:
    fields = []
    for column, logical in types.items():
        textual = rows[column].dtype == object and logical not in ("string", "timestamp")
        # A wrongly typed value (broken_feed) makes the whole column text, as a real feed would.
        fields.append(pa.field(column, pa.string() if textual else _ARROW_TYPES[logical]))
    frame = rows[list(types)].copy()
    for field in fields:
        if field.type == pa.string():
            frame[field.name] = frame[field.name].map(_text, na_action="ignore")
    table = pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(None), buffer)
    return buffer.getvalue()


def _text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def _replace_day(fs: fsspec.AbstractFileSystem, folder: str, files: dict[str, bytes]) -> list[str]:
    if fs.exists(folder):
        fs.rm(folder, recursive=True)
    fs.makedirs(folder, exist_ok=True)
    paths = []
    for name, content in sorted(files.items()):
        path = f"{folder}/{name}"
        with fs.open(path, "wb") as out:
            out.write(content)
        paths.append(path)
    return paths


_AFFECTED = {
    "stable": ([], []),
    "covariate_shift": (
        ["amount", "channel"],
        ["card_present", "merchant_category", "merchant_risk", "country", "distance_from_home_km"],
    ),
    "prior_shift": (["{label}"], [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, *BOOLEAN_FEATURES]),
    "concept_drift": (["{label}"], ["amount", "merchant_category"]),
    "new_category": (["merchant_category"], ["amount", "merchant_risk", "{label}"]),
    "seasonality": (["amount", "{event_timestamp}"], []),
    "broken_feed": (["{event_id}", "{entity_id}", "{event_timestamp}", "amount"], []),
}


def _affected(sim: SimulatorSettings, day_index: int) -> bool:
    """Whether the scenario changes this day (a seasonality day: one of the peak days)."""
    if sim.scenario == "stable" or sim.drift_strength == 0:
        return False
    if sim.scenario == "broken_feed":
        return day_index == sim.drift_onset_day
    if sim.scenario == "seasonality":
        return _in_peak(sim, day_index)
    return day_index >= sim.drift_onset_day


def _truth(
    dataset: DatasetSettings,
    sim: SimulatorSettings,
    landing: LandingSettings,
    days: int,
    per_day: list[dict[str, Any]],
    broken: dict[str, object],
) -> dict[str, object]:
    roles = {
        "event_id": dataset.event_id,
        "entity_id": dataset.entity_id,
        "event_timestamp": dataset.event_timestamp,
        "label": dataset.label,
        "label_timestamp": dataset.label_timestamp,
    }
    affected, dependent = _AFFECTED[sim.scenario]
    drifts = sim.scenario != "stable" and sim.drift_strength > 0
    onset = sim.start_date + dt.timedelta(days=sim.drift_onset_day)
    truth: dict[str, object] = {
        "scenario": sim.scenario,
        "description": _DESCRIPTIONS[sim.scenario],
        "seed": sim.seed,
        "start_date": sim.start_date.isoformat(),
        "days": days,
        "onset_day": sim.drift_onset_day if drifts else None,
        "onset_date": onset.isoformat() if drifts else None,
        "onset_in_range": drifts and sim.drift_onset_day < days,
        "strength": sim.drift_strength,
        "affected_columns": [c.format(**roles) for c in affected],
        "dependent_columns": [c.format(**roles) for c in dependent],
        "fraud_rate": sim.fraud_rate,
        "mean_label_delay_days": sim.mean_label_delay_days,
        "label_delay_days": dataset.label_delay_days,
        "format": landing.format,
        "columns": roles,
        "per_day": [{**row, "affected": _affected(sim, row["day_index"])} for row in per_day],
    }
    if sim.scenario == "seasonality":
        truth["peak_days"] = [
            (sim.start_date + dt.timedelta(days=d)).isoformat()
            for d in range(sim.drift_onset_day, min(days, sim.drift_onset_day + _PEAK_DAYS))
        ]
    if broken:
        truth["broken_feed"] = broken
    return truth
