"""Tiny inline bronze rows for the silver tests (features, labels, training sets).

Rows follow the default contract of params.yaml (card transactions) and go straight to
``bronze.events`` / ``bronze.labels`` through the lakehouse, partitioned by the UTC day
of their time, as ingest leaves them: the silver jobs read nothing else.
``land_simulated`` does the same for whole simulated days.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from regrow.catalog import EVENT_DATE, EVENTS, LABEL_DATE, LABELS
from regrow.data.features import features_of_days
from regrow.data.labels import labels_of_days
from regrow.data.simulate import TRUTH_LABEL, TRUTH_LABEL_TIME, simulate_day

UTC = dt.UTC


def at(day: dt.date, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    """An instant of ``day``, UTC."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def event(tid: str, card: str, time: dt.datetime, amount: float = 10.0, **values) -> dict:
    """An event row; ``values`` override the other contract columns."""
    row = {
        "transaction_id": tid,
        "card_id": card,
        "event_time": time,
        "amount": amount,
        "distance_from_home_km": 1.0,
        "merchant_risk": 0.1,
        "merchant_category": "grocery",
        "channel": "pos",
        "country": "FR",
        "card_present": True,
    }
    return {**row, **values}


def label(tid: str, card: str, time: dt.datetime, is_fraud: int = 1) -> dict:
    return {"transaction_id": tid, "card_id": card, "is_fraud": is_fraud, "label_time": time}


def events_frame(spark, dataset, rows: list[dict]):
    """bronze.events rows as a DataFrame (contract columns, then ``event_date``)."""
    return _frame(spark, dataset.event_columns(), rows, dataset.event_timestamp, EVENT_DATE)


def labels_frame(spark, dataset, rows: list[dict]):
    """bronze.labels rows as a DataFrame (contract columns, then ``label_date``)."""
    return _frame(spark, dataset.label_columns(), rows, dataset.label_timestamp, LABEL_DATE)


def write_events(spark, lakehouse, dataset, rows: list[dict]) -> None:
    """Append ``rows`` to bronze.events (one commit)."""
    lakehouse.write(events_frame(spark, dataset, rows), EVENTS, "append", partition_by=[EVENT_DATE])


def write_labels(spark, lakehouse, dataset, rows: list[dict]) -> None:
    """Append ``rows`` to bronze.labels (one commit)."""
    lakehouse.write(labels_frame(spark, dataset, rows), LABELS, "append", partition_by=[LABEL_DATE])


def _frame(spark, columns: dict[str, str], rows: list[dict], time_column: str, day_column: str):
    ddl = ", ".join(f"`{c}` {t}" for c, t in {**columns, day_column: "date"}.items())
    values: list[tuple[Any, ...]] = [
        (*(r[c] for c in columns), r[time_column].astimezone(UTC).date()) for r in rows
    ]
    return spark.createDataFrame(values, ddl)


def simulated(settings, days: int, end: dt.date | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated days ``0..days-1``: the events (with the simulator's truth columns), and
    the labels ingest keeps: those that arrived within the label window (and before
    ``end``)."""
    dataset = settings.dataset
    events = pd.concat(
        [simulate_day(dataset, settings.simulator, i) for i in range(days)], ignore_index=True
    )
    arrived = events[TRUTH_LABEL_TIME]
    # ingest takes a label whose event is at most label_delay_days days older than it
    age = arrived.dt.normalize() - events[dataset.event_timestamp].dt.normalize()
    known = arrived.notna() & (age.dt.days <= dataset.label_delay_days)
    if end is not None:
        known &= arrived < pd.Timestamp(end, tz="UTC")
    labels = pd.DataFrame({
        dataset.event_id: events.loc[known, dataset.event_id],
        dataset.entity_id: events.loc[known, dataset.entity_id],
        dataset.label: events.loc[known, TRUTH_LABEL].astype(int),
        dataset.label_timestamp: arrived[known],
    })  # fmt: skip
    return events, labels


def land_simulated(spark, lakehouse, settings, days: int, end: dt.date | None = None) -> None:
    """Simulated days ``0..days-1`` as ingest leaves them: bronze.events, and in
    bronze.labels the labels that arrived within the label window (and before ``end``)."""
    dataset = settings.dataset
    events, labels = simulated(settings, days, end)
    columns = list(dataset.event_columns())
    write_events(spark, lakehouse, dataset, records(events[columns], dataset.event_timestamp))
    write_labels(spark, lakehouse, dataset, records(labels, dataset.label_timestamp))


def records(frame: pd.DataFrame, time_column: str) -> list[dict]:
    """Rows as dicts of Python values (Spark takes datetimes, not pandas Timestamps)."""
    rows = frame.to_dict("records")
    for row in rows:
        row[time_column] = row[time_column].to_pydatetime()
    return rows


def build_silver_days(ctx, days: list[dt.date]) -> None:
    """silver.features and silver.labels of ``days``, built together (small days in one
    pass) as `regrow features` and `regrow labels` build a range."""
    for build in (features_of_days(ctx, days), labels_of_days(ctx, days)):
        for day in days:
            build(day)
