"""silver.features on real Spark and real Delta tables: hand-computed window aggregates over
strictly earlier events, a day's values independent of how many days are computed with it,
and a missing bronze.events day named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from regrow.catalog import EVENT_DATE, EVENTS, FEATURES, feature_columns
from regrow.cli import app
from regrow.data import landing, simulate
from regrow.data.features import build_features, compute_features, features_of_days
from regrow.settings import load_settings
from regrow.storage.lakehouse import MissingPartitionError
from tests.bronze_rows import at, event, events_frame, write_events
from tests.conftest import context_of, lakehouse_of, write_params

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
D4, D5, D6 = dt.date(2026, 1, 4), dt.date(2026, 1, 5), dt.date(2026, 1, 6)
WINDOWS = {"windows": ["1h", "24h"], "sum_columns": ["amount"], "ratio_columns": ["amount"]}
DERIVED = [
    "prior_events_1h",
    "amount_prior_sum_1h",
    "prior_events_24h",
    "amount_prior_sum_24h",
    "seconds_since_prior_event",
    "amount_to_prior_mean_24h",
]


def features_of(lakehouse, day: dt.date) -> dict[str, tuple]:
    """The derived features of ``day``'s rows of silver.features, by event id."""
    rows = lakehouse.sql(
        f"SELECT transaction_id, {', '.join(DERIVED)} FROM silver.features "
        f"WHERE event_date = DATE '{day}'"
    ).to_pylist()
    return {r["transaction_id"]: tuple(r[c] for c in DERIVED) for r in rows}


def test_window_features_count_strictly_earlier_events_of_the_entity(spark, make_settings):
    settings = make_settings(features=WINDOWS)
    lh = lakehouse_of(settings)
    write_events(
        spark,
        lh,
        settings.dataset,
        [
            event("a1", "c1", at(D1, 12), 10.0),
            event("a2", "c1", at(D1, 23, 30), 30.0),
            event("a3", "c1", at(D2, 0), 20.0),
            event("a4", "c1", at(D2, 0, 45), 40.0),
            event("a5", "c1", at(D2, 0, 45), 60.0),  # the same instant as a4
            event("a6", "c1", at(D2, 12), 5.0),  # a1 is exactly 24h earlier
            event("a7", "c1", at(D2, 13), 7.0),  # a6 is exactly 1h earlier; a1 is 25h
            event("b1", "c2", at(D2, 0, 15), 100.0),  # another card: none of c1's history
        ],
    )

    report = build_features(context_of(settings, spark, "run-1", lh), D2)

    assert (report.rows, report.days_read) == (6, [str(D1), str(D2)])
    #                count_1h sum_1h count_24h sum_24h seconds_since ratio_24h
    assert features_of(lh, D2) == {
        "a3": (1, 30.0, 2, 40.0, 1800.0, 20 / 20),
        "a4": (1, 20.0, 3, 60.0, 2700.0, 40 / 20),
        "a5": (1, 20.0, 3, 60.0, 2700.0, 60 / 20),
        "a6": (0, 0.0, 5, 160.0, 40500.0, 5 / 32),
        "a7": (1, 5.0, 5, 155.0, 3600.0, 7 / 31),
        "b1": (0, 0.0, 0, 0.0, None, None),
    }
    row = lh.sql("SELECT * FROM silver.features WHERE transaction_id = 'a4'").to_pylist()[0]
    assert row["amount"] == 40.0 and row["merchant_category"] == "grocery"
    assert (row["_source_version"], row["_run_id"]) == (lh.table_version(EVENTS), "run-1")
    assert lh.partition_rows(FEATURES) == {str(D2): 6}


def test_a_day_alone_equals_the_same_day_of_a_30_day_backfill(spark, tmp_path):
    simulator = {"days": 30, "events_per_day": 60, "n_entities": 20}
    (tmp_path / "backfill").mkdir()
    (tmp_path / "alone").mkdir()
    params = write_params(tmp_path / "backfill", simulator=simulator)
    backfill = load_settings(params)
    alone = load_settings(write_params(tmp_path / "alone", simulator=simulator))
    dataset, cfg = backfill.dataset, backfill.features
    simulated = pd.concat(
        [simulate.simulate_day(dataset, backfill.simulator, i) for i in range(30)],
        ignore_index=True,
    )
    ts = dataset.event_timestamp
    rows = [{**r, ts: r[ts].to_pydatetime()} for r in simulated.to_dict("records")]
    events = events_frame(spark, dataset, rows)
    day = dt.date(2026, 1, 20)
    lookback = [day - dt.timedelta(days=n) for n in range(cfg.lookback_days(), -1, -1)]
    full, lone = lakehouse_of(backfill), lakehouse_of(alone)
    full.write(events, EVENTS, "append", partition_by=[EVENT_DATE])
    only_lookback = events.where(events[EVENT_DATE].isin(lookback))
    lone.write(only_lookback, EVENTS, "append", partition_by=[EVENT_DATE])

    result = CliRunner().invoke(app, ["features", "--all", "--params", str(params)])
    report = build_features(context_of(alone, spark, "alone", lone), day)

    assert result.exit_code == 0, result.output
    assert len(full.partition_rows(FEATURES)) == 30
    assert report.days_read == [str(d) for d in lookback]
    assert len(lone.partition_rows(EVENTS)) == 8  # 7d windows: the day and 7 before it
    columns = ["transaction_id", *feature_columns(dataset, cfg)]

    def rows(lakehouse) -> list[tuple]:
        table = lakehouse.sql(
            f"SELECT {', '.join(columns)} FROM silver.features WHERE event_date = DATE '{day}' "
            "ORDER BY transaction_id"
        )
        return [tuple(r.values()) for r in table.to_pylist()]

    def computed(history) -> list[tuple]:
        out = compute_features(history, dataset, cfg, day).select(*columns)
        return sorted(tuple(r) for r in out.collect())

    assert len(rows(full)) == 60
    assert rows(lone) == rows(full)
    assert computed(events) == rows(full)  # all 30 days of history: more is harmless
    # The 7th day back matters: the comparison above would catch a lookback a day short.
    assert computed(events.where(events[EVENT_DATE].isin(lookback[1:]))) != rows(full)


