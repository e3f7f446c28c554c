"""Lineage from a prediction back to its models: gold.model_versions copied from a real
MLflow store, and gold.predictions rows written straight into a Delta table in the
module's directory (delta-rs, no Spark)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pyarrow as pa
import pytest

from regrow.catalog import EVENT_DATE, MODEL_VERSIONS, PREDICTIONS, prediction_columns
from regrow.model.lineage import TAGS, LineageError, describe, lineage, record_versions
from regrow.model.registry import Registry
from regrow.settings import load_settings
from regrow.storage.lakehouse import Lakehouse, MissingPartitionError
from tests.conftest import lakehouse_of, write_params
from tests.models import register_versions

DAY = dt.date(2026, 3, 1)
ARROW = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
         "double": pa.float64(), "boolean": pa.bool_(), "long": pa.int64(),
         "date": pa.date32()}  # fmt: skip
V1 = {
    "mode": "stateless", "mode_reason": "stateless: configured", "trigger": "schedule",
    "warm_starts_in_a_row": 0, "cutoff_date": "2026-01-15",
    "train_window": "2026-01-01T00:00:00+00:00..2026-01-10T23:00:00+00:00",
    "train_last_event": "2026-01-10T23:00:00+00:00",
    "delta_versions": json.dumps({"silver.features": 13, "silver.labels": 12}),
    "trainset_sha256": "sha256:aa", "dvc_md5": "11.dir", "git_commit": "c0ffee",
}  # fmt: skip
V2 = {**V1, "mode": "warm_start", "parent_version": "1", "warm_starts_in_a_row": 1,
      "mode_reason": "warm_start: 412 new rows since champion v1's window ended",
      "trigger": "drift", "cutoff_date": "2026-02-01", "dvc_md5": "22.dir"}  # fmt: skip
V3 = {**V1, "trigger": "manual", "cutoff_date": "2026-02-02", "dvc_md5": "33.dir"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_template):
    """Three registered versions (v2 warm-started from v1; v3 stateless, the challenger),
    and a lakehouse without tables yet."""
    root = tmp_path_factory.mktemp("lineage")
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    settings = load_settings(write_params(root))
    registry = Registry(settings)
    versions = register_versions(registry, V1, V2, V3)
    return settings, registry, versions


@pytest.fixture(scope="module")
def scored(world):
    """gold.model_versions recorded for v2 and v3 (so v1 too), and predictions on two days:
    card c1's two events scored by champion v2 and shadow v3, card c2's by v2, card c3's
    by a v9 scored before lineage was recorded."""
    settings, registry, versions = world
    lakehouse = lakehouse_of(settings)
    record_versions(lakehouse, registry, versions[1:], "score-1")
    rows = [
        ("e1", "c1", 10, 3, "shadow", 0.20), ("e1", "c1", 10, 2, "champion", 0.70),
        ("e2", "c1", 9, 3, "shadow", 0.10), ("e2", "c1", 9, 2, "champion", 0.65),
        ("e3", "c2", 11, 2, "champion", 0.05), ("e5", "c3", 12, 9, "champion", 0.5),
        ("e4", "c1", 24 + 8, 2, "champion", 0.9),  # the next day
    ]  # fmt: skip
    lakehouse.append_records(PREDICTIONS, predictions(settings, rows), partition_by=[EVENT_DATE])
    return settings, lakehouse, versions


def predictions(settings, rows) -> pa.Table:
    """(transaction, card, hour after DAY, model version, alias, score) -> prediction rows."""
    columns = prediction_columns(settings.dataset)
    at = [dt.datetime.combine(DAY, dt.time(), dt.UTC) + dt.timedelta(hours=r[2]) for r in rows]
    values = {
        "transaction_id": [r[0] for r in rows], "card_id": [r[1] for r in rows], "event_time": at,
        "score": [r[5] for r in rows], "decision": [r[5] >= 0.5 for r in rows],
        "threshold": [0.5] * len(rows), "model_name": ["card_transactions"] * len(rows),
        "model_version": [r[3] for r in rows], "model_alias": [r[4] for r in rows],
        "model_run_id": [f"run{r[3]}" for r in rows], EVENT_DATE: [t.date() for t in at],
        "_source_version": [7] * len(rows), "_run_id": ["score-1"] * len(rows),
    }  # fmt: skip
    schema = pa.schema([(c, ARROW[t]) for c, t in columns.items()])
    return pa.Table.from_pydict({c: values[c] for c in columns}, schema)


# ------------------------------------------------------------------- model_versions
def test_versions_are_recorded_with_their_ancestors_and_never_twice(world, tmp_path):
    settings, registry, (v1, v2, v3) = world
    lakehouse = Lakehouse(settings.lakehouse, str(tmp_path / "lakehouse"))

    first = record_versions(lakehouse, registry, [v2], "score-1")
    second = record_versions(lakehouse, registry, [v3, v2], "score-2")
    third = record_versions(lakehouse, registry, [v1, v2, v3], "score-3")

    assert (first, second, third) == (["1", "2"], ["3"], [])
    assert lakehouse.table_version(MODEL_VERSIONS) == 1  # the third call wrote nothing
    rows = {r["model_version"]: r for r in lakehouse.to_arrow(MODEL_VERSIONS).to_pylist()}
    assert sorted(rows) == [1, 2, 3]
    assert [rows[v]["recorded_by"] for v in (1, 2, 3)] == ["score-1", "score-1", "score-2"]
    two = rows[2]
    assert (two["model_name"], two["model_run_id"], two["source"]) == (
        "card_transactions", v2.run_id, v2.source)  # fmt: skip
    assert {t: two[t] for t in TAGS} == {t: str(V2[t]) if t in V2 else None for t in TAGS}
    assert rows[1]["parent_version"] is None and rows[1]["warm_starts_in_a_row"] == "0"


# -------------------------------------------------------------------------- lineage
def test_the_predictions_of_an_entity_on_a_day_come_with_their_models(scored):
    settings, lakehouse, _ = scored

    found = lineage(lakehouse, settings.dataset, "c1", DAY)

    assert (found.entity, found.day) == ("c1", DAY)
    assert found.tables == {PREDICTIONS: 0, MODEL_VERSIONS: 0}
    # By event time, the champion's row before the shadow's; only DAY's rows.
    assert [(p["transaction_id"], p["model_alias"], p["model_version"])
            for p in found.predictions] == [("e2", "champion", 2), ("e2", "shadow", 3),
                                            ("e1", "champion", 2), ("e1", "shadow", 3)]  # fmt: skip
    assert found.predictions[0]["event_time"] == "2026-03-01T09:00:00+00:00"
    assert found.predictions[0][EVENT_DATE] == "2026-03-01"
    assert sorted(found.models) == [("card_transactions", v) for v in (1, 2, 3)]


def test_a_chain_follows_parents_as_far_as_they_are_recorded(scored):
    settings, lakehouse, _ = scored
    found = lineage(lakehouse, settings.dataset, "c1", DAY)

    chain = found.chain("card_transactions", 2)

    assert [(m["model_version"], m["mode"], m["dvc_md5"]) for m in chain] == [
        (2, "warm_start", "22.dir"), (1, "stateless", "11.dir")]  # fmt: skip
    assert [m["model_version"] for m in found.chain("card_transactions", 3)] == [3]
    assert found.chain("card_transactions", 9) == []
    as_dict = found.as_dict()
    assert as_dict["day"] == "2026-03-01" and as_dict["tables"] == found.tables
    assert [len(p["models"]) for p in as_dict["predictions"]] == [2, 1, 2, 1]


def test_an_entity_or_a_day_without_predictions_is_an_error_naming_it(scored):
    settings, lakehouse, _ = scored

    with pytest.raises(LineageError, match=r"entity card_id='c9' has no prediction on 2026-03-01 "
                       r"\(gold.predictions v0 has 6 rows that day\)"):  # fmt: skip
        lineage(lakehouse, settings.dataset, "c9", DAY)
    with pytest.raises(MissingPartitionError, match=r"event_date=2026-03-05 .*regrow score "
                       r"--date 2026-03-05"):  # fmt: skip
        lineage(lakehouse, settings.dataset, "c1", dt.date(2026, 3, 5))


def test_a_lineage_is_described_from_the_predictions_back_to_the_code(scored):
    settings, lakehouse, versions = scored
    run = versions[0].run_id

    lines = describe(lineage(lakehouse, settings.dataset, "c2", DAY), settings.dataset)

    assert lines == [
        "card_id=c2 on 2026-03-01: 1 event(s), 1 prediction row(s) "
        "(gold.predictions v0, gold.model_versions v0)",
        "predictions:",
        "  transaction_id=e3 at 2026-03-01T11:00:00+00:00  champion v2  score 0.0500  "
        "decision False (threshold 0.5)  [silver.features v7, run score-1]",
        "models:",
        "  card_transactions v2 (champion): warm_start: 412 new rows since champion v1's "
        "window ended",
        f"    trigger drift; MLflow run {run}",
        "    trained on 2026-01-01T00:00:00+00:00..2026-01-10T23:00:00+00:00 (cut-off "
        "2026-02-01); read silver.features v13, silver.labels v12",
        "    snapshot: dvc md5 22.dir, sha256:aa",
        "    code: git c0ffee",
        "    card_transactions v1 parent of v2: stateless: configured",
        f"      trigger schedule; MLflow run {run}",
        "      trained on 2026-01-01T00:00:00+00:00..2026-01-10T23:00:00+00:00 (cut-off "
        "2026-01-15); read silver.features v13, silver.labels v12",
        "      snapshot: dvc md5 11.dir, sha256:aa",
        "      code: git c0ffee",
    ]


def test_a_model_scored_before_lineage_was_recorded_is_named_as_such(scored):
    settings, lakehouse, _ = scored

    lines = describe(lineage(lakehouse, settings.dataset, "c3", DAY), settings.dataset)

    assert "  transaction_id=e5 at 2026-03-01T12:00:00+00:00  champion v9  score 0.5000  " \
           "decision True (threshold 0.5)  [silver.features v7, run score-1]" in lines  # fmt: skip
    assert lines[-2:] == [
        "models:",
        "  card_transactions v9 (champion): not in gold.model_versions (scored before "
        "lineage was recorded; see `regrow models`)",
    ]


def test_without_an_entity_the_lineage_is_an_events(scored):
    settings, lakehouse, _ = scored
    dataset = settings.dataset.model_copy(update={"entity_id": None})

    found = lineage(lakehouse, dataset, "e1", DAY)

    assert [(p["transaction_id"], p["model_alias"]) for p in found.predictions] == [
        ("e1", "champion"), ("e1", "shadow"),
    ]  # fmt: skip
    assert describe(found, dataset)[0].startswith("transaction_id=e1 on 2026-03-01: 1 event(s)")
