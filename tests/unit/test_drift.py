"""The drift statistics on counts (no Spark): flagged only when a shift is both significant
after the day's correction and large enough to matter."""

from __future__ import annotations

import numpy as np
import pytest

from regrow.monitoring.drift import (
    RARE,
    UNSEEN_BUCKET,
    Distribution,
    apply_correction,
    binned_drift,
    categorical_drift,
    label_rate_drift,
    null_rate,
    psi,
    uncorrected_flags,
    unseen_categories,
)
from regrow.monitoring.results import (
    BOOLEAN,
    CATEGORICAL,
    DRIFT,
    FLAGGED,
    INSUFFICIENT,
    NUMERIC,
    OK,
    PREDICTION_DRIFT,
    SCORE,
    CheckResult,
)
from regrow.settings import MonitorSettings

CFG = MonitorSettings()  # min_rows 500, alpha 0.01, bh, min_psi 0.1
BINS = [f"b{i}" for i in range(10)]


def binned(counts, nulls: int = 0) -> Distribution:
    return Distribution(dict(zip(BINS, (int(n) for n in counts), strict=True)), nulls)


def corrected(*results: CheckResult, cfg: MonitorSettings = CFG) -> list[CheckResult]:
    return apply_correction(list(results), cfg)


# ------------------------------------------------------------------ binned drift
def test_same_distribution_at_large_n_is_not_flagged():
    rng = np.random.default_rng(1)
    p = np.full(10, 0.1)
    result = binned_drift(
        "amount", binned(rng.multinomial(200_000, p)), binned(rng.multinomial(200_000, p)), CFG
    )
    [result] = corrected(result)
    assert result.status == OK
    assert result.effect < 0.001
    assert result.js < 0.01
    assert result.p_adjusted == pytest.approx(result.p_value)  # one test: bh changes nothing


def test_half_the_rows_moved_up_one_bin_is_flagged():
    reference = binned([1000] * 10)
    current = binned([0, 1000, 1000, 1000, 1000, 2000, 1000, 1000, 1000, 1000])
    result = binned_drift("amount", reference, current, CFG)
    assert result.p_value < 1e-6
    assert result.effect > CFG.min_psi
    assert 0 < result.js < 1
    assert result.detail == {
        "bins": BINS,
        "reference": [1000] * 10,
        "current": [0, 1000, 1000, 1000, 1000, 2000, 1000, 1000, 1000, 1000],
    }
    assert corrected(result)[0].status == FLAGGED


def test_tiny_shift_at_a_million_rows_is_significant_but_not_flagged():
    reference = binned([100_000] * 10)
    current = binned([103_000] + [100_000] * 8 + [97_000])
    result = binned_drift("amount", reference, current, CFG)
    assert result.p_value < 1e-10  # a plain test would alarm ...
    assert result.effect < 0.01  # ... on a shift far below the PSI line
    assert uncorrected_flags([result]) == [True]
    [result] = corrected(result)
    assert result.p_adjusted < CFG.alpha
    assert result.status == OK


def test_score_drift_keeps_its_check_and_kind():
    result = binned_drift(
        "score", binned([100] * 10), binned([100] * 10), CFG, kind=SCORE, check=PREDICTION_DRIFT
    )
    assert (result.check, result.kind, result.threshold) == (PREDICTION_DRIFT, SCORE, 0.1)


def test_a_bin_missing_on_one_side_counts_zero():
    reference = Distribution({"(-inf, 1]": 600, "(1, 2]": 400, "(2, inf)": 0})
    current = Distribution({"(-inf, 1]": 600, "(2, inf)": 400})
    result = binned_drift("amount", reference, current, CFG)
    assert result.detail["bins"] == ["(-inf, 1]", "(1, 2]", "(2, inf)"]
    assert result.detail["current"] == [600, 0, 400]
    assert result.effect == pytest.approx(psi([600, 400, 0], [600, 0, 400]))
    assert corrected(result)[0].status == FLAGGED


def test_psi_floors_empty_bins_and_is_zero_for_equal_proportions():
    assert psi([10, 20, 30], [20, 40, 60]) == pytest.approx(0.0)
    assert psi([100, 0], [95, 5]) == pytest.approx(
        (0.95 - 1) * np.log(0.95) + (0.05 - 1e-4) * np.log(0.05 / 1e-4)
    )
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="rows on both sides"):
        psi([0, 0], [1, 2])


# ---------------------------------------------------------- insufficient data
def test_small_sample_is_insufficient_and_says_which_window():
    result = binned_drift("amount", binned([100] * 10), binned([1, 1, 1, 1, 1, 1, 1, 1, 1, 3]), CFG)
    assert result.status == INSUFFICIENT
    assert result.p_value is None
    assert result.detail["reason"] == (
        "current window has 12 rows, fewer than monitor.min_rows=500"
    )
    small_reference = null_rate("amount", binned([10] * 10), binned([100] * 10), CFG, NUMERIC)
    assert small_reference.status == INSUFFICIENT
    assert small_reference.detail["reason"].startswith("reference window has 100 rows")
    assert corrected(result, small_reference) == [result, small_reference]  # untouched


