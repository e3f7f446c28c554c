"""Realised and estimated (CBPE) performance from score histograms, without Spark: the
binned metrics against sklearn on the raw rows, the estimate against the realised value on
simulated calibrated (and miscalibrated) days, the bootstrap interval, insufficient data,
determinism and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from regrow.model.evaluation import metrics as exact_metrics
from regrow.monitoring.performance import (
    ESTIMATED_METRICS,
    REALISED_METRICS,
    estimated,
    histogram_from_arrays,
    realised,
)
from regrow.monitoring.results import ESTIMATED, INSUFFICIENT, METRIC, OK, REALISED
from regrow.settings import PerformanceSettings

NO_BOOTSTRAP = PerformanceSettings(bootstrap=0)
# A day of a fraud-like model: logit-normal scores with a mean of ~3%.
INTERCEPT, SLOPE = -3.93, 1.0


def calibrated_day(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels drawn as Bernoulli(score): a calibrated model."""
    scores = expit(INTERCEPT + SLOPE * rng.normal(size=rows))
    return scores, (rng.random(rows) < scores).astype(int)


def values(results) -> dict[str, float | None]:
    return {r.column: r.value for r in results}


# --------------------------------------------------------------------- histogram
def test_histogram_counts_rows_positives_and_log_loss_sums():
    rng = np.random.default_rng(0)
    scores, labels = calibrated_day(rng, 5_000)
    hist = histogram_from_arrays(scores, labels, 1e-4)

    assert hist.total_rows == 5_000 and hist.total_positives == labels.sum()
    assert np.all(np.diff(hist.score) > 0)
    assert hist.expected_positives == pytest.approx(scores.sum(), abs=1e-6)
    assert hist.log_loss_sum == pytest.approx(5_000 * log_loss(labels, scores), abs=1e-5)
    entropy = -(scores * np.log(scores) + (1 - scores) * np.log(1 - scores))
    assert hist.expected_log_loss_sum == pytest.approx(entropy.sum(), abs=1e-5)


def test_histogram_leaves_out_and_counts_null_scores_and_labels():
    hist = histogram_from_arrays(
        [0.1, np.nan, None, 0.3, 0.5], [1, 0, 1, None, np.nan], resolution=0.01
    )

    assert hist.total_rows == 1 and hist.total_positives == 1
    assert (hist.null_scores, hist.null_labels) == (2, 2)
    assert realised(hist, NO_BOOTSTRAP)[0].detail["null_scores"] == 2


