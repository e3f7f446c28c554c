"""The monitoring profile on real Spark: quantile edges and per-column counts equal to
pandas' own counts of the same rows, awkward column names, and an empty window."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from regrow.monitoring.drift import Distribution
from regrow.monitoring.profile import bin_labels, profile, quantile_edges

AMOUNT, LEVEL, EMPTY = "amount.usd", "level", "empty"
COUNTRY, FRAUD, CODE = "país de origem", "is_fraud", "code `x`"
NUMERIC, CATEGORICAL = [AMOUNT, LEVEL, EMPTY], [COUNTRY, FRAUD, CODE]


@pytest.fixture(scope="module")
def rows() -> list[tuple]:
    rng = np.random.default_rng(7)
    countries = ["Brasil", "Portugal", "Moçambique", "Angola", "São Tomé e Príncipe"]
    out = []
    for i in range(400):
        amount = float(np.round(rng.lognormal(3, 1), 2))
        if i % 37 == 0:
            amount = None
        elif i % 41 == 0:
            amount = math.nan
        elif i % 53 == 0:
            amount = 20.0  # a value that will often be an edge
        country = None if i % 29 == 0 else countries[int(rng.integers(len(countries)))]
        fraud = None if i % 31 == 0 else bool(rng.random() < 0.1)
        out.append((amount, int(rng.integers(1, 4)), None, country, fraud, f"c{i % 3}"))
    return out


@pytest.fixture(scope="module")
def schema():
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField(AMOUNT, T.DoubleType()),
            T.StructField(LEVEL, T.LongType()),
            T.StructField(EMPTY, T.DoubleType()),
            T.StructField(COUNTRY, T.StringType()),
            T.StructField(FRAUD, T.BooleanType()),
            T.StructField(CODE, T.StringType()),
        ]
    )


@pytest.fixture(scope="module")
def frames(spark, rows, schema):
    return spark.createDataFrame(rows, schema), pd.DataFrame(rows, columns=schema.fieldNames())


def pandas_binned(values: pd.Series, edges: list[float]) -> Distribution:
    labels = bin_labels(edges)
    values = values.astype(float)
    binned = pd.cut(values, [-np.inf, *edges, np.inf], right=True, labels=labels)
    counts = binned.value_counts().reindex(labels, fill_value=0)
    return Distribution({k: int(v) for k, v in counts.items()}, int(values.isna().sum()))


def pandas_counted(values: pd.Series) -> Distribution:
    text = values.dropna().map(lambda v: str(v).lower() if isinstance(v, bool) else str(v))
    counts = dict(sorted((k, int(v)) for k, v in text.value_counts().items()))
    return Distribution(counts, int(values.isna().sum()))


def test_quantile_edges_are_the_quantiles_of_the_non_null_values(frames):
    df, pdf = frames
    edges = quantile_edges(df, NUMERIC, bins=4)
    amounts = pdf[AMOUNT].dropna().to_numpy()  # NaN too
    assert len(amounts) < 400 - 10
    expected = np.quantile(amounts, [0.25, 0.5, 0.75], method="inverted_cdf")
    assert edges[AMOUNT] == pytest.approx(list(expected))
    assert edges[EMPTY] == []
    # Three distinct values: ten bins asked, at most three edges, none repeated.
    levels = quantile_edges(df, [LEVEL], bins=10)[LEVEL]
    probabilities = np.arange(1, 10) / 10
    expected = np.quantile(pdf[LEVEL], probabilities, method="inverted_cdf")
    assert levels == sorted(set(expected)) == [1.0, 2.0, 3.0]


def test_profile_counts_equal_pandas_counts(frames, rows):
    df, pdf = frames
    edges = quantile_edges(df, NUMERIC, bins=5)
    result = profile(df, edges, CATEGORICAL)
    assert list(result) == NUMERIC + CATEGORICAL
    for name in NUMERIC:
        assert result[name] == pandas_binned(pdf[name], edges[name]), name
    for name in CATEGORICAL:
        assert result[name] == pandas_counted(pdf[name]), name
    assert list(result[AMOUNT].counts) == bin_labels(edges[AMOUNT])  # in bin order
    assert result[AMOUNT].nulls == sum(1 for r in rows if r[0] is None or math.isnan(r[0]))
    assert set(result[FRAUD].counts) == {"true", "false"}
    assert "São Tomé e Príncipe" in result[COUNTRY].counts
    assert result[EMPTY] == Distribution({"(-inf, inf)": 0}, nulls=400)
    assert all(d.rows == 400 for d in result.values())


def test_a_value_equal_to_an_edge_is_in_the_lower_bin(spark, schema):
    df = spark.createDataFrame(
        [(v, 1, None, None, None, None) for v in (0.0, 1.0, 1.5, 2.0, 3.0)], schema
    )
    result = profile(df, {AMOUNT: [1.0, 2.0]}, [])
    assert result[AMOUNT].counts == {"(-inf, 1]": 2, "(1, 2]": 2, "(2, inf)": 1}


def test_an_empty_frame_gives_empty_distributions(spark, schema):
    empty = spark.createDataFrame([], schema)
    assert quantile_edges(empty, NUMERIC, bins=10) == {AMOUNT: [], LEVEL: [], EMPTY: []}
    result = profile(empty, {AMOUNT: [1.0, 2.0], LEVEL: []}, CATEGORICAL)
    assert result[AMOUNT] == Distribution({"(-inf, 1]": 0, "(1, 2]": 0, "(2, inf)": 0})
    assert result[LEVEL] == Distribution({"(-inf, inf)": 0})
    assert all(result[name] == Distribution({}) for name in CATEGORICAL)


def test_bin_labels_keep_close_edges_apart():
    assert bin_labels([3.2, 7.5]) == ["(-inf, 3.2]", "(3.2, 7.5]", "(7.5, inf)"]
    assert bin_labels([]) == ["(-inf, inf)"]
    assert bin_labels([0.1 + 0.2, 104983.5])[1] == "(0.3, 104983.5]"
    close = bin_labels([1.0, 1.0 + 2**-52])
    assert len(set(close)) == 3 and close[1] == "(1, 1.0000000000000002]"


def test_wrong_columns_are_named(frames):
    df, _ = frames
    with pytest.raises(ValueError, match="'país de origem' is string, not a numeric type"):
        quantile_edges(df, [COUNTRY], bins=4)
    with pytest.raises(ValueError, match="'nope' is not in the DataFrame"):
        profile(df, {}, ["nope"])
    with pytest.raises(ValueError, match="both numeric and categorical"):
        profile(df, {LEVEL: [2.0]}, [LEVEL])