def test_entirely_null_current_column_is_insufficient_for_drift_but_flags_its_null_rate():
    reference = Distribution({"a": 700, "b": 300}, nulls=20)
    current = Distribution({}, nulls=1000)
    drift = categorical_drift("country", reference, current, CFG)
    unseen = unseen_categories("country", reference, current, CFG, CATEGORICAL)
    nulls = null_rate("country", reference, current, CFG, CATEGORICAL)
    for result in (drift, unseen):
        assert result.status == INSUFFICIENT
        assert result.detail["reason"] == "entirely null in the current window"
    assert nulls.value == 1.0
    assert nulls.effect == pytest.approx(1 - 20 / 1020)
    statuses = [r.status for r in corrected(drift, unseen, nulls)]
    assert statuses == [INSUFFICIENT, INSUFFICIENT, FLAGGED]


def test_single_category_on_both_sides_does_not_crash():
    result = categorical_drift(
        "flag", Distribution({"true": 900}), Distribution({"true": 800}), CFG, kind=BOOLEAN
    )
    assert (result.statistic, result.p_value, result.effect, result.js) == (0.0, 1.0, 0.0, 0.0)
    nulls = null_rate(
        "flag", Distribution({"true": 900}), Distribution({"true": 800}), CFG, BOOLEAN
    )
    assert (nulls.p_value, nulls.effect) == (1.0, 0.0)


# ----------------------------------------------------------------- categories
def test_rare_categories_are_one_bucket_on_both_sides():
    # c, d and e are each under 1% of the reference; today c holds 3%.
    reference = Distribution({"a": 6000, "b": 3700, "c": 90, "d": 80, "e": 50, "f": 80})
    current = Distribution({"a": 6000, "b": 3700, "c": 300})
    result = categorical_drift("country", reference, current, CFG)
    assert result.detail["bins"] == ["a", "b", RARE]
    assert result.detail["reference"] == [6000, 3700, 300]
    assert result.detail["current"] == [6000, 3700, 300]
    assert result.detail["rare_categories"] == 4
    assert result.effect == pytest.approx(0.0)


def test_unseen_category_goes_to_its_bucket_and_is_flagged():
    reference = Distribution({"PT": 5000, "BR": 5000})
    current = Distribution({"PT": 4500, "BR": 4500, "AO": 900, "MZ": 100})
    drift = categorical_drift("país", reference, current, CFG)
    assert drift.detail["bins"] == ["BR", "PT", UNSEEN_BUCKET]
    assert drift.detail["reference"] == [5000, 5000, 0]
    assert drift.detail["current"] == [4500, 4500, 1000]
    unseen = unseen_categories("país", reference, current, CFG, CATEGORICAL)
    assert unseen.effect == pytest.approx(0.1)
    assert unseen.detail["unseen"] == [{"value": "AO", "rows": 900}, {"value": "MZ", "rows": 100}]
    assert [r.status for r in corrected(drift, unseen)] == [FLAGGED, FLAGGED]


def test_a_few_unseen_rows_are_not_flagged():
    reference = Distribution({"PT": 5000, "BR": 5000})
    current = Distribution({"PT": 5000, "BR": 4995, "AO": 5})
    unseen = unseen_categories("país", reference, current, CFG, CATEGORICAL)
    assert unseen.effect == pytest.approx(5 / 10_000)
    # Five rows of a value the reference never had are significant, but below
    # monitor.min_unseen_fraction.
    assert unseen.p_value < CFG.alpha
    assert corrected(unseen)[0].status == OK


def test_unseen_detail_lists_at_most_twenty_values_largest_first():
    reference = Distribution({"a": 1000})
    current = Distribution({"a": 1000, **{f"new{i:02d}": i + 1 for i in range(30)}})
    unseen = unseen_categories("code", reference, current, CFG, CATEGORICAL)
    listed = unseen.detail["unseen"]
    assert len(listed) == 20 and unseen.detail["unseen_values"] == 30
    assert listed[0] == {"value": "new29", "rows": 30}
    assert listed[-1] == {"value": "new10", "rows": 11}


def test_null_rate_uses_fisher_when_expected_counts_are_small():
    reference = Distribution({"x": 997}, nulls=3)
    current = Distribution({"x": 1000}, nulls=0)
    result = null_rate("x", reference, current, CFG, NUMERIC)
    assert result.detail["test"] == "fisher"
    # Either window holding all three nulls is as likely: two-sided p = 2 * 0.125.
    assert result.p_value == pytest.approx(0.25, abs=0.01)
    assert result.statistic is None  # an infinite odds ratio
    big = null_rate("x", Distribution({"x": 900}, 100), Distribution({"x": 800}, 200), CFG, NUMERIC)
    assert big.detail["test"] == "chi2"
    assert big.effect == pytest.approx(0.1)
    assert corrected(big)[0].status == FLAGGED


