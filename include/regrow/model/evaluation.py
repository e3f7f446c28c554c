"""Evaluation and the promotion gate.

Champion and challenger are scored on the same rows: the *backtest* window (the newest
matured days: the training set's test split) and a *pinned* static test set that does not
move between retrains. Each gets PR-AUC, ROC-AUC, log loss and expected calibration error,
per-slice metrics on ``dataset.slice_columns``, and the behavioral tests of
``evaluate.behavioral``.

:func:`gate` decides, and every rule it applies is written down in its result:

- with a champion: the challenger's primary metric on the backtest beats the champion's by
  ``min_improvement``; no gated slice loses more than ``slice_tolerance``; on the pinned set
  it loses no more than ``pinned_tolerance`` (when set; otherwise the pinned numbers are
  recorded, not gated);
- with no champion (the first model): it beats every baseline by ``min_improvement``;
- always: every behavioral test passes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from regrow.settings import BehavioralTest, DatasetSettings, EvaluateSettings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from regrow.model.training import Baseline, Model

logger = logging.getLogger(__name__)

BACKTEST, PINNED = "backtest", "pinned"
# log loss and ECE: lower is better.
LOWER_IS_BETTER = frozenset({"log_loss", "ece"})


def better(metric: str, a: float, b: float) -> float:
    """How much better ``a`` is than ``b`` on ``metric`` (positive = better)."""
    return (b - a) if metric in LOWER_IS_BETTER else (a - b)


def labels_of(frame: pd.DataFrame, dataset: DatasetSettings) -> np.ndarray:
    return (frame[dataset.label] == dataset.positive_label).astype("int32").to_numpy()


def reliability(y: np.ndarray, p: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Equal-width probability bins: mean score, observed positive rate, rows."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append({
                "bin": b,
                "mean_score": float(p[mask].mean()),
                "positive_rate": float(y[mask].mean()),
                "rows": int(mask.sum()),
            })  # fmt: skip
    return out


def metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float | int | None]:
    """PR-AUC (average precision), ROC-AUC, log loss and ECE of scores ``p`` for labels ``y``.

    Ranking metrics are None when ``y`` has a single class (they are undefined there).
    """
    import numpy as np
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    rows, positives = len(y), int(y.sum())
    both = 0 < positives < rows
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    ece = sum(
        b["rows"] * abs(b["mean_score"] - b["positive_rate"]) for b in reliability(y, p, bins)
    )
    return {
        "rows": rows,
        "positives": positives,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])) if rows else None,
        "ece": float(ece / rows) if rows else None,
    }


def slice_metrics(
    frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, columns: list[str], bins: int
) -> list[dict[str, Any]]:
    """Metrics per value of each slice column (raw values; a missing one is ``null``)."""
    out = []
    for column in columns:
        values = frame[column].astype("object").where(frame[column].notna(), "null").astype(str)
        for value in sorted(values.unique()):
            mask = (values == value).to_numpy()
            out.append({"column": column, "value": value, **metrics(y[mask], p[mask], bins)})
    return out


def perturb(frame: pd.DataFrame, test: BehavioralTest) -> pd.DataFrame:
    changed = frame.copy()
    column = changed[test.feature]
    if test.add is not None:
        changed[test.feature] = column.astype("float64") + test.add
    elif test.multiply is not None:
        changed[test.feature] = column.astype("float64") * test.multiply
    else:
        changed[test.feature] = test.set
    return changed


def behavioral(model: Model, frame: pd.DataFrame, tests: list[BehavioralTest]) -> list[dict]:
    """Run each behavioral test on ``frame`` (raw rows); one result per test."""
    import numpy as np

    results = []
    base = model.predict(frame) if tests else None
    for test in tests:
        delta = model.predict(perturb(frame, test)) - base
        if test.kind == "invariance":
            value = float(np.abs(delta).mean()) if len(delta) else 0.0
            passed = value <= test.tolerance
            detail = f"mean |score change| {value:.4f} (tolerance {test.tolerance})"
        else:
            sign = 1.0 if test.direction == "up" else -1.0
            mean = float((sign * delta).mean()) if len(delta) else 0.0
            fraction = float((sign * delta >= -1e-9).mean()) if len(delta) else 1.0
            value = mean
            passed = mean > 0 and fraction >= test.min_fraction
            detail = (
                f"mean score moved {sign * mean:+.4f} ({test.direction} expected); "
                f"{fraction:.1%} of rows moved {test.direction} or stayed (min {test.min_fraction:.0%})"
            )
        results.append({"name": test.name, "kind": test.kind, "feature": test.feature,
                        "value": value, "passed": bool(passed), "detail": detail})  # fmt: skip
    return results


@dataclass
class Evaluation:
    """One model on the evaluation sets: metrics per set, slices and behavioral results."""

    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)
    behavioral: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    model: Model,
    sets: Mapping[str, pd.DataFrame],
    dataset: DatasetSettings,
    cfg: EvaluateSettings,
    with_curves: bool = False,
) -> Evaluation:
    """Score ``model`` on each named set of raw rows; slices and behavioral tests on the
    backtest set (the first set when there is no backtest)."""
    out = Evaluation()
    main = BACKTEST if BACKTEST in sets else next(iter(sets))
    for name, frame in sets.items():
        missing = [c for c in model.features if c not in frame.columns]
        if missing and name != main:
            # A pinned set older than a feature cannot score a model that uses it: say so
            # (the gate then has no number from it) rather than fail the whole evaluation.
            out.sets[name] = {"rows": len(frame), "skipped": f"no column(s) {missing}: "
                              f"the set predates them (delete it to pin a new one)"}  # fmt: skip
            logger.warning("%s set not scored: it has no column(s) %s", name, missing)
            continue
        y, p = labels_of(frame, dataset), model.predict(frame)
        out.sets[name] = metrics(y, p, cfg.calibration_bins)
        if name == main:
            out.slices = slice_metrics(frame, y, p, dataset.slice_columns, cfg.calibration_bins)
            out.behavioral = behavioral(model, frame, cfg.behavioral)
            if with_curves:
                out.curves = curves(y, p, cfg.calibration_bins)
    return out


def evaluate_baselines(
    baselines: list[Baseline], inputs: pd.DataFrame, y: np.ndarray, bins: int
) -> dict[str, dict[str, Any]]:
    """Metrics of each baseline on model inputs ``inputs`` with labels ``y``."""
    return {b.name: metrics(y, b.predict(inputs), bins) for b in baselines}


def curves(y: np.ndarray, p: np.ndarray, bins: int, points: int = 101) -> dict[str, Any]:
    """ROC and PR curves (thinned to about ``points`` points) and the reliability table."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve, roc_curve

    if not 0 < y.sum() < len(y):
        return {"roc": [], "pr": [], "reliability": reliability(y, p, bins)}
    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)

    def thin(a: np.ndarray, b: np.ndarray) -> list[tuple[float, float]]:
        keep = np.unique(np.linspace(0, len(a) - 1, min(points, len(a))).round().astype(int))
        return [(round(float(a[i]), 6), round(float(b[i]), 6)) for i in keep]

    return {
        "roc": [{"fpr": a, "tpr": b} for a, b in thin(fpr, tpr)],
        "pr": [{"recall": a, "precision": b} for a, b in thin(recall[::-1], precision[::-1])],
        "reliability": reliability(y, p, bins),
    }


