"""Validation: Great Expectations suites generated from the contract, row-level rules that
send bad rows to quarantine, and the daily gate that records every result.

Modules, lowest first (imports go down only): ``suites`` (the contract's expectations,
severity, suite parameter names), ``outcomes`` (what a run found, ``ValidationError``),
``parameters`` (the suite parameters' values for a day), ``rows`` (row-level rules as
Spark predicates), ``runner`` (one GX run on Spark, Data Docs), ``gate`` (a day's tables,
recorded in ``gold.validation``).
"""

from regrow.validation.gate import build_docs, suite_for, validate_day
from regrow.validation.outcomes import (
    OUTCOME_SCHEMA,
    ValidationError,
    ValidationOutcome,
    ValidationReport,
    outcome_rows,
)
from regrow.validation.parameters import (
    partition_counts,
    recent_row_counts,
    row_count_bounds,
    runtime_parameters,
)
from regrow.validation.rows import quarantine_records, row_predicates, split_invalid_rows
from regrow.validation.runner import data_docs_dir, validate
from regrow.validation.suites import (
    SUITES,
    SuiteError,
    build_suite,
    load_suite,
    suite_path,
    write_suites,
)

__all__ = [
    "OUTCOME_SCHEMA",
    "SUITES",
    "SuiteError",
    "ValidationError",
    "ValidationOutcome",
    "ValidationReport",
    "build_docs",
    "build_suite",
    "data_docs_dir",
    "load_suite",
    "outcome_rows",
    "partition_counts",
    "quarantine_records",
    "recent_row_counts",
    "row_count_bounds",
    "row_predicates",
    "runtime_parameters",
    "split_invalid_rows",
    "suite_for",
    "suite_path",
    "validate",
    "validate_day",
    "write_suites",
]
