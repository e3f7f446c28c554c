"""The counting behind the drift checks, in Spark: each column's distribution in a window,
as a few hundred aggregated counts (rows never go to the driver).

Numeric columns (and the score) are binned at the reference's quantiles
(:func:`quantile_edges`, labelled by :func:`bin_labels`); categorical and boolean columns
are counted by value, as strings (booleans ``"true"``/``"false"``). NaN counts as null.
:func:`profile` counts every column of a window in one aggregate, into the
:class:`~regrow.monitoring.drift.Distribution` s that :mod:`regrow.monitoring.drift` compares.
Only DataFrame APIs that Spark Connect supports are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from regrow.monitoring.drift import Distribution

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

_COLUMN, _BUCKET, _COUNT = "__column", "__bucket", "__count"


def quantile_edges(
    df: DataFrame, columns: Sequence[str], bins: int, relative_error: float = 0.001
) -> dict[str, list[float]]:
    """The inner cut points of each numeric column at its quantiles 1/bins ... (bins-1)/bins,
    in one aggregate.

    Nulls, NaN and infinities are ignored; repeated cut points are dropped, so a column with
    few distinct values gets fewer bins, and a column without values gets none (``[]``).
    """
    from pyspark.sql import functions as F

    columns = list(dict.fromkeys(columns))
    if not columns:
        return {}
    probabilities = [i / bins for i in range(1, bins)]
    accuracy = max(1, round(1 / relative_error))
    types = _types(df)
    row = df.agg(
        *[
            F.percentile_approx(_number(name, types), probabilities, accuracy).alias(f"__q{i}")
            for i, name in enumerate(columns)
        ]
    ).first()
    edges = {}
    for i, name in enumerate(columns):
        cuts = [float(q) for q in (row[f"__q{i}"] or []) if q is not None and math.isfinite(q)]
        edges[name] = list(dict.fromkeys(sorted(cuts)))
    return edges


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bins that ``edges`` cut: ``(-inf, 3.2]``, ``(3.2, 7.5]``, ``(7.5, inf)``
    (a value equal to an edge is in the lower bin). Numbers are written with 15 significant
    digits (hiding float noise such as 0.30000000000000004), all 17 if that merges edges."""
    if not edges:
        return ["(-inf, inf)"]
    text = [f"{e:.15g}" for e in edges]
    if len(set(text)) < len(set(edges)):
        text = [f"{e:.17g}" for e in edges]
    return [
        f"(-inf, {text[0]}]",
        *[f"({low}, {high}]" for low, high in zip(text, text[1:], strict=False)],
        f"({text[-1]}, inf)",
    ]


def profile(
    df: DataFrame, numeric: Mapping[str, list[float]], categorical: Sequence[str]
) -> dict[str, Distribution]:
    """Every column's distribution in ``df``, counted in one aggregate.

    Args:
        numeric: column -> its edges (from :func:`quantile_edges` on the reference); a
            value is counted in its bin (one equal to an edge in the lower one).
        categorical: categorical and boolean columns, counted by value as a string.

    Returns:
        A :class:`Distribution` per column; a numeric one lists every bin in order, the
        empty ones with 0. A DataFrame without rows gives empty distributions.
    """
    from pyspark.sql import functions as F

    both = set(numeric) & set(categorical)
    if both:
        raise ValueError(f"column(s) {sorted(both)} are both numeric and categorical")
    types = _types(df)
    labels = {name: bin_labels(edges) for name, edges in numeric.items()}
    buckets = [_bin(_number(name, types), edges, labels[name]) for name, edges in numeric.items()]
    buckets += [_quoted(_known(name, types)).cast("string") for name in categorical]
    names = [*numeric, *categorical]
    counts: dict[str, dict[str, int]] = {
        name: dict.fromkeys(labels.get(name, []), 0) for name in names
    }
    nulls = dict.fromkeys(names, 0)
    if names:
        pairs = [
            F.struct(F.lit(name).alias(_COLUMN), bucket.alias(_BUCKET))
            for name, bucket in zip(names, buckets, strict=True)
        ]
        rows = (
            df.select(F.inline(F.array(*pairs)))
            .groupBy(_COLUMN, _BUCKET)
            .agg(F.count(F.lit(1)).alias(_COUNT))
            .collect()
        )
        for row in rows:
            if row[_BUCKET] is None:
                nulls[row[_COLUMN]] += row[_COUNT]
            else:
                counts[row[_COLUMN]][row[_BUCKET]] = row[_COUNT]
    for name in categorical:
        counts[name] = dict(sorted(counts[name].items()))
    return {name: Distribution(counts[name], nulls[name]) for name in names}


def _quoted(name: str) -> Column:
    """A column by its exact name: spaces, dots, backticks and unicode are not syntax."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _types(df: DataFrame) -> dict[str, DataType]:
    return {field.name: field.dataType for field in df.schema.fields}


def _known(name: str, types: Mapping[str, DataType]) -> str:
    if name not in types:
        raise ValueError(f"column {name!r} is not in the DataFrame; its columns: {sorted(types)}")
    return name


def _number(name: str, types: Mapping[str, DataType]) -> Column:
    """A numeric column as a double, NaN as null; raises if the column is not numeric."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    dtype = types[_known(name, types)]
    if not isinstance(dtype, NumericType):
        raise ValueError(f"column {name!r} is {dtype.simpleString()}, not a numeric type")
    value = _quoted(name).cast("double")
    return F.when(~F.isnan(value), value)


def _bin(value: Column, edges: Sequence[float], labels: Sequence[str]) -> Column:
    """The label of the bin ``value`` falls in (null for null)."""
    from pyspark.sql import functions as F

    bucket = F.when(value.isNull(), F.lit(None).cast("string"))
    for edge, label in zip(edges, labels, strict=False):
        bucket = bucket.when(value <= F.lit(edge), F.lit(label))
    return bucket.otherwise(F.lit(labels[-1]))