def test_a_gap_in_the_lookback_names_the_missing_bronze_partition(spark, make_settings):
    settings = make_settings(features=WINDOWS)
    lh = lakehouse_of(settings)
    write_events(
        spark,
        lh,
        settings.dataset,
        [event("a1", "c1", at(D1, 12)), event("a3", "c1", at(D3, 12))],  # no event of D2
    )

    with pytest.raises(
        MissingPartitionError, match="bronze.events has no partition event_date=2026-01-02 "
    ):
        build_features(context_of(settings, spark, "run-1", lh), D3)
    with pytest.raises(
        MissingPartitionError, match="event_date=2026-01-04 .*reads 2026-01-03..2026-01-04"
    ):
        build_features(context_of(settings, spark, "run-1", lh), dt.date(2026, 1, 4))
    # The first day of the data has no earlier day to read: not an error.
    assert build_features(context_of(settings, spark, "run-1", lh), D1).days_read == [str(D1)]
    assert not lh.partition_rows(FEATURES).get(str(D3))


def test_a_landed_day_not_yet_ingested_is_not_taken_for_the_start_of_the_data(spark, make_settings):
    """Two days backfilled at once: day 2 must not be built before day 1, which landed, is
    in bronze (it would silently miss day 1's history)."""
    settings = make_settings(features=WINDOWS)
    lh = lakehouse_of(settings)
    write_events(spark, lh, settings.dataset, [event("b2", "c1", at(D2, 12))])
    landed = Path(landing.day_dir(settings.resolve(settings.landing.path), "events", D1))
    landed.mkdir(parents=True)
    (landed / "part-00000.csv").write_text("transaction_id\n", encoding="utf-8")

    with pytest.raises(MissingPartitionError, match="no partition event_date=2026-01-01 "):
        build_features(context_of(settings, spark, "run-1", lh), D2)


def test_days_built_in_one_pass_equal_each_day_built_alone(spark, make_settings, caplog):
    """features_of_days (a range: the CLI, a job's --to) computes its days in one pass
    and writes each day's partition; every day equals the day built alone, and a day
    whose windows miss a partition fails by itself, naming it."""
    settings = make_settings(features=WINDOWS)
    lh = lakehouse_of(settings)
    write_events(
        spark,
        lh,
        settings.dataset,
        [
            event("a1", "c1", at(D1, 23, 45)),
            event("a2", "c1", at(D2, 0, 30), 30.0),  # sees a1 in its 1h and 24h windows
            event("b2", "c2", at(D2, 12)),
            event("a3", "c1", at(D3, 0, 10), 50.0),
            event("a5", "c1", at(D5, 9)),  # no event of D4: D5's windows miss a day
            event("a6", "c1", at(D6, 8), 20.0),  # sees a5 (23h earlier) only
            event("b6", "c2", at(D6, 9)),
        ],
    )
    ctx = context_of(settings, spark, "range", lh)
    caplog.set_level("INFO", logger="regrow.data.passes")

    build = features_of_days(ctx, [D2, D3, D4, D5, D6])
    reports, failures = {}, {}
    for day in [D2, D3, D4, D5, D6]:
        try:
            reports[day] = build(day)
        except MissingPartitionError as err:
            failures[day] = str(err)

    assert "2026-01-02..2026-01-06: 3 days computed in one pass" in caplog.text
    assert set(failures) == {D4, D5}
    assert "no partition event_date=2026-01-04 " in failures[D5]
    assert "reads 2026-01-04..2026-01-05" in failures[D5]
    assert sorted(lh.partition_rows(FEATURES)) == [str(D2), str(D3), str(D6)]
    together = {day: features_of(lh, day) for day in reports}
    assert together[D2]["a2"] == (1, 10.0, 1, 10.0, 2700.0, 3.0)
    assert together[D6]["a6"] == (0, 0.0, 1, 10.0, 82800.0, 2.0)
    for day, report in reports.items():
        alone = build_features(context_of(settings, spark, "alone", lh), day)
        assert features_of(lh, day) == together[day], day
        assert (alone.rows, alone.source_version, alone.days_read) == (
            report.rows, report.source_version, report.days_read,
        )  # fmt: skip
    assert (reports[D2].days_read, reports[D6].days_read) == (
        [str(D1), str(D2)],
        [str(D5), str(D6)],
    )
