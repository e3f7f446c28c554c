"""Tiny inline bronze rows for the silver tests (features, labels, training sets).

Rows follow the default contract of params.yaml (card transactions) and go straight to
``bronze.events`` / ``bronze.labels`` through the lakehouse, partitioned by the UTC day
of their time, as ingest leaves them: the silver jobs read nothing else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from regrow.catalog import EVENT_DATE, EVENTS, LABEL_DATE, LABELS

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
