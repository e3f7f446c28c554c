"""Delta per-file statistics: the ``stats`` JSON of an Add action (row count, null counts,
min/max per column), with bounds that are safe for readers to skip files by."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pyarrow as pa

# (least value, greatest value, null count) of one column of a file.
ColumnStats = tuple[Any, Any, int]

# Strings longer than this get a prefix as their lower bound and a just-greater string
# as their upper bound (Delta Spark's dataSkippingStringPrefixLength is 32 too).
_STRING_BOUND_CHARS = 32


def fold_column(stats: dict[str, ColumnStats], name: str, column: pa.ChunkedArray) -> None:
    """Fold one more piece of a file's column ``name`` into the file's ``stats``."""
    lo, hi = _min_max(column)
    old = stats.get(name)
    if old is not None:
        lo = old[0] if lo is None else (lo if old[0] is None else min(lo, old[0]))
        hi = old[1] if hi is None else (hi if old[1] is None else max(hi, old[1]))
        stats[name] = (lo, hi, old[2] + column.null_count)
    else:
        stats[name] = (lo, hi, column.null_count)


def stats_json(batch_stats: dict[str, ColumnStats], num_records: int) -> str:
    """Delta file statistics: row count, null counts, and min/max of every column that
    has values of a type with bounds (numbers, booleans, dates, timestamps, strings).

    A bound must never let a reader skip a file it must read: a long string's bounds are
    a prefix below and a just-greater string above, timestamps are rounded outwards to
    Delta's milliseconds. And a column must not go without bounds where it can have them:
    deltalake's ``to_pyarrow_dataset`` (1.x) turns a missing min or max into ``col >=
    null``, so any filter on that column skipped every file (``filestats_to_expression_next``
    in delta-rs's python/src/lib.rs).
    """
    mins, maxs, nulls = {}, {}, {}
    for name, (lo, hi, n_null) in batch_stats.items():
        nulls[name] = n_null
        # JSON has no infinity or NaN (and a NaN bound would be wrong anyway): no bound.
        finite = all(not isinstance(v, float) or math.isfinite(v) for v in (lo, hi))
        if lo is None or hi is None or not finite:
            continue
        lower, upper = _lower_bound(lo), _upper_bound(hi)
        if upper is not None:
            mins[name], maxs[name] = lower, upper
    return json.dumps(
        {"numRecords": num_records, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        default=str,
    )


def _min_max(column: pa.ChunkedArray) -> tuple[Any, Any]:
    """The least and greatest non-null values of ``column`` (None, None if it has none or
    its type gets no file statistics: binary, decimal, nested). A dictionary-encoded
    column gives its dictionary's range: it holds every value, so the range bounds them."""
    import pyarrow.compute as pc

    if column.null_count == len(column):
        return None, None
    if pa.types.is_dictionary(column.type):
        column = pa.chunked_array([c.dictionary for c in column.chunks], column.type.value_type)
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.string())
    type_ = column.type
    if not (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_date(type_)
        or pa.types.is_timestamp(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
    ):
        return None, None
    mm = pc.min_max(column)
    return mm["min"].as_py(), mm["max"].as_py()


def _lower_bound(value: Any) -> Any:
    """A JSON value for minValues that is <= ``value`` as readers compare it."""
    if isinstance(value, str):
        return value[:_STRING_BOUND_CHARS]
    if isinstance(value, dt.datetime):  # Delta keeps milliseconds: round down
        return _timestamp_stat(_floor_ms(value))
    return value


def _upper_bound(value: Any) -> Any:
    """A JSON value for maxValues that is >= ``value`` as readers compare it (None: none)."""
    if isinstance(value, str):
        if len(value) <= _STRING_BOUND_CHARS:
            return value
        # The prefix with its last character that can grow grown by one code point: greater
        # than every string that starts with the prefix (code point order = UTF-8 byte order).
        prefix = value[:_STRING_BOUND_CHARS]
        for i in range(len(prefix) - 1, -1, -1):
            code = ord(prefix[i]) + 1
            if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters
                code = 0xE000
            if code <= 0x10FFFF:
                return prefix[:i] + chr(code)
        return None
    if isinstance(value, dt.datetime):  # Delta keeps milliseconds: round up
        floor = _floor_ms(value)
        return _timestamp_stat(floor if floor == value else floor + dt.timedelta(milliseconds=1))
    return value


def _floor_ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _timestamp_stat(value: dt.datetime) -> str:
    """A timestamp as delta-rs writes it in file statistics: UTC with a Z, or (without a
    time zone, timestamp_ntz) local with a space."""
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
