"""Great Expectations on Spark: suites from the contract, severity, row-level isolation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from regrow.storage.session import ONE_TASK_ROWS, one_task_if_small
from regrow.validation import (
    OUTCOME_SCHEMA,
    SUITES,
    SuiteError,
    ValidationError,
    build_suite,
    load_suite,
    outcome_rows,
    quarantine_records,
    recent_row_counts,
    row_count_bounds,
    row_predicates,
    runtime_parameters,
    split_invalid_rows,
    suite_path,
    validate,
    write_suites,
)

DAY = dt.date(2026, 1, 3)
NOON = dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)
EVENTS = "bronze.events"
LABELS = "bronze.labels"
EVENT_DDL = (
    "transaction_id string, card_id string, event_time timestamp, amount double, "
    "distance_from_home_km double, merchant_risk double, merchant_category string, "
    "channel string, country string, card_present boolean, event_date date, "
    "_source_file string, _ingested_at timestamp, _run_id string"
)
LABEL_DDL = (
    "transaction_id string, card_id string, is_fraud int, label_time timestamp, "
    "label_date date, _source_file string, _ingested_at timestamp, _run_id string"
)


@pytest.fixture
def dataset(make_settings):
    # The suites under test are built from the contract alone: the rows below use a
    # channel ("web") and values the repo's allowed values and ranges do not know.
    return make_settings().dataset.model_copy(update={"allowed_values": {}, "value_ranges": {}})


@pytest.fixture
def reports(tmp_path: Path) -> str:
    return str(tmp_path / "reports")


def event(i: int, card: str | None = "c1", at: dt.datetime | None = None, amount=10.0, **kw):
    row = {
        "transaction_id": f"t{i}",
        "card_id": card,
        "event_time": at or dt.datetime(2026, 1, 3, 8, i % 60),
        "amount": amount,
        "distance_from_home_km": 1.5,
        "merchant_risk": 0.2,
        "merchant_category": "grocery",
        "channel": "web",
        "country": "FR",
        "card_present": False,
        "event_date": DAY,
        "_source_file": "events.csv",
        "_ingested_at": dt.datetime(2026, 1, 3, 23),
        "_run_id": "r1",
    }
    return {**row, **kw}


def label(i: int, value: int | None = 0, at: dt.datetime | None = None):
    return {
        "transaction_id": f"t{i}",
        "card_id": "c1",
        "is_fraud": value,
        "label_time": at or dt.datetime(2026, 1, 3, 9),
        "label_date": DAY,
        "_source_file": "labels.csv",
        "_ingested_at": dt.datetime(2026, 1, 3, 23),
        "_run_id": "r1",
    }


def frame(spark, ddl: str, rows: list[dict]):
    names = [c.split()[0] for c in ddl.split(", ")]
    return spark.createDataFrame([tuple(r[n] for n in names) for r in rows], ddl)


def run(spark, dataset, reports, rows, table=EVENTS, **kw):
    ddl = EVENT_DDL if table == EVENTS else LABEL_DDL
    column = "event_date" if table == EVENTS else "label_date"
    return validate(
        frame(spark, ddl, rows),
        build_suite(dataset, table),
        table,
        {column: DAY},
        "run-1",
        reports,
        now=kw.pop("now", NOON),
        **kw,
    )


def test_clean_partition_passes_and_builds_data_docs(spark, dataset, reports):
    outcome = run(spark, dataset, reports, [event(i) for i in range(3)])

    assert outcome.success and outcome.critical_failures == [] and outcome.warnings == []
    assert len(outcome.results) == len(build_suite(dataset, EVENTS).expectations)
    assert outcome.data_docs_path.startswith(f"{reports}/data_docs/validations/")
    assert Path(outcome.data_docs_path).is_file()
    index = Path(reports, "data_docs", "index.html")
    assert index.is_file() and "bronze" in index.read_text()


def test_null_key_is_a_critical_failure_naming_table_partition_column_and_sample(
    spark, dataset, reports
):
    rows = [event(0), event(1, card=None), event(2)]
    with pytest.raises(ValidationError) as err:
        run(spark, dataset, reports, rows)

    message = str(err.value)
    assert "bronze.events event_date=2026-01-03" in message
    assert (
        "expect_column_values_to_not_be_null(card_id): 1 of 3 rows unexpected, e.g. [null]"
        in message
    )
    [failure] = err.value.outcome.critical_failures
    assert (failure.column, failure.unexpected_count, failure.element_count) == ("card_id", 1, 3)


def test_a_small_partition_is_validated_as_one_task_in_fewer_jobs_with_the_same_outcome(
    spark, dataset, reports
):
    """What the gate does to a small day's partition (``one_task_if_small``): one Spark
    partition, so the suite's queries (aggregates, the uniqueness window) plan no exchange
    and adaptive execution runs no job ahead of each. The outcome is the same, a duplicate
    id and a null key found as in four partitions."""
    rows = [event(i) for i in range(40)] + [event(3), event(41, card=None)]
    spread = frame(spark, EVENT_DDL, rows).repartition(4)
    small = one_task_if_small(spread, len(rows))
    assert small.rdd.getNumPartitions() == 1
    assert one_task_if_small(spread, ONE_TASK_ROWS + 1).rdd.getNumPartitions() == 4
    assert one_task_if_small(spread, None).rdd.getNumPartitions() == 4  # rows unknown

    context = spark.sparkContext
    jobs, found = {}, {}
    for name, df in (("spread", spread), ("one task", small)):
        context.setJobGroup(f"validated {name}", name)
        try:
            outcome = validate(
                df, build_suite(dataset, EVENTS), EVENTS, {"event_date": DAY}, "run-1", reports,
                now=NOON, raise_on_critical=False, data_docs=False,
            )  # fmt: skip
        finally:  # the worker's session runs other tests' jobs next
            for key in ("spark.jobGroup.id", "spark.job.description"):
                context.setLocalProperty(key, None)
        jobs[name] = len(context.statusTracker().getJobIdsForGroup(f"validated {name}"))
        found[name] = [
            (
                r.expectation_type,
                r.column,
                r.success,
                r.unexpected_count,
                sorted(map(str, r.sample)),
            )
            for r in outcome.results
        ]
    assert found["one task"] == found["spread"]
    failed = {(t, c, n) for t, c, ok, n, _ in found["one task"] if not ok}
    assert failed == {
        ("expect_column_values_to_be_unique", "transaction_id", 2),
        ("expect_column_values_to_not_be_null", "card_id", 1),
    }
    assert 0 < jobs["one task"] < jobs["spread"], jobs


def test_partitions_validated_one_after_another_each_get_their_own_result(spark, dataset, reports):
    """A range validates a table's partitions with one context made once (its setup cost
    a fifth of a small partition's validation): each run still judges its own rows and
    parameters, keeps its own result on disk, and an edited suite is the one applied."""
    import great_expectations as gx

    from regrow.validation import runner
    from regrow.validation.suites import _suite_json

    suite = build_suite(dataset, EVENTS)
    runner._prepared.cache_clear()

    def check(rows, run_id, day_suite=suite):
        partition = {"event_date": DAY}
        return validate(frame(spark, EVENT_DDL, rows), day_suite, EVENTS, partition, run_id,
                        reports, now=NOON, raise_on_critical=False)  # fmt: skip

    clean = check([event(i) for i in range(3)], "run-a")
    broken = check([event(0), event(1, card=None)], "run-b")
    clean_again = check([event(i) for i in range(4)], "run-c")

    assert runner._prepared.cache_info().misses == 1  # made once, used three times
    assert clean.success and clean_again.success
    [failure] = broken.critical_failures
    assert (failure.column, failure.unexpected_count, failure.sample) == (
        "card_id", 1, [None],
    )  # fmt: skip
    counts = {
        o.run_id: next(
            r.observed_value
            for r in o.results
            if r.expectation_type == "expect_table_row_count_to_be_between"
        )
        for o in (clean, broken, clean_again)
    }  # fmt: skip
    assert counts == {"run-a": 3, "run-b": 2, "run-c": 4}
    stored = "\n".join(str(p) for p in Path(reports, "gx", "validations").rglob("*.json"))
    assert all(f"__{run}" in stored for run in ("run-a", "run-b", "run-c"))

    # The suite edited: card_id's expectations removed, so its nulls no longer fail.
    raw = json.loads(_suite_json(suite))
    raw["expectations"] = [e for e in raw["expectations"] if e["kwargs"].get("column") != "card_id"]
    edited = gx.ExpectationSuite(**raw)
    without = check([event(0), event(1, card=None)], "run-d", edited)
    assert without.success and len(without.results) == len(raw["expectations"])
    assert len(raw["expectations"]) < len(suite.expectations)


def test_the_offending_values_are_fetched_only_when_asked_for(spark, dataset, reports):
    """The first pass asks for no offending value: GX's Spark fetcher is not called (it
    would plan six DataFrames for an empty list). Asked for some, it is: a failing
    partition's outcome still names them (the test above)."""
    from great_expectations.execution_engine import SparkDFExecutionEngine
    from great_expectations.expectations.registry import get_metric_provider

    from regrow.validation.runner import COUNTS_ONLY, RESULT_FORMAT

    run(spark, dataset, reports, [event(i) for i in range(3)])  # wraps GX's fetchers
    engine = SparkDFExecutionEngine.__new__(SparkDFExecutionEngine)  # no Spark behind it
    _, fetch = get_metric_provider("column_values.nonnull.unexpected_values", engine)

    def ask(result_format):
        return fetch(cls=None, execution_engine=None, metric_domain_kwargs={},
                     metric_value_kwargs={"result_format": result_format}, metrics={})  # fmt: skip

    assert ask(COUNTS_ONLY) == []
    with pytest.raises(KeyError, match="unexpected_condition"):  # GX's own fetcher ran
        ask(RESULT_FORMAT)
    with pytest.raises(KeyError, match="unexpected_condition"):
        ask({**COUNTS_ONLY, "result_format": "COMPLETE"})


