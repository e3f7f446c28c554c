"""gold.decisions rows: the shape of a Decision and its append to a real Delta table in
tmp_path (delta-rs, no Spark)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from regrow.catalog import DECISION_DATE, DECISIONS
from regrow.model.decisions import FORCE_PROMOTE, PROMOTE, ROLLBACK, SCHEMA, Decision, record
from regrow.storage.lakehouse import Lakehouse, SchemaChangeError
from tests.conftest import lakehouse_of

LATE = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)


@pytest.fixture
def lakehouse(make_settings) -> Lakehouse:
    return lakehouse_of(make_settings())


def promotion(**changes) -> Decision:
    checks = [{"check": "beats champion on backtest", "passed": True, "improvement": 0.05,
               "since": dt.date(2026, 2, 1)}]  # fmt: skip
    values = dict(
        action=PROMOTE, model_name="fraud", model_version="2", champion_before="1",
        champion_after="2", reason="promoted: pr_auc 0.3000 beats the champion by >= 0.01",
        trigger="drift", mode="warm_start", primary_metric="pr_auc", challenger_value=0.3,
        champion_value=0.25, checks=checks, actor="alice", run_id="r2", trainset_sha256="sha256:ab",
        decided_at=LATE,
    )  # fmt: skip
    return Decision(**{**values, **changes})


def test_a_row_has_every_column_of_the_table_with_the_checks_as_json():
    decision = promotion()
    row = decision.row()

    assert set(row) == set(SCHEMA.names)
    assert json.loads(row["checks"]) == [{"check": "beats champion on backtest", "passed": True,
                                          "improvement": 0.05, "since": "2026-02-01"}]  # fmt: skip
    assert row[DECISION_DATE] == dt.date(2026, 3, 1)  # the UTC day of decided_at
    assert row["decided_at"] == LATE and row["decision_id"] == decision.decision_id
    assert decision.checks[0]["since"] == dt.date(2026, 2, 1)  # the decision is not changed


def test_a_decision_says_who_decided_by_default_and_gets_its_own_id_and_time(monkeypatch):
    monkeypatch.setenv("LOGNAME", "carol")
    before = dt.datetime.now(dt.UTC)
    one = Decision(ROLLBACK, "fraud", "1", "2", "1", "rollback: bad scores")
    other = Decision(ROLLBACK, "fraud", "1", "2", "1", "rollback: bad scores")

    assert one.actor == "carol" and one.row()["actor"] == "carol"
    assert one.decision_id != other.decision_id and len(one.decision_id) == 32
    assert before <= one.decided_at <= dt.datetime.now(dt.UTC)
    assert one.row()["checks"] == "[]" and one.row()["forced"] is False


def test_record_appends_one_row_per_decision_partitioned_by_day(lakehouse):
    first = record(lakehouse, promotion())
    second = record(
        lakehouse,
        promotion(action=FORCE_PROMOTE, model_version="3", champion_before="2", champion_after="3",
                  forced=True, checks=[], challenger_value=None, champion_value=None,
                  decided_at=LATE + dt.timedelta(hours=1)),
    )  # fmt: skip

    assert (first.table, first.version, first.rows_written) == (DECISIONS, 0, 1)
    assert second.version == 1
    assert lakehouse.partition_by(DECISIONS) == [DECISION_DATE]
    assert lakehouse.partition_rows(DECISIONS) == {"2026-03-01": 1, "2026-03-02": 1}
    rows = lakehouse.sql(
        "SELECT action, model_version, champion_before, champion_after, forced, challenger_value,"
        " checks, actor FROM gold.decisions ORDER BY decided_at"
    ).to_pylist()
    assert [(r["action"], r["model_version"], r["champion_before"], r["champion_after"])
            for r in rows] == [(PROMOTE, "2", "1", "2"), (FORCE_PROMOTE, "3", "2", "3")]  # fmt: skip
    assert [r["forced"] for r in rows] == [False, True]
    assert [r["challenger_value"] for r in rows] == [0.3, None]
    assert json.loads(rows[0]["checks"])[0]["improvement"] == 0.05 and rows[1]["checks"] == "[]"
    assert {r["actor"] for r in rows} == {"alice"}


def test_a_decisions_table_of_another_shape_is_refused_naming_the_column(lakehouse):
    lakehouse.append_records(DECISIONS, pa.table({"decision_id": ["x"], "checks": [3]}))

    with pytest.raises(SchemaChangeError, match="gold.decisions: column checks is string, the table has int64"):  # fmt: skip
        record(lakehouse, promotion())
    assert lakehouse.to_arrow(DECISIONS).num_rows == 1
