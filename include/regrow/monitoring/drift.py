"""Drift statistics on counts: is a column's distribution in the current window the
reference's?

Each check compares two :class:`Distribution` s (one column's counts in the reference window
and in the current window, as :mod:`regrow.monitoring.profile` counts them in Spark) and
returns one :class:`~regrow.monitoring.results.CheckResult` with two numbers: a p-value (is
the shift real?) and an effect (is it big enough to matter?). A window of a million rows
makes a shift of a fraction of a percent significant, so :func:`apply_correction` flags a
result only when both hold, after the day's multiple-testing correction.

PSI and empty bins: PSI sums ``(c - r) * ln(c / r)`` over the bins' proportions, which is
infinite when a bin is empty on one side. Each proportion is first floored at
:data:`PSI_EPSILON` (1e-4: a bin holding 0.01% of the rows), so a bin empty in the reference
that holds 5% of the current rows adds ``0.05 * ln(0.05 / 1e-4) ≈ 0.31`` (a large shift, but
a finite one), and a bin empty on both sides adds nothing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import binomtest, chi2_contingency, false_discovery_control, fisher_exact
from scipy.stats.contingency import expected_freq

from regrow.monitoring.results import (
    CATEGORICAL,
    DRIFT,
    FLAGGED,
    INSUFFICIENT,
    LABEL,
    LABEL_DRIFT,
    NULL_RATE,
    NUMERIC,
    UNSEEN,
    CheckResult,
)
from regrow.settings import MonitorSettings

PSI_EPSILON = 1e-4  # the floor of a bin's proportion in PSI (see the module docstring)
RARE = "__rare__"  # the bucket of the categories rarer than monitor.rare_category_fraction
UNSEEN_BUCKET = "__unseen__"  # the bucket of the current values the reference never had
MAX_UNSEEN_LISTED = 20  # unseen values a result's detail lists, largest first

_WINDOWS = ("reference", "current")


@dataclass(frozen=True)
class Distribution:
    """One column's distribution in one window, as counts.

    Attributes:
        counts: bin label (numeric columns: in bin order) or category value -> non-null rows.
        nulls: rows where the column is null (or NaN).
    """

    counts: dict[str, int]
    nulls: int = 0

    @property
    def non_null(self) -> int:
        return sum(self.counts.values())

    @property
    def rows(self) -> int:
        return self.non_null + self.nulls


# ------------------------------------------------------------------------ checks
def binned_drift(
    column: str,
    reference: Distribution,
    current: Distribution,
    cfg: MonitorSettings,
    kind: str = NUMERIC,
    check: str = DRIFT,
) -> CheckResult:
    """A binned column's drift: chi-square test of homogeneity, PSI and Jensen-Shannon.

    Both distributions are binned at the reference's quantiles, so they share ordered bin
    labels; a label missing on one side counts 0. Also the check of the model's score
    (``kind=SCORE, check=PREDICTION_DRIFT``) and of the label rate (``kind=LABEL,
    check=LABEL_DRIFT``).
    """
    reason = _unusable(reference, current, cfg)
    if reason:
        return _insufficient(check, column, kind, reference, current, cfg.min_psi, reason)
    bins = list(dict.fromkeys([*reference.counts, *current.counts]))
    return _compared(check, column, kind, bins, reference, current, cfg)


def categorical_drift(
    column: str,
    reference: Distribution,
    current: Distribution,
    cfg: MonitorSettings,
    kind: str = CATEGORICAL,
) -> CheckResult:
    """A categorical (or boolean: ``"true"``/``"false"``) column's drift.

    The reference's categories rarer than ``cfg.rare_category_fraction`` of its non-null
    rows are one :data:`RARE` bucket (on both sides), and the current values the reference
    never had one :data:`UNSEEN_BUCKET` bucket, so the test and the PSI see them; then the
    same test, PSI and Jensen-Shannon distance as :func:`binned_drift`.
    """
    reason = _unusable(reference, current, cfg)
    if reason:
        return _insufficient(DRIFT, column, kind, reference, current, cfg.min_psi, reason)
    seen = {value: n for value, n in reference.counts.items() if n > 0}
    total = sum(seen.values())
    common = [
        value
        for value, n in sorted(seen.items(), key=lambda item: (-item[1], item[0]))
        if n / total >= cfg.rare_category_fraction
    ]
    kept = set(common)

    def bucket(value: str) -> str:
        if value in kept:
            return value
        return RARE if value in seen else UNSEEN_BUCKET

    ref = Distribution(_bucketed(reference.counts, bucket), reference.nulls)
    cur = Distribution(_bucketed(current.counts, bucket), current.nulls)
    bins = common + [b for b in (RARE, UNSEEN_BUCKET) if ref.counts.get(b) or cur.counts.get(b)]
    return _compared(
        DRIFT, column, kind, bins, ref, cur, cfg, rare_categories=len(seen) - len(common)
    )


def null_rate(
    column: str,
    reference: Distribution,
    current: Distribution,
    cfg: MonitorSettings,
    kind: str,
) -> CheckResult:
    """A column's null rate: chi-square test on the 2x2 null/non-null table (Fisher's exact
    test when an expected count is below 5); the effect is the absolute change of the rate,
    the value the current rate. A column entirely null on one side still gets a verdict."""
    threshold = cfg.min_null_rate_change
    reason = _too_few_rows(reference, current, cfg)
    if reason:
        return _insufficient(NULL_RATE, column, kind, reference, current, threshold, reason)
    table = np.array([[reference.nulls, reference.non_null], [current.nulls, current.non_null]])
    statistic, p_value, test = _two_by_two(table)
    reference_rate, current_rate = reference.nulls / reference.rows, current.nulls / current.rows
    return CheckResult(
        check=NULL_RATE,
        column=column,
        kind=kind,
        statistic=statistic,
        p_value=p_value,
        effect=abs(current_rate - reference_rate),
        threshold=threshold,
        value=current_rate,
        n_reference=reference.rows,
        n_current=current.rows,
        detail={
            "test": test,
            "reference_rate": reference_rate,
            "reference_nulls": reference.nulls,
            "current_nulls": current.nulls,
        },
    )


def unseen_categories(
    column: str,
    reference: Distribution,
    current: Distribution,
    cfg: MonitorSettings,
    kind: str,
) -> CheckResult:
    """The share of the current non-null rows whose value the reference never had.

    The p-value is a one-sided binomial test of the unseen rows against a rate of
    ``1 / (reference non-null rows + 1)``: the most a category could have had and still be
    absent from the reference.
    """
    threshold = cfg.min_unseen_fraction
    reason = _unusable(reference, current, cfg)
    if reason:
        return _insufficient(UNSEEN, column, kind, reference, current, threshold, reason)
    unseen = sorted(
        (
            (value, n)
            for value, n in current.counts.items()
            if n > 0 and not reference.counts.get(value)
        ),
        key=lambda item: (-item[1], item[0]),
    )
    rows = sum(n for _, n in unseen)
    test = binomtest(rows, current.non_null, p=1 / (reference.non_null + 1), alternative="greater")
    share = rows / current.non_null
    return CheckResult(
        check=UNSEEN,
        column=column,
        kind=kind,
        statistic=float(rows),
        p_value=float(test.pvalue),
        effect=share,
        threshold=threshold,
        value=share,
        n_reference=reference.rows,
        n_current=current.rows,
        detail={
            "unseen": [{"value": v, "rows": n} for v, n in unseen[:MAX_UNSEEN_LISTED]],
            "unseen_values": len(unseen),
        },
    )


# ------------------------------------------------------------ the day's verdict
def apply_correction(results: Sequence[CheckResult], cfg: MonitorSettings) -> list[CheckResult]:
    """The day's results with adjusted p-values, flagged where the shift is both real and
    large.

    The p-values of all results that have one are adjusted together by ``cfg.correction``
    (bh, by: scipy's ``false_discovery_control``; holm; none). A result is flagged iff its
    adjusted p-value is below ``cfg.alpha`` and its effect reaches its threshold (a result
    without an effect or a threshold is never flagged); the others keep their status, and
    the order is kept.
    """
    tested = [i for i, result in enumerate(results) if result.p_value is not None]
    p_values = np.array([results[i].p_value for i in tested], dtype=float)
    corrected = list(results)
    for i, p in zip(tested, _adjusted(p_values, cfg.correction), strict=True):
        result = results[i].with_(p_adjusted=float(p))
        large = result.effect is not None and result.threshold is not None
        if p < cfg.alpha and large and result.effect >= result.threshold:
            result = result.with_(status=FLAGGED)
        corrected[i] = result
    return corrected


def uncorrected_flags(results: Sequence[CheckResult], alpha: float = 0.05) -> list[bool]:
    """The plain baseline a benchmark compares with: ``p_value < alpha``, no correction and
    no effect size."""
    return [result.p_value is not None and result.p_value < alpha for result in results]


def psi(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """The population stability index of the current proportions against the reference's
    (the same bins, as counts; proportions floored at :data:`PSI_EPSILON`)."""
    ref = np.asarray(reference_counts, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    if ref.shape != cur.shape:
        raise ValueError(
            f"psi needs the same bins on both sides, got {ref.size} reference and "
            f"{cur.size} current counts"
        )
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError(
            f"psi needs rows on both sides, got {ref.sum():g} reference and {cur.sum():g} current"
        )
    r = np.maximum(ref / ref.sum(), PSI_EPSILON)
    c = np.maximum(cur / cur.sum(), PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


# ------------------------------------------------------------------- internals
def _too_few_rows(reference: Distribution, current: Distribution, cfg: MonitorSettings) -> str:
    for window, dist in zip(_WINDOWS, (reference, current), strict=True):
        if dist.rows < cfg.min_rows:
            return (
                f"{window} window has {dist.rows} rows, fewer than monitor.min_rows={cfg.min_rows}"
            )
    return ""


def _unusable(reference: Distribution, current: Distribution, cfg: MonitorSettings) -> str:
    """Why two distributions cannot be compared ("" when they can)."""
    reason = _too_few_rows(reference, current, cfg)
    for window, dist in zip(_WINDOWS, (reference, current), strict=True):
        if not reason and dist.non_null == 0:
            reason = f"entirely null in the {window} window"
    return reason


def _insufficient(
    check: str,
    column: str,
    kind: str,
    reference: Distribution,
    current: Distribution,
    threshold: float,
    reason: str,
) -> CheckResult:
    return CheckResult(
        check=check,
        column=column,
        kind=kind,
        status=INSUFFICIENT,
        threshold=threshold,
        n_reference=reference.rows,
        n_current=current.rows,
        detail={"reason": reason},
    )


def _bucketed(counts: Mapping[str, int], bucket: Callable[[str], str]) -> Counter[str]:
    buckets: Counter[str] = Counter()
    for value, n in counts.items():
        buckets[bucket(value)] += n
    return buckets


def _compared(
    check: str,
    column: str,
    kind: str,
    bins: list[str],
    reference: Distribution,
    current: Distribution,
    cfg: MonitorSettings,
    **detail: object,
) -> CheckResult:
    """Two distributions over the same ``bins``: the test, the PSI and the JS distance."""
    ref = [int(reference.counts.get(b, 0)) for b in bins]
    cur = [int(current.counts.get(b, 0)) for b in bins]
    statistic, p_value = _homogeneity(np.array([ref, cur]))
    # Identical proportions can leave a rounding error below zero under the square root.
    js = float(np.nan_to_num(jensenshannon(ref, cur, base=2)))
    return CheckResult(
        check=check,
        column=column,
        kind=kind,
        statistic=statistic,
        p_value=p_value,
        effect=psi(ref, cur),
        js=js,
        threshold=cfg.min_psi,
        n_reference=reference.rows,
        n_current=current.rows,
        detail={"bins": bins, "reference": ref, "current": cur, **detail},
    )


def _homogeneity(table: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of a 2xK table's two rows, its all-zero columns
    dropped; (0, 1) when fewer than two columns are left (scipy raises on such a table)."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def _two_by_two(table: np.ndarray) -> tuple[float | None, float, str]:
    """(statistic, p-value, test) of a 2x2 table: chi-square, or Fisher's exact test (its
    statistic the odds ratio, None when infinite) when an expected count is below 5; no test
    (0, 1) when a row or a column is empty."""
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, "none"
    if expected_freq(table).min() < 5:
        result = fisher_exact(table)
        odds = float(result.statistic)
        return (odds if math.isfinite(odds) else None), float(result.pvalue), "fisher"
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue), "chi2"


def _adjusted(p_values: np.ndarray, correction: str) -> np.ndarray:
    if p_values.size == 0 or correction == "none":
        return p_values
    if correction == "holm":
        return _holm(p_values)
    return false_discovery_control(p_values, method=correction)


def _holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (scipy has no Holm): the i-th smallest of m is
    multiplied by m - i + 1, then made non-decreasing and capped at 1."""
    order = np.argsort(p_values)
    scaled = (p_values.size - np.arange(p_values.size)) * p_values[order]
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def label_rate_drift(
    column: str, reference: tuple[int, int], current: tuple[int, int], cfg: MonitorSettings
) -> CheckResult:
    """The positive rate of matured labels, ``(rows, positives)`` of each window.

    The test is the chi-square of the 2x2 table; the effect is the rate's relative change
    (``monitor.min_label_rate_change``), not PSI: PSI barely sees a rare label (a fraud
    rate tripling from 3% to 9% is a PSI of 0.07).
    """
    (ref_rows, ref_pos), (rows, pos) = reference, current
    result = binned_drift(
        column,
        Distribution({"negative": ref_rows - ref_pos, "positive": ref_pos}),
        Distribution({"negative": rows - pos, "positive": pos}),
        cfg,
        kind=LABEL,
        check=LABEL_DRIFT,
    )
    rate = pos / rows if rows else None
    ref_rate = ref_pos / ref_rows if ref_rows else None
    change = None
    if result.status != INSUFFICIENT and rate is not None and ref_rate:
        change = abs(rate / ref_rate - 1)
    return result.with_(
        value=rate,
        effect=change,
        threshold=cfg.min_label_rate_change,
        detail={**result.detail, "reference_rate": ref_rate, "psi": result.effect},
    )


def column_checks(
    kinds: Mapping[str, str],
    reference: Mapping[str, Distribution],
    current: Mapping[str, Distribution],
    cfg: MonitorSettings,
) -> list[CheckResult]:
    """Every check of each column of ``kinds`` (``{column: numeric | categorical |
    boolean}``): its drift and null rate, and for a categorical its unseen values."""
    results: list[CheckResult] = []
    for column, kind in kinds.items():
        ref, cur = reference[column], current[column]
        if kind == NUMERIC:
            results.append(binned_drift(column, ref, cur, cfg))
        else:
            results.append(categorical_drift(column, ref, cur, cfg, kind=kind))
        results.append(null_rate(column, ref, cur, cfg, kind))
        if kind == CATEGORICAL:
            results.append(unseen_categories(column, ref, cur, cfg, kind))
    return results
