"""Realised and estimated performance of a day's scores, from a histogram of the scores.

A day is read once, in Spark, into a :class:`ScoreHistogram`: its scores counted in bins
``resolution`` wide, with the labeled positives and the log-loss sums of each bin. The rows
never reach the driver; at most ``1 / resolution`` bins do. Every metric is then computed
from the bins, each bin counting as one tied score (so PR-AUC and ROC-AUC differ from the
exact ones only by the pairs that share a bin).

- :func:`realised`: PR-AUC (average precision), ROC-AUC, log loss and expected calibration
  error on a day whose labels have matured.
- :func:`estimated`: the same metrics before the labels arrive, by confidence-based
  performance estimation (CBPE, as NannyML does it): a calibrated score ``s`` is
  P(y = 1), so each row counts as ``s`` expected positives and ``1 - s`` expected
  negatives at every threshold. The expected confusion matrices give the expected
  PR-AUC and ROC-AUC; the expected log loss is the mean binary entropy of the scores.
  ECE is not estimated: under the calibration assumption that CBPE rests on it is 0 by
  construction, a number that would say nothing.

The confidence interval is a nonparametric bootstrap done on the counts: resampling a
day's rows with replacement is a multinomial draw over its cells (bin x label for the
realised metrics, bins for the estimated ones). Rows of one cell are taken as alike, so
the spread of log loss within a bin is left out of the interval. Draws come from a
seeded generator: the same histogram and seed give the same results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from regrow.monitoring.results import ESTIMATED, INSUFFICIENT, METRIC, REALISED, CheckResult
from regrow.settings import PerformanceSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

REALISED_METRICS = ("pr_auc", "roc_auc", "log_loss", "ece")
ESTIMATED_METRICS = ("pr_auc", "roc_auc", "log_loss")
EPS = 1e-15  # scores are clipped to [EPS, 1 - EPS] for the logarithms
ECE_BINS = 10  # equal-width probability bins of the ECE, as evaluate.calibration_bins
# Sums are taken in units of 1e-9, as integers: an integer sum does not depend on the order
# Spark adds the rows in, so a rerun gives the same bits. A bin overflows a long only past
# ~2.6e8 positives scored at the clip (-log 1e-15 = 34.5); ANSI mode then fails the query.
FIXED_POINT = 1e9
_CHUNK = 50  # bootstrap resamples drawn at once: bounds the memory to ~50 x bins arrays
# Keys of the rows that are not in a bin.
_NULL_SCORE, _BAD_SCORE, _NULL_LABEL, _BAD_LABEL = -1, -2, -3, -4


# ------------------------------------------------------------------------- histogram
@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """A day's scores counted in bins of width ``resolution``.

    Attributes:
        resolution: the width of a bin.
        score: the mean score of each non-empty bin, ascending.
        rows: rows per bin.
        positives: labeled positives per bin (None: counted without labels).
        positive_log_loss: per bin, the sum of -log p over its positives (None: no labels).
        negative_log_loss: per bin, the sum of -log(1 - p) over its negatives (None: no labels).
        entropy: per bin, the sum of -[p log p + (1 - p) log(1 - p)] over its rows.
        null_scores: rows left out for a null (or NaN) score.
        null_labels: rows left out for a null label (scored, but the label is unknown).
    """

    resolution: float
    score: np.ndarray
    rows: np.ndarray
    positives: np.ndarray | None
    positive_log_loss: np.ndarray | None
    negative_log_loss: np.ndarray | None
    entropy: np.ndarray
    null_scores: int = 0
    null_labels: int = 0

    @property
    def total_rows(self) -> int:
        return int(self.rows.sum())

    @property
    def total_positives(self) -> int | None:
        return None if self.positives is None else int(self.positives.sum())

    @property
    def expected_positives(self) -> float:
        """The sum of the scores: the positives a calibrated model expects."""
        return float((self.rows * self.score).sum())

    @property
    def log_loss_sum(self) -> float | None:
        """The sum over rows of -[y log p + (1 - y) log(1 - p)] (None: no labels)."""
        if self.positive_log_loss is None or self.negative_log_loss is None:
            return None
        return float(self.positive_log_loss.sum() + self.negative_log_loss.sum())

    @property
    def expected_log_loss_sum(self) -> float:
        """The sum over rows of -[p log p + (1 - p) log(1 - p)]: the log loss a calibrated
        model expects."""
        return float(self.entropy.sum())


def score_histogram(
    df: DataFrame, score: str, label: str | None, resolution: float
) -> ScoreHistogram:
    """Count ``df``'s scores in bins ``resolution`` wide, in one Spark aggregate.

    Rows with a null or NaN score, and (with a ``label``) rows with a null label, are left
    out and counted in ``null_scores`` / ``null_labels``.

    Args:
        df: one row per scored event.
        score: the column of calibrated probabilities of the positive class.
        label: the 0/1 (or boolean) label column; None for a day without labels.
        resolution: the width of a score bin.

    Raises:
        ValueError: a column is missing or not numeric, a score is outside [0, 1], or a
            label is not 0/1.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, NumericType

    _check_resolution(resolution)
    types = {f.name: f.dataType for f in df.schema.fields}
    for column in (score, label):
        if column is not None and column not in types:
            raise ValueError(f"no column {column!r} in the scored rows; columns: {sorted(types)}")
    if not isinstance(types[score], NumericType):
        raise ValueError(
            f"score column {score!r} is {types[score].simpleString()}, expected a probability"
        )
    s = F.col(score).cast("double")
    key = F.when(s.isNull() | F.isnan(s), _NULL_SCORE).when((s < 0) | (s > 1), _BAD_SCORE)
    y = F.lit(None).cast("int")
    if label is not None:
        raw = F.col(label)
        if isinstance(types[label], BooleanType):
            bad = F.lit(False)
        elif isinstance(types[label], NumericType):
            bad = ~raw.isin(0, 1)
        else:
            raise ValueError(
                f"label column {label!r} is {types[label].simpleString()}, expected 0/1"
            )
        key = key.when(raw.isNull(), _NULL_LABEL).when(bad, _BAD_LABEL)
        y = raw.cast("int")
    key = key.otherwise(F.floor(s / F.lit(resolution)))

    binned = df.select(key.alias("bin"), s.alias("s"), y.alias("y"))
    p = F.least(F.greatest(F.col("s"), F.lit(EPS)), F.lit(1 - EPS))

    def units(column):  # the sum over a bin's rows, in units of 1 / FIXED_POINT
        return F.sum(F.when(F.col("bin") >= 0, F.floor(column * FIXED_POINT + 0.5)))

    sums = [
        F.count(F.lit(1)).alias("rows"),
        units(F.col("s")).alias("score"),
        units(-(p * F.log(p) + (1 - p) * F.log(1 - p))).alias("entropy"),
    ]
    if label is not None:
        sums += [
            F.sum("y").alias("positives"),
            units(F.when(F.col("y") == 1, -F.log(p))).alias("positive_log_loss"),
            units(F.when(F.col("y") == 0, -F.log(1 - p))).alias("negative_log_loss"),
        ]
    counted = sorted(binned.groupBy("bin").agg(*sums).collect(), key=lambda r: r["bin"])
    left_out = {r["bin"]: r["rows"] for r in counted if r["bin"] < 0}
    bins = [r for r in counted if r["bin"] >= 0]

    def column(name):
        return np.array([r[name] or 0 for r in bins], dtype=np.int64)

    return _histogram(
        resolution,
        rows=column("rows"),
        score_units=column("score"),
        entropy_units=column("entropy"),
        positives=column("positives") if label is not None else None,
        positive_units=column("positive_log_loss") if label is not None else None,
        negative_units=column("negative_log_loss") if label is not None else None,
        left_out=left_out,
        score_column=score,
        label_column=label,
    )


