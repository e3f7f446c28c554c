"""XGBoost training: stateless, or warm-started from the champion (stateful training).

A model is a booster plus the :class:`~regrow.trainset.Transform` its inputs went through.
The training-set snapshot holds raw feature values; :func:`train` applies the transform,
fits XGBoost (``hist``, fixed seed, early stopping on the validation split's log loss,
positives reweighted by ``scale_pos_weight`` if configured) and returns the model with the
facts a run records.

Stateful training (``train.mode: warm_start``) continues the parent's booster
(``xgb_model``) with at most ``warm_start.new_trees`` trees, fitted on only the training
rows newer than the parent's training window and within ``warm_start.recent_days`` of the
newest (:func:`warm_rows`), through the *parent's* transform: the
trees already there split on the parent's codes and scales, so the new rows must use the
same ones. :func:`plan_mode` decides when a warm start is not allowed (no parent, a cap
reached, no new rows) and says why; the run then trains from scratch.

Baselines (:func:`baselines`) are fitted on the same training split, so that every
evaluation can say how much better than a trivial model the real one is.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regrow.data.trainset import TRAIN, VALIDATION
from regrow.data.transform import Transform
from regrow.settings import DatasetSettings, TrainSettings, WarmStartSettings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

logger = logging.getLogger(__name__)

STATELESS, WARM_START = "stateless", "warm_start"
RANDOM, MAJORITY, HEURISTIC = "random", "majority", "heuristic"


class TrainingError(ValueError):
    """The training data cannot make a model (too few rows, one class); nothing is registered."""


@dataclass
class Model:
    """A booster and the transform of its inputs: what scoring and evaluation need."""

    booster: xgb.Booster
    transform: Transform

    @property
    def features(self) -> list[str]:
        return self.transform.columns

    @property
    def trees(self) -> int:
        return self.booster.num_boosted_rounds()

    def inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model inputs of raw feature rows (the transform applied)."""
        return self.transform.apply(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive label for raw feature rows."""
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(self.inputs(frame)))


@dataclass(frozen=True)
class Parent:
    """The model a warm start continues, and what the registry knows about it."""

    model: Model
    version: str
    train_end: dt.datetime  # the newest event of its training rows
    warm_starts_in_a_row: int = 0
    # The newest training event of a later retrain from scratch that the gate refused:
    # that model, trained on everything known then, did not beat this one, so its trees
    # still hold, and train.warm_start.max_age_days counts from here when it is newer.
    refused_full_end: dt.datetime | None = None


@dataclass
class TrainResult:
    model: Model
    mode: str
    # Why this mode (e.g. "warm_start: 412 new rows since 2026-01-10T23:59:00+00:00").
    mode_reason: str
    facts: dict[str, Any] = field(default_factory=dict)


def warm_start_cap(caps: WarmStartSettings, parent: Parent, cutoff: dt.date) -> str | None:
    """The cap of ``train.warm_start`` that forbids continuing ``parent`` for a training
    set of ``cutoff``, as a reason; None when a warm start is allowed."""
    if parent.model.trees >= caps.max_trees:
        return (
            f"champion v{parent.version} has {parent.model.trees} trees "
            f">= train.warm_start.max_trees={caps.max_trees}"
        )
    if parent.warm_starts_in_a_row >= caps.max_in_a_row:
        return (
            f"champion v{parent.version} ends {parent.warm_starts_in_a_row} warm "
            f"starts in a row (train.warm_start.max_in_a_row={caps.max_in_a_row})"
        )
    end, what = parent.train_end, f"champion v{parent.version}'s training window"
    if parent.refused_full_end is not None and parent.refused_full_end > end:
        end, what = parent.refused_full_end, "the last retrain from scratch the gate refused"
    age = (cutoff - end.date()).days
    if age > caps.max_age_days:
        return (
            f"{what} ended {age} days before the cut-off "
            f"(train.warm_start.max_age_days={caps.max_age_days})"
        )
    return None


def plan_mode(
    cfg: TrainSettings, train: pd.DataFrame, timestamp: str, parent: Parent | None,
    cutoff: dt.date, requested: str | None = None,
) -> tuple[str, str]:  # fmt: skip
    """Stateless or warm start, and why: a warm start needs a parent within every cap and
    at least ``min_rows`` training rows newer than the parent's training window."""
    mode = requested or cfg.mode
    if mode == STATELESS:
        return STATELESS, "stateless: configured"
    if parent is None:
        return STATELESS, "stateless: warm start asked, but there is no champion to continue"
    capped = warm_start_cap(cfg.warm_start, parent, cutoff)
    if capped:
        return STATELESS, f"stateless: {capped}"
    new = len(warm_rows(train, timestamp, parent, cfg.warm_start))
    recent = cfg.warm_start.recent_days
    within = f" within the newest {recent} days (train.warm_start.recent_days)" if recent else ""
    if new < cfg.min_rows:
        return STATELESS, (
            f"stateless: only {new} training rows are newer than champion v{parent.version}'s "
            f"window (ends {parent.train_end.isoformat()}){within}; a warm start needs "
            f"train.min_rows={cfg.min_rows}"
        )
    return WARM_START, (
        f"warm_start: {new} new rows since champion v{parent.version}'s window ended "
        f"{parent.train_end.isoformat()}{within}"
    )


def warm_rows(
    train: pd.DataFrame, timestamp: str, parent: Parent, caps: WarmStartSettings
) -> pd.DataFrame:
    """The rows a warm start fits its new trees on: those newer than the parent's training
    window and, with ``recent_days``, within that many days of the newest training event."""
    since = train[timestamp] > parent.train_end
    if caps.recent_days and len(train):
        since &= train[timestamp] > train[timestamp].max() - dt.timedelta(days=caps.recent_days)
    return train[since]


def check_trainable(train: pd.DataFrame, dataset: DatasetSettings, cfg: TrainSettings) -> None:
    """Stop before training on data that cannot make a model.

    Raises:
        TrainingError: fewer rows than ``train.min_rows``, a single class, or fewer
            positives than ``train.min_positives``.
    """
    rows = len(train)
    positives = int((train[dataset.label] == dataset.positive_label).sum())
    if rows < cfg.min_rows:
        raise TrainingError(
            f"the training split has {rows} rows, fewer than train.min_rows={cfg.min_rows}: "
            f"widen split.window_days or lower train.min_rows"
        )
    if positives == 0 or positives == rows:
        only = dataset.positive_label if positives else "negative"
        raise TrainingError(
            f"the training split has a single class ({rows} rows, all {only}): a classifier "
            f"needs both; check the labels of the window (regrow tables) or move the cut-off"
        )
    if positives < cfg.min_positives:
        raise TrainingError(
            f"the training split has {positives} positive rows, fewer than "
            f"train.min_positives={cfg.min_positives}: widen split.window_days"
        )


def booster_params(cfg: TrainSettings, scale_pos_weight: float) -> dict[str, Any]:
    params = {
        **cfg.params,
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "seed": cfg.seed,
        # XGBoost reseeds its random engine (subsample, colsample_*) only when it sets up a
        # new booster, and the engine is one per thread: a warm start from a booster in
        # memory drew from whatever the thread trained before (dmlc/xgboost#6711, #10324).
        # The replay's policies share a thread, so a policy's models depended on which
        # other policies were replayed. Seeding each round from the seed and the round
        # number makes a model a function of its inputs.
        "seed_per_iteration": True,
        "scale_pos_weight": scale_pos_weight,
    }
    if cfg.nthread:
        params["nthread"] = cfg.nthread
    return params


def train(
    splits: Mapping[str, pd.DataFrame],
    transform: Transform,
    dataset: DatasetSettings,
    cfg: TrainSettings,
    cutoff: dt.date,
    parent: Parent | None = None,
    mode: str | None = None,
) -> TrainResult:
    """Fit a model on a training set's train split, early-stopped on its validation split.

    Args:
        splits: raw train/validation(/test) frames of a snapshot (``load_trainset``).
        transform: the snapshot's transform (used unless the run warm-starts).
        parent: the champion, for ``warm_start``; ignored by a stateless run.
        mode: overrides ``cfg.mode`` (``stateless`` | ``warm_start``).

    Raises:
        TrainingError: too few rows or a single class in what would be trained on.
    """
    import xgboost as xgb

    chosen, reason = plan_mode(cfg, splits[TRAIN], dataset.event_timestamp, parent, cutoff, mode)
    rows = splits[TRAIN]
    booster_in, rounds = None, cfg.num_boost_round
    if chosen == WARM_START:
        assert parent is not None
        rows = warm_rows(rows, dataset.event_timestamp, parent, cfg.warm_start)
        transform = parent.model.transform
        booster_in, rounds = parent.model.booster, cfg.warm_start.new_trees
    check_trainable(rows, dataset, cfg)

    y = (rows[dataset.label] == dataset.positive_label).astype("int32").to_numpy()
    positives = int(y.sum())
    spw = (len(y) - positives) / positives if cfg.imbalance == "scale_pos_weight" else 1.0
    valid = splits[VALIDATION]
    y_valid = (valid[dataset.label] == dataset.positive_label).astype("int32").to_numpy()
    dtrain = xgb.DMatrix(transform.apply(rows), label=y)
    dvalid = xgb.DMatrix(transform.apply(valid), label=y_valid)
    trees_before = booster_in.num_boosted_rounds() if booster_in is not None else 0

    started = time.perf_counter()
    stopping = len(valid) > 0
    booster = xgb.train(
        booster_params(cfg, spw),
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, VALIDATION)] if stopping else (),
        early_stopping_rounds=cfg.early_stopping_rounds if stopping else None,
        xgb_model=booster_in,
        verbose_eval=False,
    )
    seconds = time.perf_counter() - started
    # Keep the trees up to the best validation round (at least one new tree): the booster
    # xgb.train returns holds the rounds after it too. Without early stopping the
    # best_iteration attribute is the parent's (attributes are inherited): keep every tree.
    best = booster.best_iteration if stopping else None
    keep = max(trees_before + 1, (best + 1) if best is not None else booster.num_boosted_rounds())
    if keep < booster.num_boosted_rounds():
        booster = booster[:keep]
    # Slicing drops the attributes; keep what tells this booster's story.
    booster.set_attr(best_iteration=str(keep - 1), trees_from_parent=str(trees_before))
    model = Model(booster, transform)
    facts = {
        "mode": chosen,
        "mode_reason": reason,
        "train_rows": len(rows),
        "train_positives": positives,
        "train_first_event": _iso(rows[dataset.event_timestamp].min()),
        "train_last_event": _iso(rows[dataset.event_timestamp].max()),
        "validation_rows": len(valid),
        "scale_pos_weight": round(spw, 6),
        "trees_from_parent": trees_before,
        "trees_added": model.trees - trees_before,
        "trees": model.trees,
        "train_seconds": round(seconds, 3),
        "parent_version": parent.version if chosen == WARM_START and parent else None,
    }
    logger.info(
        "%s: %d trees (%d from the parent) on %d rows (%d positives) in %.2f s",
        reason, model.trees, trees_before, len(rows), positives, seconds,
    )  # fmt: skip
    return TrainResult(model, chosen, reason, facts)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else None


