"""What a validation run found: one :class:`ExpectationOutcome` per expectation, one
:class:`ValidationOutcome` per table partition, and the ``gold.validation`` rows of both.

A critical failure raises :class:`ValidationError` naming the table, partition,
expectation, column, the observed value or a sample of offending values, the allowed range
and the likely cause; a warning is recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from regrow.validation.suites import CRITICAL, WARNING, Severity

# How many offending values a result (and an error message) carries.
SAMPLE_SIZE = 5
# The arguments of an expectation that say what is allowed (shown with a failure).
_BOUNDS = ("min_value", "max_value", "strict_min", "strict_max", "value", "value_set",
           "type_list", "mostly")  # fmt: skip
# The likely cause of a failure, by expectation, for the user to check first.
_CAUSES = {
    "expect_column_values_to_not_be_null": "the feed sent rows without it? check the landing "
    "files of that day",
    "expect_column_values_to_be_unique": "the same rows landed twice (a re-sent file)? check "
    "the landing files of that day",
    "expect_compound_columns_to_be_unique": "a day scored twice by the same model? rescore it",
    "expect_column_values_to_be_in_set": "a new value upstream? add it to the contract "
    "(dataset) or fix the feed",
    "expect_column_values_to_be_between": "values out of range: check the feed, or the bounds "
    "in params.yaml (dataset)",
    "expect_column_values_to_be_in_type_list": "a column changed type: check the files against "
    "params.yaml's dataset section",
    "expect_table_columns_to_match_set": "the table and its suite disagree on columns: after a "
    "contract change run `regrow expectations generate` and review it",
    "expect_table_row_count_to_equal": "rows were lost or repeated since the table it is built "
    "from: rebuild the day",
    "expect_column_pair_values_a_to_be_greater_than_b": "a label before its event: check the "
    "label files' timestamps",
}


class ValidationError(RuntimeError):
    """A table partition failed a critical expectation; ``outcome`` has every result."""

    def __init__(self, message: str, outcome: ValidationOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation_type: str
    column: str | None
    severity: Severity
    row_level: bool
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: Any = None
    sample: list[Any] = field(default_factory=list)
    error: str | None = None
    # What is allowed (min_value, max_value, value_set ..., suite parameters resolved).
    bounds: dict[str, Any] = field(default_factory=dict)
    # What the bounds were derived from (e.g. the median row count of the days before).
    note: str | None = None

    def describe(self, table: str | None = None) -> str:
        """One line: the expectation, what was observed (or a sample of offending values),
        what is allowed, and the likely cause (``table`` refines it)."""
        name = f"{self.expectation_type}({self.column})" if self.column else self.expectation_type
        if self.error:
            return f"{name}: could not be evaluated: {self.error}"
        allowed = self._allowed()
        cause = "" if self.success else f": {self._cause(table)}"
        if self.expectation_type.startswith("expect_table_row_count_to_"):
            why = "; ".join(filter(None, [self.expectation_type, self.note]))
            where = "outside" if "between" in self.expectation_type else "instead of"
            return f"row count {self.observed_value} {where} {allowed} ({why}){cause}"
        shown = f" (allowed: {allowed})" if allowed else ""
        if self.unexpected_count is not None:
            sample = json.dumps(self.sample, default=str)
            return (
                f"{name}: {self.unexpected_count} of {self.element_count} rows unexpected, "
                f"e.g. {sample}{shown}{cause}"
            )
        return f"{name}: observed {json.dumps(self.observed_value, default=str)}{shown}{cause}"

    def _allowed(self) -> str:
        b = self.bounds
        if "value" in b:
            return f"{b['value']}"
        if "value_set" in b:
            values = list(b["value_set"] or [])
            more = f" and {len(values) - 10} more" if len(values) > 10 else ""
            return f"one of {json.dumps(values[:10], default=str)}{more}"
        if "type_list" in b:
            return f"one of {json.dumps(b['type_list'], default=str)}"
        if "min_value" in b or "max_value" in b:
            low, high = b.get("min_value"), b.get("max_value")
            left = "(" if b.get("strict_min") else "["
            right = ")" if b.get("strict_max") else "]"
            shown = [
                "-inf" if low is None else _plain(low),
                "inf" if high is None else _plain(high),
            ]
            return f"{left}{shown[0]}, {shown[1]}{right}"
        return ""

    def _cause(self, table: str | None) -> str:
        kind = self.expectation_type
        if kind == "expect_table_row_count_to_be_between":
            if table == "bronze.quarantine":
                return (
                    "too many rows broke the contract: see their reasons in bronze.quarantine "
                    "(regrow ingest lists them), fix the files and ingest the day again, or "
                    "raise validation.max_quarantine_fraction"
                )
            low = self.bounds.get("min_value")
            observed = self.observed_value
            if isinstance(observed, int | float) and low is not None and observed < low:
                return "a partial or missing feed? check the landing files of that day"
            return "files landed twice, or another day's rows? check the landing files of that day"
        return _CAUSES.get(kind, "see the Data Docs page for the offending rows")


@dataclass(frozen=True)
class ValidationOutcome:
    """One validation run of one table partition."""

    table: str
    partition: dict[str, Any]
    suite: str
    run_id: str
    validated_at: dt.datetime
    results: list[ExpectationOutcome]
    data_docs_path: str | None

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == WARNING]

    @property
    def success(self) -> bool:
        """No critical failure (warnings do not fail a partition)."""
        return not self.critical_failures

    @property
    def partition_str(self) -> str:
        return "/".join(f"{k}={v}" for k, v in self.partition.items())

    def message(self) -> str:
        """One line per critical failure, naming the table and partition, then the Data
        Docs page of the run."""
        lines = [
            f"{self.table} {self.partition_str}: {r.describe(self.table)}"
            for r in self.critical_failures
        ]
        if self.data_docs_path:
            lines.append(f"  Data Docs: {self.data_docs_path} (run {self.run_id})")
        return "\n".join(lines)

    def raise_for_critical(self) -> None:
        """Raise :class:`ValidationError` when a critical expectation failed."""
        if self.critical_failures:
            raise ValidationError(self.message(), self)


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate_day` found: one outcome per table (none critical)."""

    day: str
    outcomes: list[ValidationOutcome]

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "tables": {
                o.table: {
                    "passed": o.success,
                    "expectations": len(o.results),
                    "warnings": len(o.warnings),
                    "data_docs": o.data_docs_path,
                }
                for o in self.outcomes
            },
        }


