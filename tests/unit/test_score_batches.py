"""The Arrow-batch scoring function and the input check, without Spark or MLflow: a tiny
booster on inline rows, with the kinds of values users' data has (booleans, nulls,
unicode and never-seen categories)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xgboost as xgb
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    StringType,
    StructField,
    StructType,
)

from regrow.catalog import CHAMPION, EVENT_DATE, PREDICTION_COLUMNS, SHADOW
from regrow.data.transform import Transform
from regrow.model.registry import Version
from regrow.model.scoring import Scorer, ScoringError, check_inputs, score_batches
from regrow.model.training import Model
from regrow.storage.lakehouse import decode_dictionaries

DAY = dt.date(2026, 3, 1)
KEYS = ["id", "who", "at"]


def model(seed: int) -> Model:
    rng = np.random.default_rng(seed)
    train = pd.DataFrame({
        "amount": rng.gamma(2.0, 30.0, 400),
        "online": rng.random(400) < 0.5,
        "city": rng.choice(["Zürich", "東京", "Lyon"], 400),
    })  # fmt: skip
    label = ((train["amount"] > 60) & train["online"]).astype(int)
    transform = Transform.fit(train, ["amount", "online"], ["city"], rare_min_count=5)
    booster = xgb.train(
        {"max_depth": 2, "seed": seed, "nthread": 1},
        xgb.DMatrix(transform.apply(train), label=label),
        num_boost_round=5,
    )
    return Model(booster, transform)


def spec(alias: str, version: int) -> dict:
    return {"alias": alias, "name": "m", "version": version, "run_id": f"run{version}"}


def rows() -> pa.RecordBatch:
    at = [dt.datetime(2026, 3, 1, h, tzinfo=dt.UTC) for h in (1, 2, 3, 4)]
    return pa.RecordBatch.from_pydict({
        "id": ["e1", "e2", "e3", "e4"],
        "who": ["ü-1", "ü-2", "ü-1", "ü-3"],
        "at": pa.array(at, pa.timestamp("us", tz="UTC")),
        "amount": [10.0, None, 300.0, 75.0],  # a null takes the train median
        "online": [True, False, True, None],
        "city": ["Zürich", "Atlantis", None, "東京"],  # never seen / missing: the rare code
        EVENT_DATE: [DAY] * 4,
    })  # fmt: skip


def output_schema() -> pa.Schema:
    types = {"double": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
             "long": pa.int64(), "date": pa.date32()}  # fmt: skip
    return pa.schema(
        [("id", pa.string()), ("who", pa.string()), ("at", pa.timestamp("us", tz="UTC"))]
        + [(c, types[t]) for c, t in PREDICTION_COLUMNS.items()]
    )


def test_each_model_scores_every_row_as_its_own_predict_does():
    champion, shadow = model(1), model(2)
    batch = rows()
    out = pa.Table.from_batches(list(score_batches(
        iter([batch, batch.slice(0, 0)]),  # an empty batch yields nothing
        [(spec(CHAMPION, 1), champion), (spec(SHADOW, 2), shadow)],
        KEYS, 0.5, 7, "run-x", output_schema(),
    )))  # fmt: skip

    assert out.num_rows == 8
    frame = batch.to_pandas()
    for alias, m in ((CHAMPION, champion), (SHADOW, shadow)):
        mine = out.filter(pa.compute.equal(out["model_alias"], alias)).to_pydict()
        assert mine["id"] == ["e1", "e2", "e3", "e4"] and mine["who"][0] == "ü-1"
        np.testing.assert_allclose(mine["score"], m.predict(frame), rtol=1e-6)
        assert mine["decision"] == [s >= 0.5 for s in mine["score"]]
        assert set(mine["model_version"]) == {1 if alias == CHAMPION else 2}
        assert set(mine["_source_version"]) == {7} and set(mine["_run_id"]) == {"run-x"}
    assert out["at"].to_pylist()[0] == dt.datetime(2026, 3, 1, 1, tzinfo=dt.UTC)


def test_repeated_strings_come_as_dictionaries_and_decode_to_the_declared_schema():
    no_run = {**spec(SHADOW, 2), "run_id": None}  # a version registered without an MLflow run
    batches = list(score_batches(
        iter([rows()]), [(spec(CHAMPION, 1), model(1)), (no_run, model(2))],
        KEYS, 0.5, 7, "run-x", output_schema(),
    ))  # fmt: skip

    champion, shadow = batches
    assert pa.types.is_dictionary(champion.schema.field("model_run_id").type)
    assert champion["model_run_id"].dictionary.to_pylist() == ["run1"]  # one value, not four
    assert shadow["model_run_id"].null_count == 4
    decoded = list(decode_dictionaries(iter(batches)))
    # What Spark's mapInArrow gets: the declared types (its JVM cannot read dictionaries).
    assert [b.schema for b in decoded] == [output_schema(), output_schema()]
    assert decoded[0]["model_run_id"].to_pylist() == ["run1"] * 4
    assert decoded[1]["model_alias"].to_pylist() == [SHADOW] * 4
    assert decoded[1]["model_run_id"].to_pylist() == [None] * 4


def scorer(m: Model) -> Scorer:
    return Scorer(CHAMPION, Version("m", "3", "r", [CHAMPION], {}, "models:/m/3"), m)


def test_inputs_are_checked_against_the_model_columns_and_types():
    fine = StructType([
        StructField("amount", DoubleType()), StructField("online", BooleanType()),
        StructField("city", StringType()),
    ])  # fmt: skip
    check_inputs(fine, [scorer(model(1))], "features 2026-03-01")  # no error

    changed = StructType([StructField("amount", StringType()), StructField("city", StringType())])
    with pytest.raises(ScoringError) as err:
        check_inputs(changed, [scorer(model(1))], "features 2026-03-01")
    message = str(err.value)
    assert message.startswith("features 2026-03-01 does not match the model signature")
    assert "champion m v3: missing columns ['online']" in message
    assert "not numeric any more: amount is string" in message
