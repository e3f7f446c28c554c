"""A small dataset shaped nothing like the simulator's, written as a user's landing files:
loan applications with column names that have spaces, a true/false column, categories with
symbols (``A+``, ``b/c``, ``ü-ß``), no entity beyond the application id, and defaults known
up to 30 days after the application (the simulator's labels take up to 14). Label files
carry only the application id, the label and when it became known.

:func:`user_params` is the params.yaml a new user writes for it, from the repository's
file: the ``dataset`` section replaced, ``landing.path`` pointed at the files, the
simulator disabled, and the sections that named the simulator's columns emptied or set to
the loans' own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

START = dt.date(2026, 3, 1)
DELAY_DAYS = 30
CONTRACT = {
    "name": "loan_applications",
    "event_id": "Application ID",
    "entity_id": None,  # no applicant id: an application is all there is
    "event_timestamp": "Submitted At",
    "label": "Defaulted",
    "label_timestamp": "Known At",
    "label_values": [0, 1],
    "positive_label": 1,
    "label_delay_days": DELAY_DAYS,
    "numeric_features": ["Loan Amount", "Annual Income", "Credit Score"],
    "categorical_features": ["Grade", "Purpose"],
    "boolean_features": ["Has Cosigner"],
    "slice_columns": ["Grade"],
}
GRADES = {"A+": -1.6, "A": -0.8, "b/c": 0.2, "ü-ß": 1.0, "D & E": 1.8}
PURPOSES = {"car": 0.0, "home/rent": 0.3, "études": -0.3, "other": 0.5}


def user_params(repo: Path, landing: Path, **sections: dict) -> dict:
    """The repository's params.yaml as a user edits it for the loans (``sections`` merged
    over the result, section by section)."""
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["dataset"] = dict(CONTRACT)
    raw["landing"] = {"path": str(landing), "format": "csv"}
    raw["simulator"]["enabled"] = False  # `regrow simulate` leaves the landing alone
    raw["validation"].pop("allowed_values", None)  # the simulator's categories
    raw["features"] = {"windows": [], "sum_columns": [], "ratio_columns": []}
    raw["evaluate"]["behavioral"] = [
        # A euro more on a loan of thousands must not move a score.
        {"name": "amount_rounding", "kind": "invariance", "feature": "Loan Amount",
         "add": 1.0, "tolerance": 0.02},
    ]  # fmt: skip
    raw["airflow"]["start_date"] = str(START)
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def write_landing(
    root: Path, days: int, per_day: int, seed: int = 7, delay_days: int = DELAY_DAYS
) -> dict[str, int]:
    """``days`` days of applications from :data:`START` as CSV landing files under
    ``root``, and the decisions known by the last day (each within ``delay_days`` of its
    application); returns the rows written."""
    rng = np.random.default_rng(seed)
    frames = [_day(START + dt.timedelta(days=i), per_day, rng) for i in range(days)]
    events = pd.concat(frames, ignore_index=True)
    last = pd.Timestamp(START + dt.timedelta(days=days), tz="UTC")  # exclusive
    labels = _labels(events, rng, delay_days)
    labels = labels[labels["Known At"] < last]
    for day, rows in events.groupby(events["Submitted At"].dt.date):
        _csv(root / "events" / str(day), rows.drop(columns=["__default"]))
    for day, rows in labels.groupby(labels["Known At"].dt.date):
        _csv(root / "labels" / str(day), rows)
    return {"events": len(events), "labels": len(labels)}


def _day(day: dt.date, n: int, rng: np.random.Generator) -> pd.DataFrame:
    income = np.round(rng.lognormal(10.6, 0.45, n), 2)
    amount = np.round(income * rng.uniform(0.05, 0.6, n), 2)
    score = np.clip(rng.normal(680, 60, n), 300, 850).round()
    grade = rng.choice(list(GRADES), n, p=[0.15, 0.25, 0.3, 0.2, 0.1])
    purpose = rng.choice(list(PURPOSES), n)
    cosigner = rng.random(n) < 0.25
    # Several inputs matter about as much: no single one ranks like the model.
    logit = (
        -2.0
        + 3.0 * (amount / income - 0.3)
        - 0.007 * (score - 680)
        + np.vectorize(GRADES.get)(grade)
        + np.vectorize(PURPOSES.get)(purpose)
        - 0.9 * cosigner
    )
    seconds = np.sort(rng.integers(0, 86_400, n))
    return pd.DataFrame({
        "Application ID": [f"APP {day:%m%d}-{k:04d}" for k in range(n)],
        "Submitted At": pd.Timestamp(day, tz="UTC") + pd.to_timedelta(seconds, "s"),
        "Loan Amount": amount,
        "Annual Income": income,
        "Credit Score": score,
        "Grade": grade,
        "Purpose": purpose,
        "Has Cosigner": cosigner,
        "__default": rng.random(n) < 1 / (1 + np.exp(-logit)),
    })  # fmt: skip


def _labels(events: pd.DataFrame, rng: np.random.Generator, delay_days: int) -> pd.DataFrame:
    """A default is known 1 to ``delay_days`` days after the application (one in ten exactly
    ``delay_days`` days after: the window's last instant); a third of the repaid loans get an
    explicit 0."""
    defaulted = events[events["__default"]]
    repaid = events[~events["__default"]].sample(frac=1 / 3, random_state=1)
    known = pd.concat([defaulted, repaid])
    delay = pd.to_timedelta(rng.integers(86_400, delay_days * 86_400, len(known)), "s")
    on_the_boundary = rng.random(len(known)) < 0.1
    delay = delay.where(~on_the_boundary, pd.Timedelta(days=delay_days))
    return pd.DataFrame({
        "Application ID": known["Application ID"].to_numpy(),
        "Defaulted": known["__default"].astype(int).to_numpy(),
        "Known At": (known["Submitted At"] + delay).to_numpy(),
    }).sort_values("Known At", kind="stable")  # fmt: skip


def _csv(folder: Path, rows: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    out = rows.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype) or column == "Known At":
            out[column] = pd.to_datetime(out[column], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif out[column].dtype == bool:
            out[column] = out[column].map({True: "true", False: "false"})
    out.to_csv(folder / "part-00000.csv", index=False)