# Schema of gold.validation rows (Spark DDL), one row per expectation per run.
# gold.validation's columns besides its ``day``: one row per expectation and run.
OUTCOME_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("partition", pa.string()),
        ("suite", pa.string()),
        ("expectation_type", pa.string()),
        ("column", pa.string()),
        ("severity", pa.string()),
        ("success", pa.bool_()),
        ("element_count", pa.int64()),
        ("unexpected_count", pa.int64()),
        ("run_id", pa.string()),
        ("validated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def outcome_rows(outcome: ValidationOutcome) -> list[dict[str, Any]]:
    """One ``gold.validation`` row per expectation (see :data:`OUTCOME_SCHEMA`)."""
    validated_at = outcome.validated_at.astimezone(dt.UTC)
    return [
        {
            "table": outcome.table,
            "partition": outcome.partition_str,
            "suite": outcome.suite,
            "expectation_type": r.expectation_type,
            "column": r.column,
            "severity": r.severity,
            "success": r.success,
            "element_count": r.element_count,
            "unexpected_count": r.unexpected_count,
            "run_id": outcome.run_id,
            "validated_at": validated_at,
        }
        for r in outcome.results
    ]


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else str(value)


def _outcomes_of(
    results, parameters: Mapping[str, Any] | None = None, recent_counts: Sequence[int] = ()
) -> list[ExpectationOutcome]:
    """regrow's view of GX results; a column the table lacks is named as such instead of
    the metric's traceback (GX evaluates every expectation on it and fails each).

    Args:
        parameters: the suite parameters' values the run had (to show the bounds).
        recent_counts: the row counts of the days before (the row-count bounds' source).
    """
    missing = {
        column
        for r in results
        for column in ((r.result or {}).get("details") or {})
        .get("mismatched", {})
        .get("missing", [])
    }
    counts = [c for c in recent_counts if c > 0]
    note = (
        f"the median of the {len(counts)} day(s) before is {statistics.median(counts):g}"
        if counts
        else None
    )
    return [_outcome_of(r, missing, parameters or {}, note) for r in results]


def _outcome_of(
    result, missing: set[str], parameters: Mapping[str, Any], row_count_note: str | None
) -> ExpectationOutcome:
    config = result.expectation_config
    meta = config.meta or {}
    body = result.result or {}
    column = config.kwargs.get("column")
    bounds = {}
    for key in _BOUNDS:
        value = config.kwargs.get(key)
        if isinstance(value, Mapping) and "$PARAMETER" in value:
            value = parameters.get(value["$PARAMETER"])
        if value is not None or key in ("min_value", "max_value") and key in config.kwargs:
            bounds[key] = value
    error = _error_of(result.exception_info or {})
    if error and column in missing:
        error = "the column is missing"
    mismatched = (body.get("details") or {}).get("mismatched")
    return ExpectationOutcome(
        expectation_type=config.type,
        column=column,
        severity=meta.get("severity", CRITICAL),
        row_level=bool(meta.get("row_level", False)),
        success=bool(result.success),
        element_count=body.get("element_count"),
        unexpected_count=body.get("unexpected_count"),
        observed_value=mismatched or body.get("observed_value"),
        sample=list(body.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
        error=error,
        bounds=bounds,
        note=row_count_note if config.type == "expect_table_row_count_to_be_between" else None,
    )


def _error_of(info: Mapping[str, Any]) -> str | None:
    """The exception message of a result: GX keys it by metric when a metric failed."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None