# ------------------------------------------------------------------------- baselines
@dataclass(frozen=True)
class Baseline:
    """A trivial scorer fitted on train: the bar any model has to clear."""

    name: str
    description: str
    params: dict[str, Any]

    def predict(self, inputs: pd.DataFrame) -> np.ndarray:
        import numpy as np

        n = len(inputs)
        if self.name == RANDOM:
            return np.random.default_rng(self.params["seed"]).random(n)
        if self.name == MAJORITY:
            return np.full(n, self.params["rate"])
        z = (
            self.params["coef"] * inputs[self.params["feature"]].to_numpy()
            + self.params["intercept"]
        )
        return 1.0 / (1.0 + np.exp(-z))


def baselines(
    train: pd.DataFrame, transform: Transform, dataset: DatasetSettings, cfg: TrainSettings
) -> list[Baseline]:
    """Random scores, the majority class (the train label rate as a constant probability),
    and a one-feature logistic regression on ``train.heuristic_feature`` (or, if unset, the
    feature whose train ROC-AUC is furthest from 0.5)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    y = (train[dataset.label] == dataset.positive_label).astype("int32").to_numpy()
    inputs = transform.apply(train)
    rate = float(y.mean())
    feature = cfg.heuristic_feature
    if feature is None:
        aucs = {c: abs(roc_auc_score(y, inputs[c]) - 0.5) for c in inputs.columns}
        feature = max(aucs, key=lambda c: (aucs[c], c))
    fit = LogisticRegression().fit(inputs[[feature]].to_numpy(), y)
    return [
        Baseline(RANDOM, "uniform random scores", {"seed": cfg.seed}),
        Baseline(MAJORITY, f"the train label rate {rate:.4f} for every row", {"rate": rate}),
        Baseline(
            HEURISTIC,
            f"logistic regression on the single feature {feature}",
            {
                "feature": feature,
                "coef": float(fit.coef_[0][0]),
                "intercept": float(fit.intercept_[0]),
            },
        ),  # fmt: skip
    ]
