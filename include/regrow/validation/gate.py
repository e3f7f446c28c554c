"""A day's gate: each table's suite (its reviewed file, checked against the contract),
validated on that day's partition, every result recorded in ``gold.validation``, and the
day blocked on a critical failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from regrow.catalog import (
    BRONZE_TABLES,
    DAY,
    EVENTS,
    LABELS,
    QUARANTINE,
    SOURCES,
    TABLE,
    TABLES,
    VALIDATION,
)
from regrow.settings import Settings, ValidationSettings
from regrow.storage.session import one_task_if_small
from regrow.validation.outcomes import (
    OUTCOME_SCHEMA,
    ValidationError,
    ValidationOutcome,
    ValidationReport,
    outcome_rows,
)
from regrow.validation.parameters import partition_counts, recent_row_counts, row_count_bounds
from regrow.validation.runner import build_data_docs, validate
from regrow.validation.suites import (
    MAX_QUARANTINED,
    ROW_COUNT_MAX,
    ROW_COUNT_MIN,
    SOURCE_ROWS,
    SUITES,
    SuiteError,
    build_suite,
    load_suite,
    suite_path,
)

if TYPE_CHECKING:
    import great_expectations as gx

    from regrow.stage import StageContext

logger = logging.getLogger(__name__)


def suite_for(settings: Settings, table: str) -> gx.ExpectationSuite:
    """The suite of ``table``: its file in ``validation.expectations_dir`` (reviewed, in
    git), else the one generated from the contract, with a warning saying so.

    Raises:
        SuiteError: the file expects other columns than params.yaml now gives the table
            (e.g. ``features.windows`` changed): regenerate and review it.
    """
    path = suite_path(settings.resolve(settings.validation.expectations_dir), table)
    generated = build_suite(settings.dataset, table, settings.features)
    if not path.is_file():
        logger.warning(
            "no suite file %s: validating %s with the suite generated from the contract "
            "(`regrow expectations generate` writes it for review)",
            path, table,
        )  # fmt: skip
        return generated
    suite = load_suite(path)
    expected, found = _column_set(generated), _column_set(suite)
    if found is not None and expected is not None and set(found) != set(expected):
        raise SuiteError(
            f"{path} expects the columns of {table} to be {sorted(found)}, but params.yaml "
            f"now gives {sorted(expected)} (missing from the suite: "
            f"{sorted(set(expected) - set(found))}, no longer built: "
            f"{sorted(set(found) - set(expected))}): run `regrow expectations generate` and "
            "review the diff"
        )
    return suite


def _column_set(suite: gx.ExpectationSuite) -> list[str] | None:
    for expectation in suite.expectations:
        config = expectation.configuration.to_json_dict()
        if config["type"] == "expect_table_columns_to_match_set":
            return list(config["kwargs"]["column_set"])
    return None


def quarantine_limit(cfg: ValidationSettings, landed: int) -> int:
    """The most quarantined rows a day of ``landed`` rows (bronze + quarantined, all
    kinds) may have before the gate blocks it: ``max_quarantine_fraction`` of them, but
    never fewer than ``min_quarantined_to_block`` - 1 (a few bad rows in a small day are
    row errors, quarantined with their reasons, not a broken feed)."""
    by_fraction = math.floor(cfg.max_quarantine_fraction * landed)
    return max(by_fraction, cfg.min_quarantined_to_block - 1)


def blocked_by_quarantine(cfg: ValidationSettings, landed: int, quarantined: int) -> bool:
    """Whether the gate blocks a day of ``landed`` rows for its ``quarantined`` rows."""
    return quarantined > quarantine_limit(cfg, landed)


def validate_day(
    ctx: StageContext,
    day: dt.date,
    tables: Sequence[str] = BRONZE_TABLES,
    data_docs: bool = True,
) -> ValidationReport:
    """Validate one day's partition of each of ``tables``; record every expectation's
    result in ``gold.validation`` and build Data Docs (unless ``data_docs`` is False: a
    range builds them once at its end); then raise :class:`ValidationError` naming each
    critical failure (warnings are recorded and logged only)."""
    spark, settings, lakehouse, run_id = ctx.spark, ctx.settings, ctx.lakehouse, ctx.run_id
    cfg = settings.validation
    reports_dir = settings.resolve(settings.reports_dir)
    unknown = [t for t in tables if t not in SUITES]
    if unknown:
        raise SuiteError(f"no suite is defined for table {unknown[0]!r} (known: {sorted(SUITES)})")
    # Each table's rows per day, read once from its Delta log (a year's log is long).
    needed = {EVENTS, LABELS, QUARANTINE, *tables, *(SOURCES.get(t, t) for t in tables)}
    counts = {t: partition_counts(lakehouse, t) for t in sorted(needed)}
    # A share of what landed that day: its bronze rows plus its quarantined rows.
    landed = sum(counts[t].get(str(day), 0) for t in (EVENTS, LABELS, QUARANTINE))
    max_quarantined = quarantine_limit(cfg, landed)

    def check(table: str) -> ValidationOutcome:
        column = TABLES[table].date_column
        partition = {column: day}
        # A small day's suite as one task: each of its queries is one Spark job; and
        # when its files are small, on its rows read once into memory (read_to_query).
        df = one_task_if_small(
            lakehouse.read_to_query(spark, table, partition), counts[table].get(str(day), 0)
        )
        recent = recent_row_counts(lakehouse, table, day, cfg.recent_days, counts[table])
        low, high = row_count_bounds(recent, cfg.row_count_factor)
        outcome = validate(
            df,
            suite_for(settings, table),
            table,
            partition,
            run_id,
            reports_dir,
            recent_counts=recent,
            parameters={
                ROW_COUNT_MIN: low,
                ROW_COUNT_MAX: high,
                MAX_QUARANTINED: max_quarantined,
                SOURCE_ROWS: counts[SOURCES.get(table, table)].get(str(day), 0),
            },
            raise_on_critical=False,
            data_docs=data_docs,
        )
        # Its warnings were logged by the runner, once.
        logger.info(
            "%s %s: %s; Data Docs: %s",
            table,
            day,
            "passed" if outcome.success else "FAILED",
            outcome.data_docs_path,
        )
        return outcome

    # One table after another, in this thread: Great Expectations is not thread-safe (its
    # suite-parameter parser, a shared pyparsing grammar, failed with "push_first() missing
    # 1 required positional argument" when two suites ran at once).
    outcomes = [check(t) for t in tables]
    rows = [row | {DAY: day} for o in outcomes for row in outcome_rows(o)]
    # One small commit, without a Spark job: a rerun replaces the day's rows of the tables.
    lakehouse.replace_records(
        VALIDATION,
        pa.Table.from_pylist(rows, OUTCOME_SCHEMA.append(pa.field(DAY, pa.date32()))),
        {DAY: day, TABLE: list(tables)},
        partition_by=list(TABLES[VALIDATION].partition_by),
    )
    failed = [o for o in outcomes if o.critical_failures]
    if failed:
        message = "\n".join(o.message() for o in failed)
        raise ValidationError(f"{day} is blocked:\n{message}", failed[0])
    return ValidationReport(str(day), outcomes)


def build_docs(settings: Settings, tables: Sequence[str] = tuple(SUITES)) -> str:
    """The Data Docs site rebuilt once (after a range validated with ``data_docs=False``);
    returns its index page."""
    return build_data_docs(
        settings.resolve(settings.reports_dir), [suite_for(settings, t) for t in tables]
    )
