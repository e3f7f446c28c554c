"""Validation's pure rules, without Spark or GX: row-count bounds, the suite parameters of
a day, outcome messages and the ``gold.validation`` rows they become."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from regrow.validation import (
    OUTCOME_SCHEMA,
    SuiteError,
    ValidationError,
    ValidationOutcome,
    ValidationReport,
    outcome_rows,
    row_count_bounds,
    runtime_parameters,
    suite_path,
)
from regrow.validation.outcomes import ExpectationOutcome, _error_of
from regrow.validation.parameters import _resolve, partition_day
from regrow.validation.runner import _run_name
from regrow.validation.suites import DAY_END, DAY_START, ROW_COUNT_MAX, ROW_COUNT_MIN

DAY = dt.date(2026, 1, 3)
START = dt.datetime(2026, 1, 3, tzinfo=dt.UTC)


def result(success: bool, severity: str = "critical", **kw) -> ExpectationOutcome:
    fields = {
        "expectation_type": "expect_column_values_to_not_be_null",
        "column": "card_id",
        "severity": severity,
        "row_level": True,
        "success": success,
        "element_count": 10,
        "unexpected_count": 0 if success else 2,
    }
    return ExpectationOutcome(**(fields | kw))


def outcome(*results: ExpectationOutcome, docs: str | None = None) -> ValidationOutcome:
    return ValidationOutcome(
        table="bronze.events",
        partition={"event_date": DAY},
        suite="bronze.events",
        run_id="run-1",
        validated_at=dt.datetime(2026, 1, 3, 13, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        results=list(results),
        data_docs_path=docs,
    )


def test_row_count_bounds_take_the_median_of_days_with_rows():
    # Zeros are missing days, not evidence; the median ignores one broken day.
    assert row_count_bounds([100, 0, 300, 200, 90_000]) == (50, 1250)
    assert row_count_bounds([10, 20], factor=2) == (7, 30)
    # The lower bound is at least one row: an empty day is always flagged.
    assert row_count_bounds([4]) == (1, 20)
    assert row_count_bounds([0, 0]) == (1, None)


def test_a_past_day_ends_at_midnight():
    params = runtime_parameters(DAY, [10, 10], now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert params == {
        DAY_START: START,
        DAY_END: dt.datetime(2026, 1, 4, tzinfo=dt.UTC),
        ROW_COUNT_MIN: 2,
        ROW_COUNT_MAX: 50,
    }


def test_today_ends_now_in_utc_so_a_future_timestamp_fails():
    now = dt.datetime(2026, 1, 3, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    params = runtime_parameters(DAY, now=now, row_count_factor=2)
    assert params[DAY_START] == START
    assert params[DAY_END] == dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)
    assert params[DAY_END].utcoffset() == dt.timedelta(0)
    assert (params[ROW_COUNT_MIN], params[ROW_COUNT_MAX]) == (1, None)


def test_partition_day_reads_a_date_a_datetime_or_an_iso_string():
    assert partition_day({"event_date": DAY}) == DAY
    assert partition_day({"event_date": dt.datetime(2026, 1, 3, 23, 59)}) == DAY
    assert partition_day({"label_date": "2026-01-03"}) == DAY


@pytest.mark.parametrize("partition", [{}, {"a": DAY, "b": DAY}, {"event_date": 3}])
def test_partition_day_refuses_a_spec_without_exactly_one_day(partition):
    with pytest.raises(ValueError, match="must name exactly one day"):
        partition_day(partition)


def test_resolve_fills_a_suite_parameter_and_keeps_plain_values():
    params = {DAY_END: START}
    assert _resolve({"$PARAMETER": DAY_END}, params, "here") == START
    assert _resolve(5, params, "here") == 5
    assert _resolve({"value": 1}, params, "here") == {"value": 1}


def test_resolve_names_the_expectation_and_the_missing_parameter():
    with pytest.raises(SuiteError, match=r"bronze.events: between\(event_time\): .*'day_start'"):
        _resolve({"$PARAMETER": DAY_START}, {}, "bronze.events: between(event_time)")


def test_describe_says_what_was_unexpected_observed_or_not_evaluated():
    assert result(False, sample=["c9", None]).describe() == (
        'expect_column_values_to_not_be_null(card_id): 2 of 10 rows unexpected, e.g. ["c9", null]'
        ": the feed sent rows without it? check the landing files of that day"
    )
    table_level = result(
        False,
        expectation_type="expect_table_row_count_to_be_between",
        column=None,
        unexpected_count=None,
        observed_value=12,
        bounds={"min_value": 400, "max_value": 10_000},
        note="the median of the 7 day(s) before is 2000",
    )
    assert table_level.describe("bronze.events") == (
        "row count 12 outside [400, 10000] (expect_table_row_count_to_be_between; the median "
        "of the 7 day(s) before is 2000): a partial or missing feed? check the landing files "
        "of that day"
    )
    quarantine = result(
        False,
        expectation_type="expect_table_row_count_to_be_between",
        column=None,
        unexpected_count=None,
        observed_value=40,
        bounds={"min_value": 0, "max_value": 19},
    )
    assert quarantine.describe("bronze.quarantine").startswith(
        "row count 40 outside [0, 19] (expect_table_row_count_to_be_between): too many rows "
        "broke the contract"
    )
    in_range = result(
        False,
        expectation_type="expect_column_values_to_be_between",
        column="amount",
        sample=[-5],
        bounds={"min_value": 0, "max_value": None, "strict_min": True},
    )
    assert in_range.describe() == (
        "expect_column_values_to_be_between(amount): 2 of 10 rows unexpected, e.g. [-5] "
        "(allowed: (0, inf]): values out of range: check the feed, or the bounds in "
        "params.yaml (dataset)"
    )
    assert result(False, error="the column is missing").describe() == (
        "expect_column_values_to_not_be_null(card_id): could not be evaluated: "
        "the column is missing"
    )


def test_only_a_critical_failure_fails_a_partition():
    warned = outcome(result(True), result(False, "warning", column="amount"))
    assert warned.success and warned.critical_failures == []
    assert [w.column for w in warned.warnings] == ["amount"]
    warned.raise_for_critical()  # a warning does not raise

    failed = outcome(result(False), result(False, "warning"), docs="/r/index.html")
    assert not failed.success and len(failed.critical_failures) == 1
    with pytest.raises(ValidationError) as err:
        failed.raise_for_critical()
    assert err.value.outcome is failed
    assert str(err.value) == (
        "bronze.events event_date=2026-01-03: expect_column_values_to_not_be_null(card_id): "
        "2 of 10 rows unexpected, e.g. []: the feed sent rows without it? check the landing "
        "files of that day\n"
        "  Data Docs: /r/index.html (run run-1)"
    )


def test_outcome_rows_follow_the_schema_with_a_utc_time():
    rows = outcome_rows(outcome(result(True), result(False, "warning", column="amount")))
    columns = OUTCOME_SCHEMA.names
    assert [list(r) for r in rows] == [columns, columns]
    assert pa.Table.from_pylist(rows, OUTCOME_SCHEMA).num_rows == 2
    assert rows[1] == {
        "table": "bronze.events",
        "partition": "event_date=2026-01-03",
        "suite": "bronze.events",
        "expectation_type": "expect_column_values_to_not_be_null",
        "column": "amount",
        "severity": "warning",
        "success": False,
        "element_count": 10,
        "unexpected_count": 2,
        "run_id": "run-1",
        "validated_at": dt.datetime(2026, 1, 3, 12, 30, tzinfo=dt.UTC),
    }


def test_report_summarises_each_table():
    report = ValidationReport("2026-01-03", [outcome(result(True), result(False, "warning"))])
    assert report.as_dict() == {
        "day": "2026-01-03",
        "tables": {
            "bronze.events": {
                "passed": True,
                "expectations": 2,
                "warnings": 1,
                "data_docs": None,
            }
        },
    }


def test_error_of_finds_the_message_at_the_top_or_under_a_metric():
    assert _error_of({"raised_exception": True, "exception_message": "boom"}) == "boom"
    nested = {
        "column_values.nonnull": {"raised_exception": False},
        "table.columns": {"raised_exception": True, "exception_message": "no column x"},
    }
    assert _error_of(nested) == "no column x"
    assert _error_of({"raised_exception": False, "m": {"raised_exception": False}}) is None


def test_run_name_is_a_safe_folder_name():
    name = _run_name("manual__2026-01-03T00:00:00+00:00", {"event_date": DAY})
    assert name == "event_date=2026-01-03__manual__2026-01-03T00_00_00_00_00"


def test_suite_path_is_the_table_name_as_json():
    assert suite_path("expectations", "bronze.events") == Path("expectations/bronze.events.json")


def test_the_features_suite_expects_only_the_columns_the_windows_make(tmp_path):
    """Without windows (a dataset without an entity) silver.features has no derived
    column: the suite must not expect one, or every day is blocked."""
    import yaml

    from regrow.settings import load_settings
    from regrow.validation.suites import build_suite
    from tests.conftest import REPO

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["features"] = {"windows": [], "sum_columns": [], "ratio_columns": []}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    settings = load_settings(tmp_path / "params.yaml")
    columns = {
        e.column for e in build_suite(settings.dataset, "silver.features", settings.features).expectations
        if getattr(e, "column", None)
    }  # fmt: skip
    assert "seconds_since_prior_event" not in columns and "prior_events_1h" not in columns
    windowed = load_settings(REPO / "params.yaml")
    columns = {
        e.column for e in build_suite(windowed.dataset, "silver.features", windowed.features).expectations
        if getattr(e, "column", None)
    }  # fmt: skip
    assert {"seconds_since_prior_event", "prior_events_1h"} <= columns
