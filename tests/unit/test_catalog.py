"""The table catalog: every table once, its day column, and keys in the user's own names."""

from __future__ import annotations

from regrow.catalog import (
    DECISIONS,
    EVENTS,
    MODEL_VERSIONS,
    PREDICTIONS,
    QUARANTINE,
    TABLES,
    VALIDATION,
)
from regrow.settings import settings_from_dict


def other_contract():
    """A contract whose columns are not the simulator's."""
    return settings_from_dict({
        "dataset": {
            "name": "claims", "event_id": "claim no", "entity_id": "policy",
            "event_timestamp": "filed_at", "label": "fraud", "label_timestamp": "decided_at",
            "label_delay_days": 30, "numeric_features": ["amount"],
        },
    }).dataset  # fmt: skip


def test_every_table_is_layer_dot_name_with_its_day_column():
    assert all(name.count(".") == 1 and name.split(".")[0] in ("bronze", "silver", "gold")
               for name in TABLES)  # fmt: skip
    assert TABLES[EVENTS].date_column == "event_date"
    assert TABLES[QUARANTINE].partition_by == ("ingest_date", "source_kind")
    assert TABLES[VALIDATION].partition_by == ("day", "table")
    assert TABLES[MODEL_VERSIONS].date_column is None  # not partitioned by day


def test_keys_name_the_users_columns():
    dataset = other_contract()
    assert TABLES[EVENTS].keys(dataset) == ["claim no"]
    assert TABLES[PREDICTIONS].keys(dataset) == ["claim no", "model_alias"]
    assert TABLES[DECISIONS].keys(dataset) == ["decision_id"]
    assert TABLES[QUARANTINE].keys(dataset) == []