def test_a_validated_partition_is_not_left_in_sparks_cache(spark, dataset, reports):
    """GX's Spark datasource caches every batch's dataframe by default and never releases
    it: a range would keep a year of validated partitions in Spark's cache. regrow's does
    not cache (persist=False), a failing partition run twice (for its offending values)
    neither; one its caller cached is left cached."""
    from pyspark import StorageLevel

    suite = build_suite(dataset, EVENTS)
    for rows in ([event(i) for i in range(3)], [event(0), event(1, card=None)]):
        df = frame(spark, EVENT_DDL, rows)
        validate(df, suite, EVENTS, {"event_date": DAY}, "r", reports, now=NOON,
                 raise_on_critical=False)  # fmt: skip
        assert df.storageLevel == StorageLevel.NONE, df.storageLevel
    # A dataframe its caller cached stays cached.
    mine = frame(spark, EVENT_DDL, [event(i) for i in range(2)]).persist(StorageLevel.DISK_ONLY)
    validate(mine, suite, EVENTS, {"event_date": DAY}, "r", reports, now=NOON)
    assert mine.storageLevel == StorageLevel.DISK_ONLY
    mine.unpersist()


def test_gx_still_checks_the_freshness_of_checkpoints_regrow_did_not_make(spark, dataset, reports):
    """regrow's own checkpoints skip GX's per-run freshness check after the first; one made
    elsewhere in the process still has its suite compared with the saved copy."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.exceptions import CheckpointRunWithoutValidationDefinitionError

    run(spark, dataset, reports, [event(i) for i in range(3)])  # regrow's checks wrapped
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("theirs")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="theirs"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="theirs", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name="theirs", validation_definitions=[definition])
    )
    frame_ = pd.DataFrame({"x": [1, 2]})
    assert checkpoint.run(batch_parameters={"dataframe": frame_}).success
    # Changed after it was saved: GX refuses to run it until it is saved again.
    checkpoint.validation_definitions[0].suite.expectations.append(
        gx.expectations.ExpectColumnToExist(column="x")
    )
    assert not checkpoint.is_fresh().success
    with pytest.raises(Exception, match="(?i)fresh|changed|save") as err:
        checkpoint.run(batch_parameters={"dataframe": frame_})
    assert not isinstance(err.value, CheckpointRunWithoutValidationDefinitionError)


def test_a_schema_change_and_a_duplicate_id_fail_naming_columns_and_values(spark, dataset, reports):
    from pyspark.sql import functions as F

    df = (
        frame(spark, EVENT_DDL, [event(0), event(1), event(1)])
        .drop("merchant_risk")
        .withColumn("amount", F.col("amount").cast("string"))
    )
    with pytest.raises(ValidationError) as err:
        validate(
            df, build_suite(dataset, EVENTS), EVENTS, {"event_date": DAY}, "r", reports, now=NOON
        )

    failed = {(f.expectation_type, f.column) for f in err.value.outcome.critical_failures}
    assert failed == {
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_be_in_type_list", "merchant_risk"),
        ("expect_column_values_to_be_in_type_list", "amount"),
        ("expect_column_values_to_be_unique", "transaction_id"),
    }
    message = str(err.value)
    assert 'be_in_type_list(amount): observed "StringType"' in message
    assert 'be_unique(transaction_id): 2 of 3 rows unexpected, e.g. ["t1", "t1"]' in message
    assert 'columns_to_match_set: observed {"missing": ["merchant_risk"]}' in message
    assert (
        "be_in_type_list(merchant_risk): could not be evaluated: the column is missing" in message
    )


def test_label_outside_domain_is_split_out_with_a_reason_and_good_rows_pass(
    spark, dataset, reports
):
    suite = build_suite(dataset, LABELS)
    df = frame(spark, LABEL_DDL, [label(0), label(1, value=2), label(2, value=1), label(3, None)])
    with pytest.raises(ValidationError, match=r"be_in_set\(is_fraud\): 1 of 4 .*\[2\]"):
        validate(df, suite, LABELS, {"label_date": DAY}, "r", reports, now=NOON)

    good, bad = split_invalid_rows(df, suite, runtime_parameters(DAY, now=NOON))

    reasons = {r["transaction_id"]: r["reason"] for r in bad.collect()}
    assert reasons == {
        "t1": "expect_column_values_to_be_in_set(is_fraud): 2 not in [0, 1]",
        "t3": "expect_column_values_to_not_be_null(is_fraud): null",
    }
    assert sorted(r["transaction_id"] for r in good.collect()) == ["t0", "t2"]
    assert bad.columns == [*df.columns, "reason"] and good.columns == df.columns
    quarantined = quarantine_records(bad, "labels", DAY, "r").orderBy("reason").collect()
    assert quarantined[0].asDict().keys() == {
        "source_kind",
        "source_file",
        "reason",
        "record",
        "_ingested_at",
        "_run_id",
        "ingest_date",
    }
    first = quarantined[0]
    assert (first.source_kind, first.source_file, first.ingest_date) == (
        "labels",
        "labels.csv",
        DAY,
    )
    assert json.loads(first.record)["is_fraud"] == 2
    outcome = validate(good, suite, LABELS, {"label_date": DAY}, "r", reports, now=NOON)
    assert outcome.success and outcome.warnings == []


def test_timestamps_from_another_day_or_the_future_fail_and_are_pinned_to_rows(
    spark, dataset, reports
):
    rows = [
        event(0),
        event(1, at=dt.datetime(2026, 1, 2, 23, 59)),  # the day before
        event(2, at=dt.datetime(2026, 1, 3, 13, 0)),  # after "now" (noon)
        event(3, at=dt.datetime(2026, 1, 4, 0, 0)),  # the next day (end is exclusive)
    ]
    with pytest.raises(ValidationError) as err:
        run(spark, dataset, reports, rows)
    [failure] = err.value.outcome.critical_failures
    assert (failure.expectation_type, failure.column) == (
        "expect_column_values_to_be_between",
        "event_time",
    )
    assert failure.unexpected_count == 3

    suite = build_suite(dataset, EVENTS)
    _, bad = split_invalid_rows(
        frame(spark, EVENT_DDL, rows), suite, runtime_parameters(DAY, now=NOON)
    )
    reasons = {r["transaction_id"]: r["reason"] for r in bad.collect()}
    assert reasons["t1"] == (
        "expect_column_values_to_be_between(event_time): 2026-01-02 23:59:00 "
        "not in [2026-01-03 00:00:00, 2026-01-03 12:00:00)"
    )
    assert sorted(reasons) == ["t1", "t2", "t3"]


def test_a_late_label_from_an_earlier_day_passes_but_a_future_one_fails(spark, dataset, reports):
    rows = [label(0, at=dt.datetime(2025, 12, 20)), label(1, at=dt.datetime(2026, 1, 3, 18))]
    with pytest.raises(ValidationError) as err:
        run(spark, dataset, reports, rows, table=LABELS)
    [failure] = err.value.outcome.critical_failures
    assert (failure.column, failure.unexpected_count) == ("label_time", 1)
    _, bad = split_invalid_rows(
        frame(spark, LABEL_DDL, rows),
        build_suite(dataset, LABELS),
        runtime_parameters(DAY, now=NOON),
    )
    assert [r["reason"] for r in bad.collect()] == [
        "expect_column_values_to_be_between(label_time): 2026-01-03 18:00:00 "
        "not in (-inf, 2026-01-03 12:00:00)"
    ]


def test_a_failing_warning_is_recorded_but_does_not_raise(spark, dataset, reports):
    rows = [event(0, amount=None), event(1, amount=None), event(2)]
    outcome = run(spark, dataset, reports, rows)

    assert outcome.success
    [warning] = outcome.warnings
    assert (warning.expectation_type, warning.column, warning.unexpected_count) == (
        "expect_column_values_to_not_be_null",
        "amount",
        2,
    )
    rows_out = outcome_rows(outcome)
    [row] = [r for r in rows_out if not r["success"]]
    assert row == {
        "table": EVENTS,
        "partition": "event_date=2026-01-03",
        "suite": EVENTS,
        "expectation_type": "expect_column_values_to_not_be_null",
        "column": "amount",
        "severity": "warning",
        "success": False,
        "element_count": 3,
        "unexpected_count": 2,
        "run_id": "run-1",
        "validated_at": NOON.astimezone(dt.UTC),
    }
    assert pa.Table.from_pylist(rows_out, OUTCOME_SCHEMA).num_rows == len(outcome.results)


def test_a_row_count_spike_against_recent_days_is_a_warning(spark, dataset, reports):
    assert row_count_bounds([3, 3, 4]) == (1, 15)
    assert row_count_bounds([]) == (1, None)

    outcome = run(spark, dataset, reports, [event(i) for i in range(30)], recent_counts=[3, 3, 3])

    assert outcome.success
    [warning] = outcome.warnings
    assert warning.expectation_type == "expect_table_row_count_to_be_between"
    assert warning.observed_value == 30


def test_recent_row_counts_come_from_the_delta_log(tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    from regrow.settings import LakehouseSettings
    from regrow.storage.lakehouse import Lakehouse

    for day, n in [("2025-12-20", 50), ("2026-01-01", 5), ("2026-01-02", 7), ("2026-01-02", 1)]:
        rows = pa.table({"x": list(range(n)), "event_date": [dt.date.fromisoformat(day)] * n})
        write_deltalake(
            str(tmp_path / "bronze" / "events"), rows, mode="append", partition_by=["event_date"]
        )
    lakehouse = Lakehouse(LakehouseSettings(root=str(tmp_path)), str(tmp_path))

    assert recent_row_counts(lakehouse, EVENTS, DAY, days=7) == [5, 8]
    assert recent_row_counts(lakehouse, LABELS, DAY) == []


def test_allowed_categories_flag_new_values_as_a_warning(spark, dataset, reports):
    dataset = dataset.model_copy(update={"allowed_values": {"channel": ["web", "pos"]}})
    suite = build_suite(dataset, EVENTS)
    df = frame(spark, EVENT_DDL, [event(0), event(1, channel="atm")])
    outcome = validate(df, suite, EVENTS, {"event_date": DAY}, "r", reports, now=NOON)

    [warning] = outcome.warnings
    assert (warning.column, warning.sample) == ("channel", ["atm"])
    rejecting = dataset.model_copy(update={"unknown_categories": "reject"})
    outcome = validate(df, build_suite(rejecting, EVENTS), EVENTS, {"event_date": DAY}, "r",
                       reports, now=NOON, raise_on_critical=False)  # fmt: skip
    assert [(f.column, f.sample) for f in outcome.critical_failures] == [("channel", ["atm"])]


def test_row_level_needs_a_predicate_and_no_tolerance(spark, dataset):
    import great_expectations as gx

    meta = {"severity": "critical", "row_level": True}
    unsupported = gx.expectations.ExpectColumnValuesToBeUnique(column="transaction_id", meta=meta)
    tolerant = gx.expectations.ExpectColumnValuesToNotBeNull(column="amount", mostly=0.9, meta=meta)
    with pytest.raises(SuiteError, match=r"be_unique\(transaction_id\) is row_level but has no"):
        row_predicates(gx.ExpectationSuite(name="s", expectations=[unsupported]))
    with pytest.raises(SuiteError, match=r"not_be_null\(amount\) is row_level but allows"):
        row_predicates(gx.ExpectationSuite(name="s", expectations=[tolerant]))
    with pytest.raises(SuiteError, match="no value for suite parameter 'day_start'"):
        row_predicates(build_suite(dataset, EVENTS), {})


def test_every_expectation_carries_severity_and_row_level(dataset):
    for table in (EVENTS, LABELS):
        for expectation in build_suite(dataset, table).expectations:
            meta = expectation.configuration.meta
            assert meta["severity"] in ("critical", "warning")
            assert isinstance(meta["row_level"], bool)


def test_suite_json_round_trip(dataset, tmp_path):
    dataset = dataset.model_copy(update={"allowed_values": {"country": ["FR", "DE"]}})
    written = write_suites(dataset, tmp_path / "expectations")
    assert written == [suite_path(tmp_path / "expectations", t) for t in SUITES]

    for table, path in zip(SUITES, written, strict=True):
        raw = json.loads(path.read_text())
        assert raw["name"] == table and "id" not in raw
        loaded = load_suite(path)
        expected = build_suite(dataset, table)
        assert [e.configuration.to_json_dict() for e in loaded.expectations] == [
            e.configuration.to_json_dict() for e in expected.expectations
        ]


def test_load_suite_refuses_an_expectation_without_severity(dataset, tmp_path):
    path = write_suites(dataset, tmp_path)[0]
    raw = json.loads(path.read_text())
    del raw["expectations"][3]["meta"]["severity"]
    path.write_text(json.dumps(raw))
    with pytest.raises(SuiteError, match=r"expectation 3 .*meta.severity"):
        load_suite(path)
    path.write_text("{not json")
    with pytest.raises(SuiteError, match="not a readable suite file"):
        load_suite(path)
