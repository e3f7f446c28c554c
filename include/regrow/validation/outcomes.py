"""What a validation run found: one :class:`ExpectationOutcome` per expectation, one
:class:`ValidationOutcome` per table partition, and the ``gold.validation`` rows of both.

A critical failure raises :class:`ValidationError` naming the table, partition,
expectation, column and a sample of offending values; a warning is recorded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from regrow.validation.suites import CRITICAL, WARNING, Severity

# How many offending values a result (and an error message) carries.
SAMPLE_SIZE = 5


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

    def describe(self) -> str:
        name = f"{self.expectation_type}({self.column})" if self.column else self.expectation_type
        if self.error:
            return f"{name}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            sample = json.dumps(self.sample, default=str)
            return f"{name}: {self.unexpected_count} of {self.element_count} rows unexpected, e.g. {sample}"
        return f"{name}: observed {json.dumps(self.observed_value, default=str)}"


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
        failures = self.critical_failures
        lines = [
            f"{self.table} {self.partition_str}: {len(failures)} critical expectation(s) failed"
            f" (run {self.run_id})"
        ]
        lines += [f"  - {r.describe()}" for r in failures]
        if self.data_docs_path:
            lines.append(f"  Data Docs: {self.data_docs_path}")
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


def _outcomes_of(results) -> list[ExpectationOutcome]:
    """regrow's view of GX results; a column the table lacks is named as such instead of
    the metric's traceback (GX evaluates every expectation on it and fails each)."""
    missing = {
        column
        for r in results
        for column in ((r.result or {}).get("details") or {})
        .get("mismatched", {})
        .get("missing", [])
    }
    return [_outcome_of(r, missing) for r in results]


def _outcome_of(result, missing: set[str]) -> ExpectationOutcome:
    config = result.expectation_config
    meta = config.meta or {}
    body = result.result or {}
    column = config.kwargs.get("column")
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
    )


def _error_of(info: Mapping[str, Any]) -> str | None:
    """The exception message of a result: GX keys it by metric when a metric failed."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None
