"""The scenario's ground truth, ``{root}/_scenario.json``: what changed, from which day,
in which columns, and the per-day counts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from regrow.data.simulate.world import (
    BOOLEAN_FEATURES,
    CATEGORICAL_FEATURES,
    NEW_CATEGORY,
    NUMERIC_FEATURES,
    PEAK_DAYS,
    in_peak,
)
from regrow.settings import DatasetSettings, LandingSettings, SimulatorSettings

TRUTH_FILE = "_scenario.json"

_DESCRIPTIONS = {
    "stable": "no drift: every day is drawn from the same distribution",
    "covariate_shift": "amounts rise and more payments go online; fraud given features unchanged",
    "prior_shift": "the fraud rate rises; features given fraud unchanged",
    "concept_drift": "fraud moves from large purchases to small digital ones (card testing)",
    "new_category": f"merchant_category value {NEW_CATEGORY!r}, never seen before, appears",
    "seasonality": "weekly volume/amount cycle from day 0; a three-day holiday peak at onset",
    "broken_feed": "onset day: null keys, amount as text, a duplicated and a truncated file",
}

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
        return in_peak(sim, day_index)
    return day_index >= sim.drift_onset_day


def scenario_truth(
    dataset: DatasetSettings,
    sim: SimulatorSettings,
    landing: LandingSettings,
    days: int,
    per_day: list[dict[str, Any]],
    broken: dict[str, object],
) -> dict[str, object]:
    """The ``_scenario.json`` record of a run: onset, affected columns, per-day counts."""
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
            for d in range(sim.drift_onset_day, min(days, sim.drift_onset_day + PEAK_DAYS))
        ]
    if broken:
        truth["broken_feed"] = broken
    return truth
