"""The value of freshness (*Designing Machine Learning Systems*, ch. 9): what a model loses
for each day it is stale.

Each scored day ``t`` is scored by the stateless model of the cut-off ``t - k`` (trained on
what was known before day ``t - k``: the labels matured by then, as a retrain that night
would see them), for every ``k`` of ``replay.freshness_days``. One model per cut-off serves
every ``k`` (the model of cut-off ``c`` scores day ``c + k`` for each ``k``), so the cost is
one training per cut-off, not one per pair. Quality is measured as the scoreboard measures a
policy: PR-AUC and ROC-AUC of the day's scores against its eventually matured labels.

Every ``k`` is compared on the same days: those whose stalest model's cut-off is at or after
the first model's (the end of the warm-up), so no ``k`` is judged on days the others skip.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from regrow.data.transform import TrainsetError
from regrow.model.evaluation import metrics as eval_metrics
from regrow.model.training import Model, TrainingError
from regrow.monitoring.monitor import matured_day
from regrow.replay.engine import train_stateless
from regrow.replay.history import History, ReplayError

logger = logging.getLogger(__name__)

# The name of a staleness in gold.replay's policy column: freshness_3d.
PREFIX = "freshness_"


def series_name(k: int) -> str:
    return f"{PREFIX}{k}d"


@dataclass
class Freshness:
    """Quality against staleness: one row per (staleness, day), a summary per staleness."""

    staleness: list[int]
    days: list[dt.date]  # the days every staleness scored
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    models: int  # trained (one per cut-off)
    train_cpu_seconds: float


def scorable_days(
    scored: Sequence[dt.date], staleness: Sequence[int], first_cutoff: dt.date
) -> list[dt.date]:
    """The days of ``scored`` that every staleness can score: the stalest model's cut-off
    is at or after ``first_cutoff`` (the warm-up's end).

    Raises:
        ReplayError: no such day (too few days for the stalest ``k``).
    """
    stalest = max(staleness)
    days = [t for t in scored if t - dt.timedelta(days=stalest) >= first_cutoff]
    if not days:
        raise ReplayError(
            f"replay.freshness_days goes up to {stalest} day(s) of staleness, but only "
            f"{len(scored)} day(s) follow the warm-up (first cut-off {first_cutoff}): replay "
            f"at least {stalest - len(scored) + 1} more day(s), or lower replay.freshness_days"
        )
    return days


def value_of_freshness(
    history: History,
    staleness: Sequence[int],
    scored: Sequence[dt.date],
    first_cutoff: dt.date,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Freshness:
    """Score each day of ``scored`` (that every staleness can score) with the model of the
    cut-off ``k`` days before it, for each ``k`` of ``staleness``.

    Raises:
        ReplayError: too few scored days for the stalest ``k``.
    """
    staleness = sorted(set(staleness))
    days = scorable_days(scored, staleness, first_cutoff)
    cutoffs = sorted({t - dt.timedelta(days=k) for t in days for k in staleness})

    def fit(cutoff: dt.date) -> tuple[Model | None, dict[str, Any]]:
        try:
            result, _, cpu, _ = train_stateless(history, cutoff)
        except (TrainsetError, TrainingError) as err:
            return None, {"error": str(err), "cpu_seconds": 0.0}
        facts = {"train_rows": result.facts["train_rows"], "trees": result.model.trees,
                 "cpu_seconds": cpu}  # fmt: skip
        return result.model, facts

    started = time.perf_counter()
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="freshness") as pool:
            fitted = dict(zip(cutoffs, pool.map(fit, cutoffs), strict=True))
    else:
        fitted = {c: fit(c) for c in cutoffs}
    if progress:
        progress(
            f"freshness: {len(cutoffs)} model(s), one per cut-off {cutoffs[0]}..{cutoffs[-1]}, "
            f"in {time.perf_counter() - started:.0f} s"
        )
    rows = _scored_rows(history, staleness, days, fitted)
    return Freshness(
        staleness, days, rows, _summary(rows, staleness), len(cutoffs),
        round(sum(facts["cpu_seconds"] for _, facts in fitted.values()), 3),
    )  # fmt: skip


def _scored_rows(
    history: History,
    staleness: list[int],
    days: list[dt.date],
    fitted: dict[dt.date, tuple[Model | None, dict[str, Any]]],
) -> list[dict[str, Any]]:
    settings = history.settings
    last = history.days[-1]
    last_matured = matured_day(settings, last)
    rows = []
    for k in staleness:
        for day in days:
            cutoff = day - dt.timedelta(days=k)
            model, facts = fitted[cutoff]
            frame = history.day(day)
            row: dict[str, Any] = {
                "staleness_days": k, "day": day, "cutoff": cutoff, "rows": len(frame),
                "model_trees": facts.get("trees"), "train_rows": facts.get("train_rows"),
                "matured": day <= last_matured, "positives": None, "pr_auc": None,
                "roc_auc": None, "error": facts.get("error"),
            }  # fmt: skip
            rows.append(row)
            if model is None or not row["matured"] or not len(frame):
                continue
            y = np.nan_to_num(history.positives(frame, last)).astype("int32")
            found = eval_metrics(y, model.predict(frame), settings.evaluate.calibration_bins)
            row |= {"positives": found["positives"], "pr_auc": found["pr_auc"],
                    "roc_auc": found["roc_auc"]}  # fmt: skip
    return rows


def _summary(rows: list[dict[str, Any]], staleness: list[int]) -> list[dict[str, Any]]:
    """Per staleness: the days measured, mean PR-AUC and ROC-AUC, and the PR-AUC relative to
    the freshest ``k``'s."""
    out = []
    for k in staleness:
        mine = [r for r in rows if r["staleness_days"] == k]
        pr = [r["pr_auc"] for r in mine if r["pr_auc"] is not None]
        roc = [r["roc_auc"] for r in mine if r["roc_auc"] is not None]
        out.append({
            "staleness_days": k, "days_measured": len(pr),
            "mean_pr_auc": statistics.fmean(pr) if pr else None,
            "mean_roc_auc": statistics.fmean(roc) if roc else None,
            "failed_days": sum(1 for r in mine if r["error"]),
        })  # fmt: skip
    freshest = out[0]["mean_pr_auc"] if out else None
    for entry in out:
        value = entry["mean_pr_auc"]
        entry["pr_auc_vs_freshest"] = value / freshest if value is not None and freshest else None
    return out


def replay_rows(found: Freshness) -> list[dict[str, Any]]:
    """``gold.replay`` rows of the freshness series (policy ``freshness_<k>d``): what
    scored the day, and its eventual quality."""
    return [
        {
            "policy": series_name(r["staleness_days"]), "day": r["day"],
            "model_trees": r["model_trees"], "rows": r["rows"], "action": "none",
            "trigger": "freshness",
            "reason": r["error"] and f"no model of cut-off {r['cutoff']}: {r['error']}"
            or f"scored by the stateless model of cut-off {r['cutoff']} "
            f"({r['staleness_days']} day(s) stale)",
            "retrained": False, "train_rows": r["train_rows"], "matured": r["matured"],
            "positives": r["positives"], "pr_auc": r["pr_auc"], "roc_auc": r["roc_auc"],
        }
        for r in found.rows
    ]  # fmt: skip