def histogram_from_arrays(scores: Any, labels: Any | None, resolution: float) -> ScoreHistogram:
    """The histogram :func:`score_histogram` counts in Spark, from in-memory arrays (tests,
    benchmarks). A NaN or None score, or label, is a null one."""
    _check_resolution(resolution)
    s = np.asarray(scores, dtype=np.float64).ravel()
    key = np.full(s.shape, _NULL_SCORE, dtype=np.int64)
    has_score = ~np.isnan(s)
    key[has_score & ((s < 0) | (s > 1))] = _BAD_SCORE
    valid = has_score & (s >= 0) & (s <= 1)
    y = None
    if labels is not None:
        y = np.asarray(labels, dtype=np.float64).ravel()
        if y.shape != s.shape:
            raise ValueError(f"{len(y)} labels for {len(s)} scores: expected one per score")
        key[valid & np.isnan(y)] = _NULL_LABEL
        key[valid & ~np.isnan(y) & ~np.isin(y, (0.0, 1.0))] = _BAD_LABEL
        valid &= np.isin(y, (0.0, 1.0))
    key[valid] = np.floor(s[valid] / resolution)
    left_out = {int(k): int((key == k).sum()) for k in np.unique(key[~valid])}

    order = np.argsort(key[valid], kind="stable")
    bin_of = key[valid][order]
    starts = np.flatnonzero(np.r_[True, bin_of[1:] != bin_of[:-1]]) if bin_of.size else None
    p = np.clip(s[valid][order], EPS, 1 - EPS)

    def per_bin(counts: np.ndarray) -> np.ndarray:
        if starts is None:
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat(counts.astype(np.int64), starts)

    def units(values: np.ndarray) -> np.ndarray:  # as score_histogram's sums
        return per_bin(np.floor(values * FIXED_POINT + 0.5))

    positives = positive_units = negative_units = None
    if y is not None:
        yv = y[valid][order]
        positives = per_bin(yv)
        positive_units = units(np.where(yv == 1, -np.log(p), 0.0))
        negative_units = units(np.where(yv == 0, -np.log(1 - p), 0.0))
    return _histogram(
        resolution,
        rows=per_bin(np.ones(p.shape)),
        score_units=units(s[valid][order]),
        entropy_units=units(-(p * np.log(p) + (1 - p) * np.log(1 - p))),
        positives=positives,
        positive_units=positive_units,
        negative_units=negative_units,
        left_out=left_out,
        score_column="scores",
        label_column="labels",
    )


