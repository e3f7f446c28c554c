"""The gate's rules and the metrics it reads, on hand-made evaluations."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from regrow.data.transform import Transform
from regrow.model.evaluation import BACKTEST, PINNED, Evaluation, gate, metrics, reliability
from regrow.model.training import STATELESS, WARM_START, Model, Parent, plan_mode
from regrow.settings import EvaluateSettings, TrainSettings


def ev(pr_auc: float, slices: dict[str, float] | None = None, pinned: float | None = None,
       behavioral_ok: bool = True, log_loss: float = 0.1) -> Evaluation:  # fmt: skip
    sets = {BACKTEST: {"pr_auc": pr_auc, "log_loss": log_loss}}
    if pinned is not None:
        sets[PINNED] = {"pr_auc": pinned, "log_loss": log_loss}
    return Evaluation(
        sets=sets,
        slices=[
            {"column": "channel", "value": v, "rows": 500, "positives": 20, "pr_auc": p}
            for v, p in (slices or {}).items()
        ],  # fmt: skip
        behavioral=[{"name": "risk_up", "passed": behavioral_ok, "detail": "moved"}],
    )


CFG = EvaluateSettings(min_improvement=0.01, slice_tolerance=0.05)
BASELINES = {
    "random": {"pr_auc": 0.03},
    "majority": {"pr_auc": 0.03},
    "heuristic": {"pr_auc": 0.08},
}


def failed(result) -> list[str]:
    return [c["check"] for c in result.failed()]


def test_a_first_model_must_beat_every_baseline_by_the_margin():
    assert gate(ev(0.25), None, BASELINES, CFG).promote
    close = gate(ev(0.085), None, BASELINES, CFG)
    assert not close.promote and failed(close) == ["beats baseline heuristic"]
    assert "pr_auc 0.0850 vs heuristic 0.0800 (+0.0050, margin 0.01)" in close.reason


def test_the_margin_over_the_champion_decides():
    assert gate(ev(0.261), ev(0.25), BASELINES, CFG).promote
    result = gate(ev(0.255), ev(0.25), BASELINES, CFG)
    assert not result.promote and failed(result) == ["beats champion on backtest"]
    assert result.reason.startswith("kept: beats champion on backtest: pr_auc 0.2550 vs champion")


def test_a_slice_that_loses_more_than_the_tolerance_blocks_a_better_model():
    challenger = ev(0.30, {"online": 0.40, "pos": 0.10})
    champion = ev(0.25, {"online": 0.30, "pos": 0.20})
    result = gate(challenger, champion, BASELINES, CFG)
    assert not result.promote and failed(result) == ["slice channel=pos"]
    # A small slice is reported, not gated.
    challenger.slices[1]["rows"] = 50
    assert gate(challenger, champion, BASELINES, CFG).promote


def test_a_failing_behavioral_test_blocks_even_a_first_model():
    result = gate(ev(0.5, behavioral_ok=False), None, BASELINES, CFG)
    assert not result.promote and failed(result) == ["behavioral risk_up"]


def test_the_pinned_set_is_reported_and_gated_only_when_a_tolerance_is_set():
    challenger, champion = ev(0.40, pinned=0.05), ev(0.10, pinned=0.25)
    reported = gate(challenger, champion, BASELINES, CFG)
    assert reported.promote
    (pinned,) = [c for c in reported.checks if c["check"] == "pinned test set"]
    assert pinned["gated"] is False and "(reported, not gated)" in pinned["detail"]
    gated = gate(challenger, champion, BASELINES, CFG.model_copy(update={"pinned_tolerance": 0.05}))
    assert not gated.promote and failed(gated) == ["pinned test set"]


def test_lower_is_better_metrics_are_compared_the_right_way_round():
    cfg = CFG.model_copy(update={"primary_metric": "log_loss"})
    assert gate(ev(0.2, log_loss=0.08), ev(0.2, log_loss=0.10), BASELINES, cfg).promote
    assert not gate(ev(0.2, log_loss=0.10), ev(0.2, log_loss=0.08), BASELINES, cfg).promote


def test_metrics_of_a_single_class_leave_ranking_undefined():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    m = metrics(y, p)
    assert m["roc_auc"] == pytest.approx(0.75) and m["pr_auc"] == pytest.approx(0.8333333)
    only_negatives = metrics(np.zeros(3, dtype=int), np.array([0.1, 0.2, 0.3]))
    assert only_negatives["pr_auc"] is None and only_negatives["roc_auc"] is None
    assert only_negatives["ece"] == pytest.approx(0.2)  # mean score 0.2, observed rate 0


def test_reliability_bins_hold_mean_score_and_observed_rate():
    bins = reliability(np.array([0, 1, 0, 1]), np.array([0.05, 0.15, 0.92, 0.98]), 10)
    assert [(b["bin"], b["rows"], b["positive_rate"]) for b in bins] == [
        (0, 1, 0.0), (1, 1, 1.0), (9, 2, 0.5)
    ]  # fmt: skip


class _Trees:
    def __init__(self, n: int) -> None:
        self.n = n

    def num_boosted_rounds(self) -> int:
        return self.n


def parent(trees: int = 50, in_a_row: int = 0, end: str = "2026-01-10T23:00:00+00:00") -> Parent:
    model = Model(_Trees(trees), Transform())  # only its tree count is read by plan_mode
    return Parent(model, "3", dt.datetime.fromisoformat(end), in_a_row)


NEW_ROWS = pd.DataFrame({"t": pd.date_range("2026-01-11", periods=600, freq="min", tz="UTC")})


@pytest.mark.parametrize(
    ("kwargs", "expected", "why"),
    [
        ({"parent": None}, STATELESS, "no champion to continue"),
        ({"parent": parent(trees=800)}, STATELESS, "800 trees >= train.warm_start.max_trees=800"),
        ({"parent": parent(in_a_row=4)}, STATELESS, "4 warm starts in a row"),
        ({"parent": parent(end="2025-09-01T00:00:00+00:00")}, STATELESS, "max_age_days=90"),
        ({"parent": parent(end="2026-01-11T05:00:00+00:00")}, STATELESS, "only 299 training rows"),
        ({"parent": parent()}, WARM_START, "600 new rows since champion v3"),
    ],
)
def test_plan_mode_names_why_a_warm_start_is_not_allowed(kwargs, expected, why):
    mode, reason = plan_mode(TrainSettings(mode="warm_start"), NEW_ROWS, "t",
                             kwargs["parent"], dt.date(2026, 1, 20))  # fmt: skip
    assert mode == expected and why in reason


def test_the_age_cap_counts_from_a_later_retrain_from_scratch_the_gate_refused():
    """A retrain from scratch that lost to the champion shows its trees still hold."""
    old = parent(end="2025-09-01T00:00:00+00:00")  # 141 days before the cut-off: capped
    cfg, cutoff = TrainSettings(mode="warm_start"), dt.date(2026, 1, 20)
    refused = dt.datetime.fromisoformat("2026-01-05T23:00:00+00:00")
    mode, reason = plan_mode(cfg, NEW_ROWS, "t", replace(old, refused_full_end=refused), cutoff)
    assert mode == WARM_START and "600 new rows since champion v3" in reason
    # Still too old when that retrain is too: the reason says which window aged out.
    stale = replace(old, refused_full_end=dt.datetime.fromisoformat("2025-10-01T00:00:00+00:00"))
    mode, reason = plan_mode(cfg, NEW_ROWS, "t", stale, cutoff)
    assert mode == STATELESS
    assert "the last retrain from scratch the gate refused ended 111 days" in reason
