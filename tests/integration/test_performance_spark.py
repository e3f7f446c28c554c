"""The score histogram counted by one Spark aggregate equals the one counted in numpy from
the same rows: bins, rows, positives, log-loss sums, and the null scores and labels it
leaves out; bad labels and scores are named."""

from __future__ import annotations

import numpy as np
import pytest

from regrow.monitoring.performance import (
    estimated,
    histogram_from_arrays,
    realised,
    score_histogram,
)
from regrow.settings import PerformanceSettings

CFG = PerformanceSettings(bootstrap=50)


def scored_rows(rows: int = 3_000) -> list[tuple[float | None, int | None]]:
    """Calibrated scores and labels, a score of exactly 0 and 1, a null score, a NaN score
    and a null label."""
    rng = np.random.default_rng(0)
    scores = rng.beta(0.5, 8, size=rows)
    labels = (rng.random(rows) < scores).astype(int)
    return [
        *zip(scores.tolist(), labels.tolist(), strict=True),
        (0.0, 0),
        (1.0, 1),
        (None, 1),
        (float("nan"), 0),
        (0.4, None),
    ]


def assert_same(got, want) -> None:
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.entropy, want.entropy, rtol=0, atol=1e-8)
    assert (got.null_scores, got.null_labels) == (want.null_scores, want.null_labels)
    if want.positives is None:
        assert got.positives is None and got.log_loss_sum is None
        return
    np.testing.assert_array_equal(got.positives, want.positives)
    # Spark's logarithm and numpy's may differ in the last bit: one unit (1e-9) per row.
    np.testing.assert_allclose(got.positive_log_loss, want.positive_log_loss, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got.negative_log_loss, want.negative_log_loss, rtol=0, atol=1e-8)


def test_spark_histogram_equals_the_numpy_one_with_nulls_counted(spark):
    rows = scored_rows()
    df = spark.createDataFrame(rows, "score double, label int").repartition(3)
    scores, labels = zip(*rows, strict=True)

    got = score_histogram(df, "score", "label", 1e-4)
    want = histogram_from_arrays(scores, labels, 1e-4)

    assert_same(got, want)
    assert got.total_rows == 3_002 and got.null_scores == 2 and got.null_labels == 1
    assert got.total_positives == sum(label for _, label in rows[:3_002])
    assert realised(got, CFG) == realised(want, CFG)
    assert estimated(got, CFG) == estimated(want, CFG)


def test_spark_histogram_of_boolean_labels_and_of_no_labels(spark):
    rows = scored_rows(500)
    df = spark.createDataFrame(
        [(s, None if y is None else bool(y)) for s, y in rows], "score float, label boolean"
    )
    scores = np.array([np.nan if s is None else s for s, _ in rows], dtype=np.float32)

    assert_same(
        score_histogram(df, "score", "label", 1e-3),
        histogram_from_arrays(scores, [y for _, y in rows], 1e-3),
    )
    assert_same(score_histogram(df, "score", None, 1e-3), histogram_from_arrays(scores, None, 1e-3))


def test_labels_other_than_0_1_are_named(spark):
    df = spark.createDataFrame([(0.1, 1), (0.2, 2), (0.3, 0)], "p double, is_fraud int")
    with pytest.raises(ValueError, match="1 value\\(s\\) of 'is_fraud' are not 0/1"):
        score_histogram(df, "p", "is_fraud", 1e-4)


def test_scores_outside_0_1_and_missing_columns_are_named(spark):
    df = spark.createDataFrame([(0.1, 1), (1.2, 0)], "p double, is_fraud int")
    with pytest.raises(ValueError, match="1 value\\(s\\) of 'p' are outside \\[0, 1\\]"):
        score_histogram(df, "p", "is_fraud", 1e-4)
    with pytest.raises(ValueError, match="no column 'label' in the scored rows"):
        score_histogram(df, "p", "label", 1e-4)