def _check_resolution(resolution: float) -> None:
    if not 0 < resolution < 1:
        raise ValueError(f"score resolution must be in (0, 1), got {resolution}")


def _histogram(
    resolution: float,
    *,
    rows: np.ndarray,
    score_units: np.ndarray,
    entropy_units: np.ndarray,
    positives: np.ndarray | None,
    positive_units: np.ndarray | None,
    negative_units: np.ndarray | None,
    left_out: dict[int, int],
    score_column: str,
    label_column: str | None,
) -> ScoreHistogram:
    """Bins' counts and fixed-point sums (ascending bins) -> the histogram; rows that are
    not in a bin are counted, or rejected with the column named."""
    if left_out.get(_BAD_SCORE):
        raise ValueError(
            f"{left_out[_BAD_SCORE]} value(s) of {score_column!r} are outside [0, 1]: "
            "expected calibrated probabilities"
        )
    if left_out.get(_BAD_LABEL):
        raise ValueError(f"{left_out[_BAD_LABEL]} value(s) of {label_column!r} are not 0/1")

    def natural(units: np.ndarray | None) -> np.ndarray | None:
        return None if units is None else units / FIXED_POINT

    hist = ScoreHistogram(
        resolution=resolution,
        score=score_units / FIXED_POINT / np.maximum(rows, 1),
        rows=rows,
        positives=positives,
        positive_log_loss=natural(positive_units),
        negative_log_loss=natural(negative_units),
        entropy=entropy_units / FIXED_POINT,
        null_scores=left_out.get(_NULL_SCORE, 0),
        null_labels=left_out.get(_NULL_LABEL, 0),
    )
    logger.info(
        "score histogram: %d rows in %d bins; left out %d null scores, %d null labels",
        hist.total_rows, len(rows), hist.null_scores, hist.null_labels,
    )  # fmt: skip
    return hist