# ----------------------------------------------------------------------- realised
def test_realised_metrics_match_sklearn_on_the_raw_rows():
    rng = np.random.default_rng(1)
    scores, labels = calibrated_day(rng, 20_000)

    got = values(realised(histogram_from_arrays(scores, labels, 1e-4), NO_BOOTSTRAP))

    # Binning only ties the pairs that share a bin 1e-4 wide.
    assert got["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-3)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-3)
    assert got["log_loss"] == pytest.approx(log_loss(labels, scores), abs=1e-9)
    assert got["ece"] == pytest.approx(exact_metrics(labels, scores)["ece"], abs=1e-3)


def test_tied_scores_give_sklearns_values_and_calibrated_ties_the_same_estimate():
    # Two tied groups, each exactly calibrated: 2 of 10 positives at 0.2, 8 of 10 at 0.8.
    scores = np.repeat([0.2, 0.8], 10)
    labels = np.array([1] * 2 + [0] * 8 + [1] * 8 + [0] * 2)
    hist = histogram_from_arrays(scores, labels, 1e-4)
    cfg = PerformanceSettings(bootstrap=0, min_positives=5)

    real, est = values(realised(hist, cfg)), values(estimated(hist, cfg))

    # AP = (8 x 8/10 + 2 x 10/20) / 10; AUC = (8 x (8 + 2/2) + 2 x 8/2) / (10 x 10).
    assert real["pr_auc"] == pytest.approx(0.74) == average_precision_score(labels, scores)
    assert real["roc_auc"] == pytest.approx(0.8) == roc_auc_score(labels, scores)
    assert real["ece"] == pytest.approx(0.0, abs=1e-9)
    assert est["pr_auc"] == pytest.approx(0.74) and est["roc_auc"] == pytest.approx(0.8)
    assert est["log_loss"] == pytest.approx(real["log_loss"])


def test_results_carry_the_check_the_counts_and_the_nulls():
    rng = np.random.default_rng(2)
    scores, labels = calibrated_day(rng, 5_000)
    hist = histogram_from_arrays(np.r_[scores, np.nan], np.r_[labels, 1], 1e-4)

    results = realised(hist, PerformanceSettings(bootstrap=20))

    assert [r.column for r in results] == list(REALISED_METRICS)
    for r in results:
        assert (r.check, r.kind, r.status, r.n_current) == (REALISED, METRIC, OK, 5_000)
        assert r.detail == {
            "positives": int(labels.sum()),
            "expected_positives": pytest.approx(scores.sum(), abs=1e-6),
            "null_scores": 1,
            "null_labels": 0,
        }
    assert [r.check for r in estimated(hist, NO_BOOTSTRAP)] == [ESTIMATED] * 3


# ---------------------------------------------------------------------- estimated
def mean_gap(label_probability) -> dict[str, float]:
    """Mean |estimated - realised| over 50 days of 5,000 rows whose labels are drawn as
    Bernoulli(label_probability(score))."""
    rng = np.random.default_rng(3)
    gaps = {"pr_auc": [], "roc_auc": [], "log_loss": []}
    for _ in range(50):
        scores, _ = calibrated_day(rng, 5_000)
        labels = (rng.random(5_000) < label_probability(scores)).astype(int)
        hist = histogram_from_arrays(scores, labels, 1e-4)
        real, est = values(realised(hist, NO_BOOTSTRAP)), values(estimated(hist, NO_BOOTSTRAP))
        for name, gap in gaps.items():
            gap.append(abs(est[name] - real[name]))
    return {name: float(np.mean(gap)) for name, gap in gaps.items()}


def test_estimate_tracks_the_realised_value_when_the_scores_are_calibrated():
    gap = mean_gap(lambda scores: scores)

    assert gap["pr_auc"] < 0.03 and gap["roc_auc"] < 0.03
    assert gap["log_loss"] < 0.01


def test_estimate_is_off_when_the_scores_are_miscalibrated():
    # The labels follow a much flatter curve than the scores (at about the same 3% rate):
    # the model ranks worse than its scores claim, and CBPE, trusting them, overestimates.
    gap = mean_gap(lambda scores: expit(0.3 * logit(scores) - 2.4))

    assert gap["pr_auc"] > 0.05 and gap["roc_auc"] > 0.1


def test_estimated_ignores_labels_and_needs_none():
    rng = np.random.default_rng(4)
    scores, labels = calibrated_day(rng, 5_000)

    with_labels = estimated(histogram_from_arrays(scores, labels, 1e-4), NO_BOOTSTRAP)
    without = estimated(histogram_from_arrays(scores, None, 1e-4), NO_BOOTSTRAP)

    assert values(with_labels) == values(without)
    assert without[0].detail["positives"] is None


# ---------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("check", [realised, estimated])
def test_bootstrap_interval_holds_the_value_and_narrows_with_more_rows(check):
    rng = np.random.default_rng(5)
    cfg = PerformanceSettings(bootstrap=200, confidence=0.9)
    small = check(histogram_from_arrays(*calibrated_day(rng, 2_000), 1e-4), cfg)
    large = check(histogram_from_arrays(*calibrated_day(rng, 32_000), 1e-4), cfg)

    for few, many in zip(small, large, strict=True):
        for r in (few, many):
            assert r.ci_low <= r.value <= r.ci_high, r
        # 16 times the rows: about a quarter of the width.
        assert (few.ci_high - few.ci_low) > 2 * (many.ci_high - many.ci_low), few.column


def test_no_bootstrap_no_interval():
    rng = np.random.default_rng(6)
    hist = histogram_from_arrays(*calibrated_day(rng, 2_000), 1e-4)

    for r in realised(hist, NO_BOOTSTRAP) + estimated(hist, NO_BOOTSTRAP):
        assert r.value is not None and r.ci_low is None and r.ci_high is None


def test_same_histogram_and_seed_same_results():
    rng = np.random.default_rng(7)
    scores, labels = calibrated_day(rng, 3_000)
    cfg = PerformanceSettings(bootstrap=50)

    def run(seed: int):
        hist = histogram_from_arrays(scores, labels, 1e-4)
        return realised(hist, cfg, seed=seed) + estimated(hist, cfg, seed=seed)

    assert run(0) == run(0)
    assert [r.ci_low for r in run(0)] != [r.ci_low for r in run(1)]


# ---------------------------------------------------------------- insufficient data
def reasons(results) -> set[str]:
    assert all(r.status == INSUFFICIENT and r.value is None for r in results)
    return {r.detail["reason"] for r in results}


def test_no_positives_too_few_positives_and_no_negatives_are_insufficient():
    scores = np.full(1_000, 0.05)
    cfg = PerformanceSettings(min_positives=10)

    none = realised(histogram_from_arrays(scores, np.zeros(1_000), 1e-4), cfg)
    few = realised(histogram_from_arrays(scores, np.r_[np.ones(5), np.zeros(995)], 1e-4), cfg)
    only = realised(histogram_from_arrays(scores[:20], np.ones(20), 1e-4), cfg)

    assert reasons(none) == {"0 positives in 1000 rows, fewer than min_positives=10"}
    assert reasons(few) == {"5 positives in 1000 rows, fewer than min_positives=10"}
    assert reasons(only) == {"no negatives in 20 rows"}
    assert [r.column for r in none] == list(REALISED_METRICS)


def test_too_few_expected_positives_is_insufficient():
    hist = histogram_from_arrays(np.full(1_000, 0.005), None, 1e-4)

    results = estimated(hist, PerformanceSettings(min_positives=10))

    assert reasons(results) == {"5.0 expected positives in 1000 rows, fewer than min_positives=10"}
    assert [r.column for r in results] == list(ESTIMATED_METRICS)


def test_a_day_without_rows_is_insufficient():
    empty = histogram_from_arrays([], [], 1e-4)
    all_null = histogram_from_arrays([np.nan, np.nan], [1, 0], 1e-4)

    for hist in (empty, all_null):
        assert reasons(realised(hist, NO_BOOTSTRAP)) == {"no rows"}
        assert reasons(estimated(hist, NO_BOOTSTRAP)) == {"no rows"}
    assert all_null.null_scores == 2
    assert realised(all_null, NO_BOOTSTRAP)[0].n_current == 0


# ---------------------------------------------------------------------- bad input
def test_labels_other_than_0_1_are_rejected():
    with pytest.raises(ValueError, match="1 value\\(s\\) of 'labels' are not 0/1"):
        histogram_from_arrays([0.1, 0.2], [1, 2], 1e-4)


def test_scores_outside_0_1_are_rejected():
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        histogram_from_arrays([0.1, 1.5], [1, 0], 1e-4)


def test_labels_and_scores_must_pair_up():
    with pytest.raises(ValueError, match="3 labels for 2 scores"):
        histogram_from_arrays([0.1, 0.2], [1, 0, 1], 1e-4)


def test_realised_needs_labels():
    hist = histogram_from_arrays([0.1, 0.2], None, 1e-4)
    with pytest.raises(ValueError, match="needs labels"):
        realised(hist, NO_BOOTSTRAP)


def test_unknown_metrics_and_an_estimated_ece_are_rejected():
    hist = histogram_from_arrays([0.1, 0.2], [1, 0], 1e-4)
    with pytest.raises(ValueError, match="unknown metric\\(s\\) \\['auc'\\]"):
        realised(hist, NO_BOOTSTRAP, metrics=("auc",))
    with pytest.raises(ValueError, match="ece is not estimated"):
        estimated(hist, NO_BOOTSTRAP, metrics=("pr_auc", "ece"))


def test_resolution_must_be_a_fraction():
    with pytest.raises(ValueError, match="resolution must be in \\(0, 1\\), got 0"):
        histogram_from_arrays([0.1], [1], 0)
