"""A day's validation gate end to end: ingest, then every table's suite, results in
gold.validation, Data Docs, and a blocked day with a readable reason."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from regrow.catalog import BRONZE_TABLES, EVENTS, TABLES, VALIDATION
from regrow.data import simulate
from regrow.data.ingest import ingest_day
from regrow.settings import load_settings
from regrow.storage import lakehouse as lakehouse_module
from regrow.storage.lakehouse import Lakehouse
from regrow.validation import (
    SUITES,
    SuiteError,
    ValidationError,
    build_suite,
    load_suite,
    suite_for,
    suite_path,
    validate_day,
)
from tests.conftest import REPO, context_of, lakehouse_of

DAY0 = dt.date(2026, 1, 1)


def land_and_ingest(spark, settings, days: int) -> Lakehouse:
    simulate.write_landing(
        settings.dataset,
        settings.simulator,
        settings.landing,
        settings.resolve(settings.landing.path),
        days,
    )
    lh = lakehouse_of(settings)
    for i in range(days):
        ingest_day(context_of(settings, spark, lakehouse=lh), DAY0 + dt.timedelta(days=i))
    return lh


def test_committed_suites_match_the_contract():
    """expectations/*.json are generated from params.yaml: regenerate after a contract change."""
    settings = load_settings(REPO / "params.yaml")
    for table in SUITES:
        committed = load_suite(suite_path(REPO / "expectations", table))
        generated = build_suite(settings.dataset, table, settings.features)
        assert [e.configuration.to_json_dict() for e in committed.expectations] == [
            e.configuration.to_json_dict() for e in generated.expectations
        ], f"expectations/{table}.json is stale: run `regrow expectations generate`"


def test_a_suite_left_stale_by_a_features_change_stops_with_the_columns(make_settings):
    settings = make_settings(features={"windows": ["1h", "30d"]})

    with pytest.raises(SuiteError) as err:
        suite_for(settings, "silver.features")
    message = str(err.value)
    assert "silver.features.json" in message and "regrow expectations generate" in message
    assert "'prior_events_30d'" in message and "'prior_events_24h'" in message
    assert suite_for(settings, "bronze.events") is not None  # untouched by that change


def test_clean_days_pass_and_are_recorded(spark, make_settings):
    settings = make_settings(simulator={"days": 2, "events_per_day": 200, "n_entities": 60})
    lh = land_and_ingest(spark, settings, 2)

    outcomes = validate_day(
        context_of(settings, spark, "run-1", lh), DAY0 + dt.timedelta(days=1)
    ).outcomes

    assert [o.table for o in outcomes] == ["bronze.events", "bronze.labels", "bronze.quarantine"]
    assert all(not o.critical_failures for o in outcomes)
    rows = lh.sql(f'SELECT "table", success, severity, run_id FROM {VALIDATION}').to_pylist()
    assert {r["table"] for r in rows} == {"bronze.events", "bronze.labels", "bronze.quarantine"}
    assert all(r["run_id"] == "run-1" for r in rows)
    assert len(rows) == sum(len(o.results) for o in outcomes)
    assert Path(outcomes[0].data_docs_path).is_file()


def test_broken_feed_day_is_blocked_with_a_readable_reason(spark, make_settings):
    settings = make_settings(
        simulator={
            "days": 3,
            "events_per_day": 300,
            "scenario": "broken_feed",
            "drift_onset_day": 2,
        }
    )
    lh = land_and_ingest(spark, settings, 3)
    validate_day(
        context_of(settings, spark, "ok", lh), DAY0 + dt.timedelta(days=1)
    )  # before onset: passes

    with pytest.raises(ValidationError) as blocked:
        validate_day(context_of(settings, spark, "broken", lh), DAY0 + dt.timedelta(days=2))

    message = str(blocked.value)
    assert message.startswith("2026-01-03 is blocked:")
    assert "bronze.quarantine ingest_date=2026-01-03" in message
    assert "expect_table_row_count_to_be_between" in message
    failed = lh.sql(
        f'SELECT "table", expectation_type FROM {VALIDATION} '
        "WHERE day = DATE '2026-01-03' AND NOT success AND severity = 'critical'"
    ).to_pylist()
    assert {
        "table": "bronze.quarantine",
        "expectation_type": "expect_table_row_count_to_be_between",
    } in failed


def test_a_small_days_suites_run_on_its_rows_in_memory_with_the_outcome_of_its_files(
    spark, make_settings, monkeypatch
):
    """The gate reads a small partition once into memory (``Lakehouse.read_to_query``), so
    that its suite's queries skip the files; each table's rows, schema and every
    expectation's outcome (failures and their samples included) are those of the files'
    own scan. A partition over ``LOCAL_READ_BYTES`` is scanned as ever."""
    settings = make_settings(
        simulator={"days": 3, "events_per_day": 300, "scenario": "broken_feed",
                   "drift_onset_day": 2},
    )  # fmt: skip
    lh = land_and_ingest(spark, settings, 3)
    day = DAY0 + dt.timedelta(days=2)  # broken: quarantined rows, a critical failure
    for table in BRONZE_TABLES:
        partition = {TABLES[table].date_column: day}
        in_memory = lh.read_to_query(spark, table, partition)
        scanned = lh.read(spark, table, partitions=partition)
        assert in_memory.inputFiles() == [] and scanned.inputFiles(), table
        assert in_memory.schema == scanned.schema, table
        assert scanned.count() > 0, table
        assert in_memory.exceptAll(scanned).count() == scanned.exceptAll(in_memory).count() == 0

    # A spy on the real method (no stand-in): which frames the gate validated.
    read_to_query, frames = Lakehouse.read_to_query, []

    def spy(self, *args, **kwargs):
        frames.append(frame := read_to_query(self, *args, **kwargs))
        return frame

    monkeypatch.setattr(Lakehouse, "read_to_query", spy)

    def outcomes() -> tuple[list, list]:
        frames.clear()
        with pytest.raises(ValidationError) as blocked:
            validate_day(context_of(settings, spark, "run", lh), day, data_docs=False)
        assert len(frames) == len(BRONZE_TABLES)
        failed = [replace(r, sample=sorted(map(str, r.sample)))
                  for r in blocked.value.outcome.results]  # fmt: skip
        recorded = lh.sql(
            f'SELECT "table", expectation_type, "column", success, element_count, '
            f"unexpected_count FROM {VALIDATION} WHERE day = DATE '{day}' ORDER BY 1, 2, 3"
        ).to_pylist()
        return failed, recorded

    from_memory = outcomes()
    assert all(frame.inputFiles() == [] for frame in frames)
    monkeypatch.setattr(lakehouse_module, "LOCAL_READ_BYTES", 0)
    assert outcomes() == from_memory
    assert all(frame.inputFiles() for frame in frames)
    assert any(not r.success for r in from_memory[0])
    assert len(from_memory[1]) > 30  # every expectation of the three suites


def test_new_category_and_volume_spike_are_warnings_not_blocks(spark, make_settings, tmp_path):
    settings = make_settings(
        simulator={
            "days": 3,
            "events_per_day": 100,
            "n_entities": 60,
            "scenario": "new_category",
            "drift_onset_day": 2,
            "drift_strength": 3.0,
        }
    )
    root = Path(settings.resolve(settings.landing.path))
    simulate.write_landing(settings.dataset, settings.simulator, settings.landing, str(root), 3)
    # Day 3 lands ten times the usual volume (the same generator with 1000 events a day).
    spike = settings.simulator.model_copy(update={"events_per_day": 1000})
    simulate.write_landing(settings.dataset, spike, settings.landing, str(tmp_path / "spike"), 3)
    day3 = (DAY0 + dt.timedelta(days=2)).isoformat()
    shutil.rmtree(root / "events" / day3)
    shutil.copytree(tmp_path / "spike" / "events" / day3, root / "events" / day3)
    lh = lakehouse_of(settings)
    for i in range(3):
        ingest_day(context_of(settings, spark, lakehouse=lh), DAY0 + dt.timedelta(days=i))

    outcomes = validate_day(
        context_of(settings, spark, "spike", lh), DAY0 + dt.timedelta(days=2)
    ).outcomes

    events = outcomes[0]
    warned = {(w.expectation_type, w.column) for w in events.warnings}
    assert ("expect_table_row_count_to_be_between", None) in warned
    assert ("expect_column_values_to_be_in_set", "merchant_category") in warned
    assert not events.critical_failures
    category = next(w for w in events.warnings if w.column == "merchant_category")
    assert simulate.NEW_CATEGORY in json.dumps(category.sample)


def test_an_empty_feed_blocks_the_day(spark, make_settings):
    settings = make_settings()
    folder = Path(settings.resolve(settings.landing.path), "events", DAY0.isoformat())
    folder.mkdir(parents=True)
    (folder / "empty.csv").write_bytes(b"")
    lh = lakehouse_of(settings)
    ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)

    with pytest.raises(
        ValidationError,
        match=r"(?s)bronze.events event_date=2026-01-01.*expect_table_row_count_to_be_between",
    ):
        validate_day(context_of(settings, spark, "empty", lh), DAY0, tables=[EVENTS])