# --------------------------------------------------------------------------- metrics
def realised(
    hist: ScoreHistogram,
    cfg: PerformanceSettings,
    metrics: Sequence[str] = REALISED_METRICS,
    seed: int = 0,
) -> list[CheckResult]:
    """The day's metrics on its matured labels, one result per metric.

    insufficient_data (value None, the reason in ``detail``) when the day has fewer
    positives than ``cfg.min_positives``, no negatives, or no rows.

    Raises:
        ValueError: the histogram was counted without labels, or a metric is unknown.
    """
    names = _metric_names(metrics, REALISED_METRICS, REALISED)
    if hist.positives is None:
        raise ValueError("realised performance needs labels: the histogram was counted without")
    detail = _detail(hist)
    rows, positives = hist.total_rows, hist.total_positives
    if not rows:
        return _insufficient(REALISED, names, hist, "no rows", detail)
    if positives < cfg.min_positives:
        reason = (
            f"{positives} positives in {rows} rows, fewer than min_positives={cfg.min_positives}"
        )
        return _insufficient(REALISED, names, hist, reason, detail)
    if positives == rows:
        return _insufficient(REALISED, names, hist, f"no negatives in {rows} rows", detail)

    pos, neg = hist.positives, hist.rows - hist.positives
    with np.errstate(divide="ignore", invalid="ignore"):  # a cell without rows is never drawn
        pos_loss = np.where(pos > 0, hist.positive_log_loss / pos, 0.0)
        neg_loss = np.where(neg > 0, hist.negative_log_loss / neg, 0.0)
    calibration = _calibration_bins(hist.score)

    def values(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
        n = (pos + neg).sum(axis=-1)
        pr_auc, roc_auc = _ranking(pos, neg)
        expected = ((pos + neg) * hist.score - pos) @ calibration
        return {
            "pr_auc": pr_auc,
            "roc_auc": roc_auc,
            "log_loss": (pos @ pos_loss + neg @ neg_loss) / n,
            "ece": np.abs(expected).sum(axis=-1) / n,
        }

    value = values(pos[None], neg[None])
    value["log_loss"] = np.array([hist.log_loss_sum / rows])  # exact, not via cell means
    k = len(pos)
    samples = _bootstrap(
        np.concatenate([pos, neg]), cfg.bootstrap, seed, lambda d: values(d[:, :k], d[:, k:])
    )
    return _results(REALISED, names, value, samples, hist, cfg, detail)


def estimated(
    hist: ScoreHistogram,
    cfg: PerformanceSettings,
    metrics: Sequence[str] = ESTIMATED_METRICS,
    seed: int = 0,
) -> list[CheckResult]:
    """The day's metrics estimated from its calibrated scores alone (CBPE), one result per
    metric. Labels in the histogram, if any, are not read.

    insufficient_data when the scores expect fewer positives than ``cfg.min_positives``, or
    there are no rows.

    Raises:
        ValueError: a metric is unknown, or is ``ece`` (0 by construction under CBPE's
            calibration assumption, so never estimated).
    """
    names = _metric_names(metrics, ESTIMATED_METRICS, ESTIMATED)
    detail = _detail(hist)
    rows, expected = hist.total_rows, hist.expected_positives
    if not rows:
        return _insufficient(ESTIMATED, names, hist, "no rows", detail)
    if expected < cfg.min_positives:
        reason = (
            f"{expected:.1f} expected positives in {rows} rows, fewer than "
            f"min_positives={cfg.min_positives}"
        )
        return _insufficient(ESTIMATED, names, hist, reason, detail)

    entropy = hist.entropy / hist.rows

    def values(draws: np.ndarray) -> dict[str, np.ndarray]:
        pos = draws * hist.score
        pr_auc, roc_auc = _ranking(pos, draws - pos)
        return {"pr_auc": pr_auc, "roc_auc": roc_auc, "log_loss": draws @ entropy / draws.sum(-1)}

    value = values(hist.rows[None].astype(np.float64))
    value["log_loss"] = np.array([hist.expected_log_loss_sum / rows])
    samples = _bootstrap(hist.rows, cfg.bootstrap, seed, values)
    return _results(ESTIMATED, names, value, samples, hist, cfg, detail)


def _ranking(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and ROC-AUC of (expected) positives and negatives per score bin
    (last axis, ascending scores; a bin's rows are tied); NaN where a class is absent.

    Average precision is sklearn's step sum over thresholds, sum(dRecall x precision); the
    AUC is Mann-Whitney's, a tie counting one half.
    """
    pos, neg = pos[..., ::-1], neg[..., ::-1]  # from the highest threshold down
    tp, fp = np.cumsum(pos, axis=-1), np.cumsum(neg, axis=-1)
    positives, negatives = tp[..., -1], fp[..., -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pos > 0, tp / (tp + fp), 0.0)
        pr_auc = (pos * precision).sum(axis=-1) / positives
        # a negative outranks none of the positives above it and half of those beside it
        roc_auc = (neg * (tp - pos / 2)).sum(axis=-1) / (positives * negatives)
    return pr_auc, roc_auc


def _calibration_bins(score: np.ndarray) -> np.ndarray:
    """(bins x ECE_BINS) one-hot: the equal-width probability bin of each score bin."""
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    return np.eye(ECE_BINS)[np.clip(np.digitize(score, edges[1:-1]), 0, ECE_BINS - 1)]


def _bootstrap(
    cells: np.ndarray,
    resamples: int,
    seed: int,
    values: Callable[[np.ndarray], dict[str, np.ndarray]],
) -> dict[str, np.ndarray] | None:
    """``values`` of ``resamples`` multinomial draws of ``cells.sum()`` rows over the
    cells (a row resample, on counts); None without resamples."""
    if not resamples:
        return None
    rng = np.random.default_rng(seed)
    n = int(cells.sum())
    chunks = [
        values(rng.multinomial(n, cells / n, size=min(_CHUNK, resamples - start)))
        for start in range(0, resamples, _CHUNK)
    ]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _metric_names(metrics: Sequence[str], known: tuple[str, ...], check: str) -> list[str]:
    names = list(metrics)
    if check == ESTIMATED and "ece" in names:
        raise ValueError(
            "ece is not estimated: CBPE assumes calibrated scores, under which it is 0 by "
            "construction"
        )
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} for {check}: expected some of {known}")
    return names


def _detail(hist: ScoreHistogram) -> dict[str, Any]:
    return {
        "positives": hist.total_positives,
        "expected_positives": hist.expected_positives,
        "null_scores": hist.null_scores,
        "null_labels": hist.null_labels,
    }


def _insufficient(
    check: str, names: list[str], hist: ScoreHistogram, reason: str, detail: dict[str, Any]
) -> list[CheckResult]:
    logger.info("%s performance: insufficient data (%s)", check, reason)
    return [
        CheckResult(check=check, column=name, kind=METRIC, status=INSUFFICIENT,
                    n_current=hist.total_rows, detail={**detail, "reason": reason})
        for name in names
    ]  # fmt: skip


def _results(
    check: str,
    names: list[str],
    value: dict[str, np.ndarray],
    samples: dict[str, np.ndarray] | None,
    hist: ScoreHistogram,
    cfg: PerformanceSettings,
    detail: dict[str, Any],
) -> list[CheckResult]:
    out = []
    for name in names:
        low = high = None
        finite = samples[name][np.isfinite(samples[name])] if samples else np.zeros(0)
        if finite.size:
            tail = (1 - cfg.confidence) / 2
            low, high = (float(q) for q in np.quantile(finite, [tail, 1 - tail]))
        out.append(
            CheckResult(check=check, column=name, kind=METRIC, value=float(value[name][0]),
                        ci_low=low, ci_high=high, n_current=hist.total_rows, detail=dict(detail))
        )  # fmt: skip
    return out
