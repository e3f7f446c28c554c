"""regrow.storage.file_stats: the Delta statistics the delta-rs writer puts in each Add action.

Pure functions of Arrow columns, no Spark. A bound must never let a reader skip a file it must
read, so these check each type's bounds against the values they stand for. (The integration
tests check the same statistics end to end: in the log, and pruning by deltalake.)
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from regrow.storage.file_stats import fold_column, stats_json


def stats_of(num_records: int, **columns: list[pa.Array]) -> dict:
    """The parsed stats JSON of a file whose columns arrived as these pieces (batches)."""
    stats: dict = {}
    for name, pieces in columns.items():
        for piece in pieces:
            fold_column(stats, name, pa.chunked_array([piece]))
    return json.loads(stats_json(stats, num_records))


def bounds(stats: dict, column: str) -> tuple:
    return stats["minValues"].get(column), stats["maxValues"].get(column)


def test_integers_are_bounded_over_every_batch_of_the_file_and_nulls_counted():
    stats = stats_of(
        6,
        n=[pa.array([5, None, 3], pa.int32()), pa.array([None, 7, None], pa.int32())],
        m=[pa.array([None, None, None], pa.int64()), pa.array([-2, 4, 0], pa.int64())],
    )

    assert stats["numRecords"] == 6
    assert bounds(stats, "n") == (3, 7)
    # A batch of nulls leaves the other batch's bounds as they are.
    assert bounds(stats, "m") == (-2, 4)
    assert stats["nullCount"] == {"n": 3, "m": 3}


def test_an_all_null_column_has_no_bounds_but_its_null_count():
    stats = stats_of(3, s=[pa.array([None, None]), pa.array([None], pa.string())])

    assert "s" not in stats["minValues"] and "s" not in stats["maxValues"]
    assert stats["nullCount"]["s"] == 3


@pytest.mark.parametrize(
    "values",
    [
        [float("nan"), float("nan")],
        [float("nan"), 1.0, float("inf")],
        [float("-inf"), 2.0],
    ],
    ids=["all-nan", "nan-and-infinity", "minus-infinity"],
)
def test_a_double_column_with_a_non_finite_bound_gets_no_bounds(values):
    stats = stats_of(len(values) + 1, x=[pa.array([*values, None], pa.float64())])

    assert bounds(stats, "x") == (None, None)
    assert stats["nullCount"]["x"] == 1


def test_finite_doubles_are_bounded_exactly():
    stats = stats_of(3, x=[pa.array([0.25, -1.5]), pa.array([1e300])])

    assert bounds(stats, "x") == (-1.5, 1e300)


def test_a_long_string_gets_a_prefix_below_and_a_just_greater_string_above():
    long_text = "ü" * 40 + "z"  # 2 bytes a character in UTF-8; more than the 32 kept
    stats = stats_of(2, s=[pa.array(["éa" * 20, long_text])])

    lower, upper = bounds(stats, "s")
    assert lower == ("éa" * 20)[:32]
    assert upper == "ü" * 31 + "ý"  # the 32nd character grown by one code point
    assert lower <= "éa" * 20 and long_text < upper
    # Above every string with the same 32-character prefix, however it continues.
    assert "ü" * 32 + "\U0010ffff" * 5 < upper
    assert upper.encode() > ("ü" * 32 + "\U0010ffff").encode()  # UTF-8 byte order too


def test_strings_of_32_characters_or_fewer_are_their_own_bounds():
    exact = "a" * 31 + "ß"
    stats = stats_of(2, s=[pa.array(["b", exact])])

    assert bounds(stats, "s") == (exact, "b")


def test_an_upper_bound_skips_characters_that_cannot_grow_and_surrogates():
    top = "\U0010ffff"
    stats = stats_of(
        1,
        grow_earlier=[pa.array(["ab" + top * 30 + "tail"])],
        skip_surrogates=[pa.array(["x" * 31 + "\ud7ff" + "tail"])],
        none=[pa.array([top * 33])],
    )

    # The last characters are U+10FFFF: the one before them grows ("b" -> "c").
    assert bounds(stats, "grow_earlier")[1] == "ac"
    # U+D7FF + 1 is a surrogate, no character: the next character is U+E000.
    assert bounds(stats, "skip_surrogates")[1] == "x" * 31 + "\ue000"
    # No string is greater than every one that starts with 32 x U+10FFFF: no bounds at all.
    assert bounds(stats, "none") == (None, None)
    assert stats["nullCount"]["none"] == 0


def test_booleans_and_dates_are_bounded():
    stats = stats_of(
        4,
        flag=[pa.array([True, None]), pa.array([False, True])],
        day=[pa.array([dt.date(2026, 3, 2), dt.date(2025, 12, 31), None, dt.date(2026, 1, 1)])],
    )

    assert bounds(stats, "flag") == (False, True)
    assert bounds(stats, "day") == ("2025-12-31", "2026-03-02")


def test_timestamps_are_rounded_outwards_to_milliseconds_in_delta_rs_format():
    def ts(*values, tz=None):
        return pa.array(list(values), pa.timestamp("us", tz=tz))

    paris = dt.timezone(dt.timedelta(hours=1))
    stats = stats_of(
        2,
        # timestamp_ntz: local time, a space, no zone.
        ntz=[ts(dt.datetime(2026, 3, 1, 10, 0, 0, 999_001), dt.datetime(2026, 3, 1, 9, 0, 0, 1))],
        # A zone other than UTC: written in UTC with a Z.
        paris=[ts(dt.datetime(2026, 3, 1, 10, 0, 0, 500, tzinfo=paris), tz="Europe/Paris")],
        # Whole milliseconds are their own bounds (not rounded up a millisecond).
        exact=[ts(dt.datetime(2026, 3, 1, 10, 0, 0, 123_000, tzinfo=dt.UTC), tz="UTC")],
    )

    assert bounds(stats, "ntz") == ("2026-03-01 09:00:00.000", "2026-03-01 10:00:01.000")
    assert bounds(stats, "paris") == ("2026-03-01T09:00:00.000Z", "2026-03-01T09:00:00.001Z")
    assert bounds(stats, "exact") == ("2026-03-01T10:00:00.123Z", "2026-03-01T10:00:00.123Z")


def test_a_dictionary_column_is_bounded_by_its_dictionary():
    column = pa.DictionaryArray.from_arrays(
        pa.array([1, 1, None], pa.int32()), pa.array(["apple", "mango", "zucchini"])
    )
    stats = stats_of(3, kind=[column])

    # Every value is in the dictionary, so its range bounds them (unused entries widen it).
    assert bounds(stats, "kind") == ("apple", "zucchini")
    assert stats["nullCount"]["kind"] == 1


def test_types_without_bounds_keep_their_null_count():
    stats = stats_of(
        2,
        blob=[pa.array([b"\x00", None])],
        price=[pa.array([Decimal("1.10"), None], pa.decimal128(5, 2))],
        tags=[pa.array([["a"], None])],
    )

    assert stats["minValues"] == {} and stats["maxValues"] == {}
    assert stats["nullCount"] == {"blob": 1, "price": 1, "tags": 1}