# ----------------------------------------------------------------------------- gate
@dataclass
class GateResult:
    """The gate's verdict: promote or not, the one-line reason, and every check made."""

    promote: bool
    reason: str
    checks: list[dict[str, Any]]
    primary_metric: str

    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]


def _value(evaluation: Evaluation, dataset_name: str, metric: str) -> float | None:
    value = evaluation.sets.get(dataset_name, {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def gate(
    challenger: Evaluation,
    champion: Evaluation | None,
    baselines: Mapping[str, Mapping[str, Any]],
    cfg: EvaluateSettings,
) -> GateResult:
    """Promote the challenger or keep the champion (see the module docstring)."""
    metric, margin = cfg.primary_metric, cfg.min_improvement
    checks: list[dict[str, Any]] = []
    mine = _value(challenger, BACKTEST, metric)
    if mine is None:
        checks.append({"check": f"backtest {metric}", "passed": False,
                       "detail": "undefined on the backtest set (a single class?)"})  # fmt: skip
    elif champion is None:
        for name, values in baselines.items():
            theirs = values.get(metric)
            gain = better(metric, mine, theirs) if theirs is not None else math.inf
            checks.append({
                "check": f"beats baseline {name}", "passed": gain >= margin,
                "challenger": mine, "other": theirs, "improvement": gain,
                "detail": f"{metric} {mine:.4f} vs {name} {_fmt(theirs)} "
                          f"({'+' if gain >= 0 else ''}{gain:.4f}, margin {margin})",
            })  # fmt: skip
    else:
        theirs = _value(champion, BACKTEST, metric)
        gain = better(metric, mine, theirs) if theirs is not None else math.inf
        checks.append({
            "check": "beats champion on backtest", "passed": gain >= margin,
            "challenger": mine, "other": theirs, "improvement": gain,
            "detail": f"{metric} {mine:.4f} vs champion {_fmt(theirs)} "
                      f"({'+' if gain >= 0 else ''}{gain:.4f}, margin {margin})",
        })  # fmt: skip
        checks.extend(_slice_checks(challenger, champion, cfg))
        pinned_mine, pinned_theirs = (
            _value(challenger, PINNED, metric),
            _value(champion, PINNED, metric),
        )
        if pinned_mine is not None and pinned_theirs is not None:
            gain = better(metric, pinned_mine, pinned_theirs)
            limit = cfg.pinned_tolerance
            checks.append({
                "check": "pinned test set", "passed": limit is None or gain >= -limit,
                "gated": limit is not None,
                "challenger": pinned_mine, "other": pinned_theirs, "improvement": gain,
                "detail": f"{metric} {pinned_mine:.4f} vs champion {pinned_theirs:.4f} "
                + ("(reported, not gated)" if limit is None else f"(may lose at most {limit})"),
            })  # fmt: skip
    for test in challenger.behavioral:
        checks.append({"check": f"behavioral {test['name']}", "passed": test["passed"],
                       "detail": test["detail"]})  # fmt: skip
    failed = [c for c in checks if not c["passed"]]
    against = "every baseline" if champion is None else "the champion"
    if failed:
        reason = "kept: " + "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
    else:
        reason = f"promoted: {metric} {mine:.4f} beats {against} by >= {margin}"
    logger.info("gate: %s", reason)
    return GateResult(not failed, reason, checks, metric)


def _slice_checks(
    challenger: Evaluation, champion: Evaluation, cfg: EvaluateSettings
) -> list[dict[str, Any]]:
    metric = cfg.primary_metric
    theirs = {(s["column"], s["value"]): s for s in champion.slices}
    checks = []
    for s in challenger.slices:
        other = theirs.get((s["column"], s["value"]))
        if other is None or s["rows"] < cfg.min_slice_rows or not s["positives"]:
            continue
        if s.get(metric) is None or other.get(metric) is None:
            continue
        gain = better(metric, s[metric], other[metric])
        checks.append({
            "check": f"slice {s['column']}={s['value']}", "passed": gain >= -cfg.slice_tolerance,
            "challenger": s[metric], "other": other[metric], "improvement": gain,
            "detail": f"{metric} {s[metric]:.4f} vs champion {other[metric]:.4f} "
                      f"(may lose at most {cfg.slice_tolerance})",
        })  # fmt: skip
    return checks


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
