"""The simulated world: the card population, the fraud model, and what each scenario
changes in a day's draw.

Each attribute of a day is drawn from its own random stream, and the fraud model's
intercepts are calibrated once per population on a reference sample.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd

from regrow.settings import DatasetSettings, SimulatorSettings

NUMERIC_FEATURES = ("amount", "distance_from_home_km", "merchant_risk")
CATEGORICAL_FEATURES = ("merchant_category", "channel", "country")
BOOLEAN_FEATURES = ("card_present",)

# Hidden ground-truth columns of simulate_day()'s frame; never written to an events file.
TRUTH_LABEL = "_truth_label"
TRUTH_LABEL_TIME = "_truth_label_time"

_SECONDS_PER_DAY = 86_400
_IDS_PER_DAY = 10_000_000
_REFERENCE_EVENTS = 50_000
# Entropy words that keep the random streams of the population, the calibration sample,
# each day and each day's feed faults apart.
STREAM_POPULATION, STREAM_REFERENCE, STREAM_DAY, STREAM_FAULTS = 1, 2, 3, 4

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
PEAK_DAYS = 3
_HOURLY_VOLUME = np.array(
    [1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0,
     5.5, 5.0, 4.5, 4.5, 5.0, 5.5, 6.0, 6.0, 5.0, 4.0, 3.0, 2.0]
)  # fmt: skip


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
    if dataset.entity_id is None:
        problems.append("no entity_id (the simulator's transactions belong to cards)")
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
    if n > _IDS_PER_DAY:
        raise ValueError(f"day {day}: {n} events exceed the {_IDS_PER_DAY} event ids of a day")
    rngs = day_streams(sim.seed, STREAM_DAY, day_index)

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


def day_streams(seed: int, stream: int, day_index: int) -> list[np.random.Generator]:
    # One generator per attribute: changing how one column is drawn never shifts another.
    sequence = np.random.SeedSequence([_seed(seed), stream, day_index])
    return [np.random.default_rng(s) for s in sequence.spawn(10)]


@lru_cache(maxsize=8)
def _world(seed: int, n_entities: int, fraud_rate: float) -> _World:
    rng = np.random.default_rng([seed, STREAM_POPULATION])
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
    rngs = [np.random.default_rng([seed, STREAM_REFERENCE, i]) for i in range(10)]
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
    if in_peak(sim, day_index):
        factor *= 1 + s
    return max(1, round(sim.events_per_day * factor))


def _amount_scale(sim: SimulatorSettings, day_index: int) -> float:
    if sim.scenario != "seasonality":
        return 1.0
    s = sim.drift_strength
    weekday = (sim.start_date + dt.timedelta(days=day_index)).weekday()
    scale = 1 + s * (_WEEKLY_AMOUNT[weekday] - 1)
    if in_peak(sim, day_index):
        scale *= 1 + 0.25 * s
    return float(scale)


def in_peak(sim: SimulatorSettings, day_index: int) -> bool:
    return sim.drift_onset_day <= day_index < sim.drift_onset_day + PEAK_DAYS


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
