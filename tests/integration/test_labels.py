"""silver.labels on real Spark and real Delta tables: labels joined to their events, and
what a cut-off may know of them (arrived, window closed, unknown)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from typer.testing import CliRunner

from regrow.catalog import EVENTS, LABEL_STATUS, LABELS, SILVER_LABELS, label_columns
from regrow.cli import app
from regrow.data.labels import (
    UnmatchedLabelsError,
    build_labels,
    join_labels,
    labels_as_of,
    labels_of_days,
)
from regrow.storage.lakehouse import MissingPartitionError
from tests.bronze_rows import (
    at,
    event,
    events_frame,
    label,
    labels_frame,
    write_events,
    write_labels,
)
from tests.conftest import context_of, lakehouse_of

D1, D2, D3, D4, D5 = (dt.date(2026, 1, d) for d in (1, 2, 3, 4, 5))


def silver_labels(spark, dataset, rows: list[tuple[str, int, dt.datetime]]):
    """silver.labels rows (event id, label, label time) for labels_as_of, which reads no
    other column than these and the landing day."""
    ddl = ", ".join(f"`{c}` {t}" for c, t in label_columns(dataset).items())
    values = [(tid, "c", at(D1), D1, value, time, time.date()) for tid, value, time in rows]
    return spark.createDataFrame(values, ddl)


def as_text(df, *columns: str) -> dict[str, tuple]:
    """Rows by event id, timestamps as UTC text (independent of the local time zone)."""
    text = [
        F.date_format(c, "yyyy-MM-dd HH:mm").alias(c) if dict(df.dtypes)[c] == "timestamp" else c
        for c in columns
    ]
    return {r[0]: tuple(r[1:]) for r in df.select("transaction_id", *text).collect()}


def test_labels_as_of_a_cutoff_arrived_window_closed_or_unknown(spark, make_settings):
    dataset = make_settings(dataset={"label_delay_days": 2}).dataset
    events = events_frame(
        spark,
        dataset,
        [
            event("arrived", "c1", at(D1, 10), amount=12.5),
            event("revised", "c1", at(D1, 15)),
            event("closed", "c2", at(D1, 12)),
            event("closes_at_cutoff", "c2", at(D2, 0)),
            event("late_positive", "c3", at(D1, 18)),
            event("labelled_at_cutoff", "c3", at(D3, 9)),
            event("young", "c4", at(D3, 8)),
            event("young_labelled", "c4", at(D3, 20)),
        ],
    )
    labels = silver_labels(
        spark,
        dataset,
        [
            ("arrived", 1, at(D2, 9)),
            ("revised", 1, at(D2, 10)),
            ("revised", 0, at(D3, 10)),  # the revision: the latest before the cut-off wins
            ("revised", 1, at(D4, 5)),  # revised again after the cut-off: not known yet
            ("late_positive", 1, at(D4, 6)),
            ("labelled_at_cutoff", 1, at(D4, 0)),  # the cut-off is exclusive
            ("young_labelled", 1, at(D3, 23)),
        ],
    )

    known = labels_as_of(events, labels, dataset, at(D4))

    assert as_text(known, "is_fraud", "label_time", LABEL_STATUS) == {
        "arrived": (1, "2026-01-02 09:00", "arrived"),
        "revised": (0, "2026-01-03 10:00", "arrived"),
        "closed": (0, "2026-01-03 12:00", "window_closed"),
        # Its window ends at the cut-off: a label may still arrive at that instant.
        "closes_at_cutoff": (None, None, "unknown"),
        "late_positive": (0, "2026-01-03 18:00", "window_closed"),
        "labelled_at_cutoff": (None, None, "unknown"),
        "young": (None, None, "unknown"),
        "young_labelled": (1, "2026-01-03 23:00", "arrived"),
    }
    assert known.where("transaction_id = 'arrived'").first()["amount"] == 12.5


@pytest.mark.parametrize(
    ("arrives", "at_arrival", "after_arrival"),
    [
        # One second inside the window: known from any cut-off after it arrived.
        (-1, "unknown", (1, "arrived")),
        # Exactly label_delay_days after the event: still inside the window, so at a cut-off
        # equal to its arrival the event is unknown, never a negative.
        (0, "unknown", (1, "arrived")),
        # One second after the window: the window closed first (a negative), and the late
        # label revises it once it has arrived.
        (1, "window_closed", (1, "arrived")),
    ],
    ids=["a-second-before", "exactly-at-the-delay", "a-second-after"],
)
def test_the_label_window_boundary(spark, make_settings, arrives, at_arrival, after_arrival):
    dataset = make_settings(dataset={"label_delay_days": 30}).dataset
    happened = at(D1, 10)
    arrival = happened + dt.timedelta(days=30, seconds=arrives)
    events = events_frame(spark, dataset, [event("t", "c", happened), event("none", "c", happened)])
    labels = silver_labels(spark, dataset, [("t", 1, arrival)])

    def status(cutoff: dt.datetime) -> dict[str, tuple]:
        known = labels_as_of(events, labels, dataset, cutoff)
        return {
            r[0]: (r[1], r[2])
            for r in known.select("transaction_id", "is_fraud", LABEL_STATUS).collect()
        }

    expected_at_arrival = (0 if at_arrival == "window_closed" else None, at_arrival)
    assert status(arrival) == {"t": expected_at_arrival, "none": expected_at_arrival}
    later = status(arrival + dt.timedelta(microseconds=1))
    assert later["t"] == after_arrival
    # Without a label, the event is unknown until its window has ended, negative after.
    window_end = happened + dt.timedelta(days=30)
    assert status(window_end)["none"] == (None, "unknown")
    assert status(window_end + dt.timedelta(microseconds=1))["none"] == (0, "window_closed")


def test_join_labels_takes_entity_and_time_from_the_event(spark, make_settings):
    dataset = make_settings().dataset
    events = events_frame(spark, dataset, [event("t1", "card-a", at(D1, 7))])
    labels = labels_frame(spark, dataset, [label("t1", "card-typo", at(D3, 9))])

    joined = join_labels(labels, events, dataset)

    assert list(joined.columns) == list(label_columns(dataset))
    assert as_text(joined, "card_id", "event_time", "event_date", "label_time", "label_date") == {
        "t1": ("card-a", "2026-01-01 07:00", D1, "2026-01-03 09:00", D3)
    }


def test_join_labels_names_the_labels_without_an_event(spark, make_settings):
    dataset = make_settings().dataset
    events = events_frame(spark, dataset, [event("t1", "c1", at(D1, 7))])
    labels = labels_frame(
        spark,
        dataset,
        [
            label("t1", "c1", at(D3, 9)),
            label("ghost-1", "c1", at(D3, 9)),
            label("ghost-2", "c9", at(D3, 10)),
        ],
    )

    with pytest.raises(UnmatchedLabelsError, match=r"2 label\(s\) belong to no event") as err:
        join_labels(labels, events, dataset)
    assert "'ghost-1'" in str(err.value) and "'ghost-2'" in str(err.value)
    assert "'t1'" not in str(err.value)


def test_build_labels_joins_a_landing_day_and_leaves_a_day_without_labels_empty(
    spark, make_settings
):
    settings = make_settings(dataset={"label_delay_days": 2})
    lh = lakehouse_of(settings)
    write_events(
        spark,
        lh,
        settings.dataset,
        [
            event("a", "c1", at(D1, 7)),
            event("b", "c2", at(D2, 8)),
            event("c", "c3", at(D3, 9)),
        ],
    )

    empty = build_labels(
        context_of(settings, spark, "run-1", lh), D2
    )  # bronze.labels does not exist yet

    assert (empty.rows, empty.source_versions) == (0, {EVENTS: 0})
    assert lh.read(spark, SILVER_LABELS).count() == 0
    write_labels(
        spark,
        lh,
        settings.dataset,
        [label("a", "c1", at(D3, 10)), label("c", "c3", at(D3, 11), is_fraud=0)],
    )
    report = build_labels(context_of(settings, spark, "run-1", lh), D3)
    params = str(Path(settings.base_dir) / "params.yaml")
    rerun = CliRunner().invoke(
        app, ["labels", "--date", f"{D3}", "--run-id", "run-2", "--params", params]
    )

    assert (empty.version, report.rows, report.source_versions) == (0, 2, {EVENTS: 0, LABELS: 0})
    assert (rerun.exit_code, rerun.output) == (0, "2026-01-03: 2 label(s) -> silver.labels v2\n")
    rows = {r["transaction_id"]: r for r in lh.sql("SELECT * FROM silver.labels").to_pylist()}
    assert set(rows) == {"a", "c"}
    a = rows["a"]
    assert (a["card_id"], a["event_date"], a["is_fraud"], a["label_date"]) == ("c1", D1, 1, D3)
    assert (a["event_time"].isoformat(), a["label_time"].isoformat()) == (
        "2026-01-01T07:00:00+00:00",
        "2026-01-03T10:00:00+00:00",
    )
    assert rows["c"]["is_fraud"] == 0
    assert json.loads(a["_source_versions"]) == {EVENTS: 0, LABELS: 0}
    assert {r["_run_id"] for r in rows.values()} == {"run-2"}  # the rerun replaced the day


def test_build_labels_stops_on_a_day_never_ingested_and_on_an_unknown_event(spark, make_settings):
    settings = make_settings(dataset={"label_delay_days": 2})
    lh = lakehouse_of(settings)
    write_events(spark, lh, settings.dataset, [event("a", "c1", at(D1, 7))])
    # A label landing on D4 for an event of D1: outside the 2-day label window.
    write_events(spark, lh, settings.dataset, [event("d", "c4", at(D4, 7))])
    write_labels(spark, lh, settings.dataset, [label("a", "c1", at(D4, 8))])

    with pytest.raises(
        MissingPartitionError, match="bronze.events has no partition event_date=2026-01-02"
    ):
        build_labels(context_of(settings, spark, "run-1", lh), D2)
    with pytest.raises(UnmatchedLabelsError, match=r"1 label\(s\) .*\['a'\]"):
        build_labels(context_of(settings, spark, "run-1", lh), D4)
    assert not lh.exists(SILVER_LABELS)


def test_a_bronze_labels_without_the_release_columns_rebuilds_no_later_day(spark, make_settings):
    """bronze.labels written by another writer (here the tests' own, with the contract's
    columns only) has no ``_released_at``: no label in it was released, so building a day
    builds that day alone, not the later days of its label window as if they had
    labels released into them."""
    settings = make_settings(dataset={"label_delay_days": 2})
    lh = lakehouse_of(settings)
    write_events(spark, lh, settings.dataset, [event("a", "c1", at(D1, 7))])
    write_events(spark, lh, settings.dataset, [event("b", "c2", at(D2, 7))])
    write_labels(spark, lh, settings.dataset, [label("a", "c1", at(D2, 8))])
    assert "_released_at" not in lh.spark_schema(LABELS).names

    report = build_labels(context_of(settings, spark, "run-1", lh), D1)

    assert (report.rows, report.rebuilt) == (0, [])
    assert str(D2) not in lh.partition_rows(SILVER_LABELS)  # D2 waits for its own build


def in_bronze(spark, settings, events: list[dict], labels: list[dict]):
    """The lakehouse of ``settings`` with ``events`` and ``labels`` in bronze."""
    lh = lakehouse_of(settings)
    write_events(spark, lh, settings.dataset, events)
    write_labels(spark, lh, settings.dataset, labels)
    return lh


def silver_rows(lh, day: dt.date) -> list[tuple]:
    """A day's silver.labels rows, without the run that wrote them."""
    rows = lh.sql(f"SELECT * FROM silver.labels WHERE label_date = DATE '{day}'").to_pylist()
    return sorted(tuple((k, str(v)) for k, v in r.items() if k != "_run_id") for r in rows)