# ----------------------------------------------------------------- correction
P_VALUES = [0.001, 0.011, 0.02, 0.03, 0.045, 0.5]


def with_p_values(p_values) -> list[CheckResult]:
    return [
        CheckResult(check=DRIFT, column=f"f{i}", kind=NUMERIC, p_value=p, effect=1.0, threshold=0.1)
        for i, p in enumerate(p_values)
    ]


@pytest.mark.parametrize(
    ("correction", "flags"),
    [
        ("none", [True, True, True, True, True, False]),
        ("bh", [True, True, True, True, False, False]),
        ("by", [True, False, False, False, False, False]),
        ("holm", [True, False, False, False, False, False]),
    ],
)
def test_corrections_flag_differently(correction, flags):
    cfg = MonitorSettings(correction=correction, alpha=0.05)
    assert [r.flagged for r in apply_correction(with_p_values(P_VALUES), cfg)] == flags


def test_holm_adjusted_p_values():
    # The i-th smallest of 6 times 6 - i + 1, then non-decreasing.
    results = apply_correction(
        with_p_values([0.03, 0.001, 0.5, 0.01, 0.045, 0.02]), MonitorSettings(correction="holm")
    )
    assert [r.p_adjusted for r in results] == pytest.approx([0.09, 0.006, 0.5, 0.05, 0.09, 0.08])
    assert [r.column for r in results] == [f"f{i}" for i in range(6)]  # order kept


def test_correction_counts_only_results_with_a_p_value_and_needs_the_effect():
    small = CheckResult(
        check=DRIFT, column="small", kind=NUMERIC, p_value=1e-9, effect=0.05, threshold=0.1
    )
    large = small.with_(column="large", effect=0.3)
    untested = CheckResult(check=DRIFT, column="none", kind=NUMERIC, status=INSUFFICIENT)
    results = apply_correction([small, untested, large], MonitorSettings(correction="holm"))
    assert [r.status for r in results] == [OK, INSUFFICIENT, FLAGGED]
    assert results[0].p_adjusted == pytest.approx(2e-9)  # two tests, not three
    assert results[1] == untested
    assert apply_correction([], CFG) == []


# --------------------------------------------------------------- stable noise
def test_stable_noise_over_a_hundred_days_raises_at_most_one_flagged_day():
    """Ten features drawn every day from the reference's own distribution: the corrected,
    effect-gated checks stay quiet where the plain p < 0.05 baseline alarms most weeks."""
    rng = np.random.default_rng(20240601)
    numeric = np.full(10, 0.1)
    categorical = np.array([0.5, 0.3, 0.1, 0.05, 0.03, 0.015, 0.005])
    categories = [f"c{i}" for i in range(categorical.size)]
    features = {f"num{i}": numeric for i in range(7)} | {f"cat{i}": categorical for i in range(3)}
    null_share = 0.02

    def draw(p: np.ndarray, rows: int) -> Distribution:
        nulls = rng.binomial(rows, null_share)
        labels = BINS if p is numeric else categories
        return Distribution(
            dict(zip(labels, (int(n) for n in rng.multinomial(rows - nulls, p)), strict=True)),
            int(nulls),
        )

    reference = {name: draw(p, 50_000) for name, p in features.items()}
    flagged_days = baseline_days = 0
    for _ in range(100):
        results = []
        for name, p in features.items():
            current = draw(p, 5_000)
            check = binned_drift if p is numeric else categorical_drift
            results.append(check(name, reference[name], current, CFG))
            results.append(null_rate(name, reference[name], current, CFG, NUMERIC))
            if p is categorical:
                results.append(unseen_categories(name, reference[name], current, CFG, CATEGORICAL))
        flagged_days += any(r.flagged for r in apply_correction(results, CFG))
        baseline_days += any(uncorrected_flags(results))
    assert flagged_days <= 1
    assert baseline_days >= 20


def test_a_tripled_label_rate_is_flagged_although_its_psi_is_small():
    reference, tripled = (50_000, 1_500), (5_000, 450)  # 3% -> 9%
    result = corrected(label_rate_drift("is_fraud", reference, tripled, CFG))[0]
    assert result.detail["psi"] < CFG.min_psi  # PSI alone would miss it
    assert result.effect == pytest.approx(2.0) and result.value == pytest.approx(0.09)
    assert result.flagged
    same = corrected(label_rate_drift("is_fraud", reference, (5_000, 160), CFG))[0]
    assert not same.flagged  # 3.2%: noise
    few = label_rate_drift("is_fraud", reference, (100, 9), CFG)
    assert few.status == INSUFFICIENT and few.effect is None
