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

from regrow.data.simulate.ground_truth import TRUTH_FILE
from regrow.data.simulate.landing_files import (
    SimulationError,
    SimulationSummary,
    check_days_past,
    claim_landing,
    write_landing,
)
from regrow.data.simulate.world import (
    BOOLEAN_FEATURES,
    CATEGORICAL_FEATURES,
    CATEGORIES,
    CHANNELS,
    COUNTRIES,
    NEW_CATEGORY,
    NUMERIC_FEATURES,
    TRUTH_LABEL,
    TRUTH_LABEL_TIME,
    check_contract,
    simulate_day,
)

__all__ = [
    "BOOLEAN_FEATURES",
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "CHANNELS",
    "COUNTRIES",
    "NEW_CATEGORY",
    "NUMERIC_FEATURES",
    "TRUTH_FILE",
    "TRUTH_LABEL",
    "TRUTH_LABEL_TIME",
    "SimulationError",
    "SimulationSummary",
    "check_days_past",
    "check_contract",
    "claim_landing",
    "simulate_day",
    "write_landing",
]