def test_days_built_in_one_pass_equal_each_day_built_alone(spark, make_settings, caplog):
    """labels_of_days (a range: the CLI, a job's --to) joins the days that landed labels
    in one pass; each day's partition equals the day built alone, a day without labels
    is left empty."""
    settings = make_settings(dataset={"label_delay_days": 2})
    lh = in_bronze(
        spark,
        settings,
        [event("a", "c1", at(D1, 7)), event("b", "c2", at(D2, 8)), event("c", "c3", at(D3, 9))],
        [
            label("a", "c1", at(D2, 9)),
            label("b", "c2", at(D2, 10), is_fraud=0),
            label("a", "c1", at(D3, 11), is_fraud=0),  # a revision, a day later
            label("c", "c3", at(D3, 12)),
        ],
    )
    caplog.set_level("INFO", logger="regrow.data.passes")

    build = labels_of_days(context_of(settings, spark, "range", lh), [D1, D2, D3])
    reports = {day: build(day) for day in [D1, D2, D3]}

    assert "2026-01-02..2026-01-03: 2 days computed in one pass" in caplog.text
    assert {str(d): r.rows for d, r in reports.items()} == {str(D1): 0, str(D2): 2, str(D3): 2}
    together = {day: silver_rows(lh, day) for day in reports}
    assert dict(together[D3][0])["event_date"] == str(D1)  # a's event, two days before
    for day, report in reports.items():
        alone = build_labels(context_of(settings, spark, "alone", lh), day)
        assert silver_rows(lh, day) == together[day], day
        assert (alone.rows, alone.source_versions) == (report.rows, report.source_versions)


