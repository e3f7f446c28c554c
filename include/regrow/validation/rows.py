"""Row-level isolation: expectations marked ``row_level`` translated into Spark
predicates with GX's semantics (:func:`row_predicates`, the one place), so
:func:`split_invalid_rows` moves the rows that break them aside, with a reason, before the
table-level validation, and :func:`quarantine_records` shapes them for quarantine.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from regrow.catalog import INGEST_DATE, INGESTED_AT, RUN_ID, SOURCE_FILE, SOURCE_KIND
from regrow.validation.parameters import _resolve
from regrow.validation.suites import SuiteError

if TYPE_CHECKING:
    import great_expectations as gx
    from pyspark.sql import Column, DataFrame


@dataclass(frozen=True)
class RowPredicate:
    """A row-level expectation as Spark: ``violated`` is true on an offending row, and
    ``reason`` says why (``expect_column_values_to_be_in_set(is_fraud): 2 not in [0, 1]``)."""

    expectation: str
    column: str
    violated: Column
    reason: Column


def _config(expectation) -> tuple[str, dict[str, Any], dict[str, Any]]:
    config = expectation.configuration
    return config.type, dict(config.kwargs), dict(config.meta or {})


def row_predicates(
    suite: gx.ExpectationSuite, parameters: Mapping[str, Any] | None = None
) -> list[RowPredicate]:
    """Spark predicates for the suite's ``row_level`` expectations, with GX's semantics:
    a null is unexpected only to ``not_be_null``; ``in_set`` and ``between`` skip nulls."""
    from pyspark.sql import functions as F

    parameters = parameters or {}
    out = []
    for expectation in suite.expectations:
        kind, kwargs, meta = _config(expectation)
        if not meta.get("row_level"):
            continue
        name = f"{kind}({kwargs.get('column')})"
        if kwargs.get("mostly", 1) != 1:
            raise SuiteError(f"{suite.name}: {name} is row_level but allows failures (mostly)")
        if kind not in _ROW_PREDICATES:
            raise SuiteError(
                f"{suite.name}: {name} is row_level but has no row predicate "
                f"(supported: {sorted(_ROW_PREDICATES)})"
            )
        kwargs = {k: _resolve(v, parameters, f"{suite.name}: {name}") for k, v in kwargs.items()}
        violated, why = _ROW_PREDICATES[kind](kwargs)
        out.append(
            RowPredicate(kind, kwargs["column"], violated, F.concat(F.lit(f"{name}: "), why))
        )
    return out


def _null_row(kwargs: dict[str, Any]) -> tuple[Column, Column]:
    from pyspark.sql import functions as F

    return F.col(f"`{kwargs['column']}`").isNull(), F.lit("null")


def _in_set_row(kwargs: dict[str, Any], negate: bool = False) -> tuple[Column, Column]:
    from pyspark.sql import functions as F

    col, values = F.col(f"`{kwargs['column']}`"), list(kwargs["value_set"])
    inside = col.isin(values)
    shown = f" {'in' if negate else 'not in'} {json.dumps(values, default=str)}"
    return col.isNotNull() & (inside if negate else ~inside), F.concat(
        col.cast("string"), F.lit(shown)
    )


def _between_row(kwargs: dict[str, Any]) -> tuple[Column, Column]:
    from pyspark.sql import functions as F

    col = F.col(f"`{kwargs['column']}`")
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    strict_min, strict_max = kwargs.get("strict_min", False), kwargs.get("strict_max", False)
    outside = []
    if low is not None:
        outside.append(col <= F.lit(low) if strict_min else col < F.lit(low))
    if high is not None:
        outside.append(col >= F.lit(high) if strict_max else col > F.lit(high))
    if not outside:
        raise SuiteError(f"between({kwargs['column']}) has neither min_value nor max_value")
    interval = "{}{}, {}{}".format(
        "(" if strict_min or low is None else "[",
        "-inf" if low is None else _shown(low),
        "+inf" if high is None else _shown(high),
        ")" if strict_max or high is None else "]",
    )
    violated = outside[0] if len(outside) == 1 else outside[0] | outside[1]
    return col.isNotNull() & violated, F.concat(col.cast("string"), F.lit(f" not in {interval}"))


# Expectation type -> (violated, why) builder; the one translation of GX row semantics.
_ROW_PREDICATES: dict[str, Callable[[dict[str, Any]], tuple[Column, Column]]] = {
    "expect_column_values_to_not_be_null": _null_row,
    "expect_column_values_to_be_in_set": _in_set_row,
    "expect_column_values_to_not_be_in_set": lambda kwargs: _in_set_row(kwargs, negate=True),
    "expect_column_values_to_be_between": _between_row,
}


def _shown(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return (
            value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value.tzinfo else str(value)
        )
    return str(value)


def split_invalid_rows(
    df: DataFrame,
    suite: gx.ExpectationSuite,
    parameters: Mapping[str, Any] | None = None,
    checkpoint: bool = True,
) -> tuple[DataFrame, DataFrame]:
    """Split ``df`` into (good rows, bad rows + ``reason``) by the suite's row-level
    expectations, evaluated together in one pass.

    ``reason`` joins every broken expectation of the row with ``"; "``. With ``checkpoint``
    the flagged rows are materialised once (``localCheckpoint``), so writing both halves and
    validating the good one do not recompute ``df``.
    """
    from pyspark.sql import functions as F

    predicates = row_predicates(suite, parameters)
    if not predicates:
        return df, df.limit(0).withColumn("reason", F.lit(None).cast("string"))
    reasons = F.filter(
        F.array(*[F.when(p.violated, p.reason) for p in predicates]), lambda r: r.isNotNull()
    )
    flagged = df.withColumn("__reasons", reasons)
    if checkpoint:
        flagged = flagged.localCheckpoint(eager=True)
    good = flagged.where(F.size("__reasons") == 0).drop("__reasons")
    bad = flagged.where(F.size("__reasons") > 0).select(
        *[F.col(f"`{c}`") for c in df.columns], F.array_join("__reasons", "; ").alias("reason")
    )
    return good, bad


def quarantine_records(bad: DataFrame, source_kind: str, day: dt.date, run_id: str) -> DataFrame:
    """Bad rows from :func:`split_invalid_rows` shaped as ``bronze.quarantine`` rows."""
    from pyspark.sql import functions as F

    data = [c for c in bad.columns if c != "reason"]
    source = F.col(SOURCE_FILE) if SOURCE_FILE in bad.columns else F.lit(None).cast("string")
    return bad.select(
        F.lit(source_kind).alias(SOURCE_KIND),
        source.alias("source_file"),
        F.col("reason"),
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in data])).alias("record"),
        F.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).cast("timestamp").alias(INGESTED_AT),
        F.lit(run_id).alias(RUN_ID),
        F.lit(day).alias(INGEST_DATE),
    )
