"""The monitor and the policy on a second, differently shaped dataset: loan applications
with column names that have spaces, unicode and a euro sign, no feature the simulator
has, and no windowed feature in the table. Nothing in the library may
assume the card-transactions contract.

The tables are written straight from pandas (silver.features and silver.labels as the
silver stages leave them); the model is a small XGBoost fitted on the days before the
monitored ones, registered with its lineage and scored by ``score_day``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xgboost as xgb
import yaml

from regrow.catalog import (
    CHAMPION,
    EVENT_DATE,
    FEATURES,
    LABEL_DATE,
    RUN_ID,
    SILVER_LABELS,
    SOURCE_VERSION,
)
from regrow.data.transform import Transform
from regrow.model.registry import Registry
from regrow.model.scoring import score_day
from regrow.model.training import Model
from regrow.monitoring.monitor import monitor_day
from regrow.monitoring.results import DRIFT, INSUFFICIENT, NULL_RATE, UNSEEN
from regrow.policy.daily import decide_day
from regrow.validation import write_suites
from tests.conftest import context_of, lakehouse_of, write_params

# A few minutes of Spark and MLflow: started first (see pytest_collection_modifyitems).
pytestmark = pytest.mark.slow

START, DAYS, SHIFT = dt.date(2025, 3, 1), 11, 10  # day 10: incomes halve, a new région
CONTRACT = {
    "name": "loans",
    "event_id": "application id",
    "entity_id": "applicant",
    "event_timestamp": "applied at",
    "label": "outcome",
    "label_timestamp": "known at",
    "label_values": [0, 1],  # labels are integers in the contract (1: defaulted)
    "positive_label": 1,
    "label_delay_days": 2,
    "numeric_features": ["income €", "âge"],
    "categorical_features": ["région"],
    "boolean_features": ["has guarantor"],
    "slice_columns": [],
    "value_ranges": {},
    "allowed_values": {},
}
SECTIONS = {
    "dataset": CONTRACT,
    # No column of the card contract anywhere: the windows sum the loans' own income.
    "features": {"windows": ["24h"], "sum_columns": ["income €"], "ratio_columns": []},
    "evaluate": {"behavioral": []},
    "monitor": {"min_rows": 300, "performance": {"bootstrap": 20, "min_positives": 5}},
    "policy": {"triggers": {"drift": {"n": 1, "m": 1}}},
}
RÉGIONS = ["Île-de-France", "Bretagne", "Occitanie"]


def day_frame(i: int, rng: np.random.Generator, n: int = 800) -> pd.DataFrame:
    day = START + dt.timedelta(days=i)
    shifted = i >= SHIFT
    income = rng.lognormal(10, 0.4, n) * (0.5 if shifted else 1.0)
    age = rng.integers(20, 70, n).astype(float)
    regions = RÉGIONS + (["Corse"] if shifted else [])
    risk = -3 - (income / 40_000) + (age < 25) * 0.8
    frame = pd.DataFrame({
        "application id": [f"app {i:02d}-{k:04d}" for k in range(n)],
        "applicant": [f"person-{rng.integers(0, 2000)}" for _ in range(n)],
        "applied at": pd.to_datetime(day) + pd.to_timedelta(rng.integers(0, 86_400, n), "s"),
        "income €": income,
        "âge": age,
        "région": rng.choice(regions, n),
        "has guarantor": rng.random(n) < 0.3,
    })  # fmt: skip
    # Delta stores microseconds: the table is created from the first day in those units.
    frame["applied at"] = frame["applied at"].dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    frame["defaulted"] = rng.random(n) < 1 / (1 + np.exp(-risk))
    frame[EVENT_DATE] = day
    return frame


@pytest.fixture(scope="module")
def loans(spark, tmp_path_factory, mlflow_template):
    from regrow.settings import load_settings

    root = tmp_path_factory.mktemp("loans")
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    params = write_params(root, **SECTIONS)
    settings = load_settings(params)
    # The loans' own suites (`regrow expectations generate`): scoring validates its output.
    suites = root / "expectations"
    write_suites(settings.dataset, suites, settings.features)
    raw = yaml.safe_load(params.read_text())
    raw["validation"]["expectations_dir"] = str(suites)
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(params)
    rng = np.random.default_rng(3)
    frames = [day_frame(i, rng) for i in range(DAYS)]
    lakehouse = lakehouse_of(settings)
    features = ["income €", "âge", "région", "has guarantor"]
    for frame in frames:
        table = frame.drop(columns=["defaulted"]).assign(**{SOURCE_VERSION: 0, RUN_ID: "test"})
        lakehouse.append_records(FEATURES, pa.Table.from_pandas(table, preserve_index=False),
                                 partition_by=[EVENT_DATE])  # fmt: skip
        bad = frame[frame["defaulted"]]
        labels = pd.DataFrame({
            "application id": bad["application id"], "applicant": bad["applicant"],
            "applied at": bad["applied at"], EVENT_DATE: bad[EVENT_DATE],
            "outcome": 1, "known at": bad["applied at"] + pd.Timedelta(days=1),
        })  # fmt: skip
        labels["known at"] = labels["known at"].astype("datetime64[us, UTC]")
        labels[LABEL_DATE] = labels["known at"].dt.date
        lakehouse.append_records(SILVER_LABELS, pa.Table.from_pandas(labels, preserve_index=False),
                                 partition_by=[LABEL_DATE])  # fmt: skip
    train = pd.concat(frames[:6], ignore_index=True)
    transform = Transform.fit(train, ["income €", "âge", "has guarantor"], ["région"], 2)
    booster = xgb.train({"max_depth": 3, "eta": 0.3, "objective": "binary:logistic",
                         "nthread": 1, "seed": 1},
                        xgb.DMatrix(transform.apply(train[features]), label=train["defaulted"]),
                        num_boost_round=30)  # fmt: skip
    registry = Registry(settings)
    lineage = {
        "train_window": f"{START}T00:00:00+00:00..{START + dt.timedelta(days=5)}T23:59:59+00:00",
        "train_last_event": f"{START + dt.timedelta(days=5)}T23:59:59+00:00",
        "cutoff_date": str(START + dt.timedelta(days=6)),
    }
    with registry.run("loans") as run_id:  # as register_versions, with the loans' example
        uri, model_id = registry.log_model(Model(booster, transform), train[features].head(3))
        version = registry.register(uri, model_id, run_id, {**lineage, "run_id": run_id})
    registry.set_alias(CHAMPION, version.version)
    outcomes = {}
    # Days like the training days, and the first shifted day (its realised performance is
    # day 8's: label_delay_days back).
    for i in (6, 8, SHIFT):
        day = START + dt.timedelta(days=i)
        ctx = context_of(settings, spark, f"loans-{day}", lakehouse)
        score_day(ctx, day)
        outcomes[day] = (monitor_day(ctx, day), decide_day(ctx, day))
    return settings, outcomes


def test_the_loans_are_monitored_by_their_own_columns(loans):
    _, outcomes = loans
    report, _ = outcomes[START + dt.timedelta(days=6)]
    checked = {(r.check, r.column) for r in report.drift.results}
    assert {(DRIFT, "income €"), (DRIFT, "région"), (DRIFT, "has guarantor"),
            (UNSEEN, "région"), (NULL_RATE, "âge")} <= checked  # fmt: skip
    assert not {c for _, c in checked} & {"amount", "channel", "merchant_category"}
    # The windowed features were never built for this table: recorded, never a crash.
    windowed = [r for r in report.drift.results if r.column == "prior_events_24h"]
    assert windowed and windowed[0].status == INSUFFICIENT
    assert "not a column of silver.features" in windowed[0].detail["reason"]
    assert not report.drift.flagged  # same world as the training days


def test_the_shift_is_flagged_and_the_policy_asks_for_a_retrain(loans):
    _, outcomes = loans
    report, decision = outcomes[START + dt.timedelta(days=SHIFT)]
    flagged = {(r.check, r.column) for r in report.drift.flagged}
    assert (DRIFT, "income €") in flagged and (UNSEEN, "région") in flagged
    unseen = next(r for r in report.drift.results if (r.check, r.column) == (UNSEEN, "région"))
    assert "Corse" in json.dumps(unseen.detail)
    assert decision.action == "retrain_warm" and decision.trigger.startswith("drift")
    realised = [r for r in report.performance.results if r.check == "performance_realised"]
    assert {r.column for r in realised} == {"pr_auc", "roc_auc", "log_loss", "ece"}
    assert all(r.status == "ok" and 0 <= r.value for r in realised), realised