def test_a_day_of_a_range_with_a_label_of_no_event_fails_alone(spark, make_settings, caplog):
    """A label whose event is not in its label window fails its own day, in a range as
    alone: the pass is built day by day, the other days are written. A pass reads the
    events of all its days' windows, so a label must join an event of its own window
    only (D5's label of D1's event would match it otherwise)."""
    settings = make_settings(dataset={"label_delay_days": 2})
    lh = in_bronze(
        spark,
        settings,
        [event("a", "c1", at(D1, 7)), event("c", "c3", at(D3, 9)), event("e", "c5", at(D5, 6))],
        [
            label("a", "c1", at(D3, 10)),
            label("c", "c3", at(D5, 11)),
            label("a", "c1", at(D5, 12)),  # four days after its event: outside the window
        ],
    )
    caplog.set_level("INFO", logger="regrow.data.passes")
    params = str(Path(settings.base_dir) / "params.yaml")

    result = CliRunner().invoke(
        app, ["labels", "--date", f"{D3}", "--to", f"{D5}", "--keep-going", "--params", params]
    )

    assert result.exit_code == 1, result.output
    assert "2026-01-03..2026-01-05: the pass failed, its days are built one by one" in caplog.text
    assert "2026-01-03: 1 label(s) -> silver.labels" in result.output
    assert "bronze.events has no partition event_date=2026-01-04" in result.output
    assert re.search(r"2026-01-05: 1 label\(s\) belong to no event .*\['a'\]", result.output)
    assert "2 of 3 day(s) failed" in result.output
    assert sorted(lh.partition_rows(SILVER_LABELS)) == [str(D3)]
    with pytest.raises(UnmatchedLabelsError, match=r"1 label\(s\) .*\['a'\]"):
        build_labels(context_of(settings, spark, "alone", lh), D5)
