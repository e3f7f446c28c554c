"""One monitoring result, and ``gold.monitoring``'s schema.

Every check of a monitored day (a feature's drift, its null rate, unseen categories, the
score's drift, the label's drift, a realised or estimated performance metric) is one
:class:`CheckResult`; :mod:`regrow.monitoring.monitor` adds the day, the windows, the
champion and the run, and writes them to ``gold.monitoring``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa

# ------------------------------------------------------------------------- checks
DRIFT = "drift"  # a feature's distribution, reference vs current
NULL_RATE = "null_rate"  # a feature's share of nulls
UNSEEN = "unseen_categories"  # a categorical feature's values the reference never had
PREDICTION_DRIFT = "prediction_drift"  # the champion's score distribution
LABEL_DRIFT = "label_drift"  # the label rate of matured labels
REALISED = "performance_realised"  # a metric on matured labels
ESTIMATED = "performance_estimated"  # a metric estimated from calibrated scores (CBPE)
DRIFT_CHECKS = (DRIFT, NULL_RATE, UNSEEN, PREDICTION_DRIFT, LABEL_DRIFT)
PERFORMANCE_CHECKS = (REALISED, ESTIMATED)

# ------------------------------------------------------------------------- kinds
NUMERIC, CATEGORICAL, BOOLEAN = "numeric", "categorical", "boolean"
SCORE, LABEL, METRIC = "score", "label", "metric"

# ------------------------------------------------------------------------ status
OK, FLAGGED, INSUFFICIENT = "ok", "flagged", "insufficient_data"


@dataclass(frozen=True)
class CheckResult:
    """One check of one column on one day.

    Attributes:
        check: one of the checks above.
        column: the feature, ``score``, the label column, or the metric's name
            (``pr_auc``...) for a performance check.
        kind: numeric | categorical | boolean | score | label | metric.
        statistic, p_value: the test's statistic and p-value (None: no test).
        p_adjusted: the p-value after the day's multiple-testing correction.
        effect: the size of the shift (PSI for distributions; the absolute change for a
            null rate; the share of rows for unseen categories).
        js: the Jensen-Shannon distance of the two distributions (base 2, in [0, 1]).
        threshold: the effect a shift must reach to be flagged.
        value: the current value (a metric; the current null rate or label rate...).
        ci_low, ci_high: the confidence interval of ``value``.
        status: ok | flagged | insufficient_data.
        n_reference, n_current: rows in the reference and current windows.
        detail: what a reader needs to see the shift (bins and counts, the reason for
            insufficient_data...), stored as JSON.
    """

    check: str
    column: str
    kind: str
    status: str = OK
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effect: float | None = None
    js: float | None = None
    threshold: float | None = None
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_reference: int | None = None
    n_current: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.status == FLAGGED

    def with_(self, **changes: Any) -> CheckResult:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Columns the monitor adds to every result, then the result's own.
SCHEMA = pa.schema([
    ("monitor_date", pa.date32()),  # the monitored day (partition; a rerun replaces it)
    ("data_date", pa.date32()),  # the day the rows describe (a realised metric: an older day)
    ("check", pa.string()),
    ("column", pa.string()),
    ("kind", pa.string()),
    ("status", pa.string()),
    ("statistic", pa.float64()),
    ("p_value", pa.float64()),
    ("p_adjusted", pa.float64()),
    ("effect", pa.float64()),
    ("js", pa.float64()),
    ("threshold", pa.float64()),
    ("value", pa.float64()),
    ("ci_low", pa.float64()),
    ("ci_high", pa.float64()),
    ("n_reference", pa.int64()),
    ("n_current", pa.int64()),
    ("reference_window", pa.string()),  # first..last day
    ("current_window", pa.string()),
    ("champion_version", pa.string()),
    ("detail", pa.string()),  # JSON
    ("run_id", pa.string()),
])  # fmt: skip


def to_row(result: CheckResult, **context: Any) -> dict[str, Any]:
    """A result as a gold.monitoring row; ``context`` gives the columns the monitor adds."""
    row = {**context, **result.as_dict()}
    row["detail"] = json.dumps(result.detail, sort_keys=True, default=str)
    for name in ("statistic", "p_value", "p_adjusted", "effect", "js", "threshold", "value",
                 "ci_low", "ci_high"):  # fmt: skip
        value = row.get(name)
        row[name] = None if value is None else float(value)
    return row
