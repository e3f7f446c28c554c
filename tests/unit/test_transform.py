"""regrow.data.trainset's pandas half: the Transform fitted on train, the time split, class
balance and the leakage checks, on small hand-made frames."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from regrow.data.trainset import LeakageError, TrainsetError, balance, check_leakage, split_by_time
from regrow.data.transform import Transform
from regrow.settings import SplitSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
DATASET = load_settings(REPO / "params.yaml").dataset
UTC = dt.UTC
CUTOFF = dt.date(2026, 1, 6)


def at(day: int, hour: int = 0) -> pd.Timestamp:
    return pd.Timestamp(2026, 1, day, hour, tz=UTC)


def rows(*values: tuple) -> pd.DataFrame:
    """(id, card, event time, label, label time, status) -> a training-set frame."""
    columns = ["transaction_id", "card_id", "event_time", "is_fraud", "label_time", "label_status"]
    frame = pd.DataFrame(list(values), columns=columns)
    frame["event_date"] = frame["event_time"].dt.date
    return frame


# ------------------------------------------------------------------------- transform
def test_transform_statistics_come_from_the_frame_it_is_fitted_on():
    train = pd.DataFrame(
        {
            "amount": [1.0, 2.0, 6.0, None, 2.0, 1.0],
            "card_present": [True, False, True, True, None, True],
            "channel": ["online", "pos", "pos", "online", "pos", None],
        }
    )
    test = pd.DataFrame(
        {"amount": [1000.0, None], "card_present": [False, None], "channel": ["mobile", None]}
    )

    transform = Transform.fit(train, ["amount", "card_present"], ["channel"], rare_min_count=2)

    assert transform.numeric["amount"] == pytest.approx(
        {"median": 2.0, "mean": 2.4, "std": math.sqrt(3.44)}
    )
    assert transform.numeric["card_present"] == pytest.approx(
        {"median": 1.0, "mean": 0.8, "std": 0.4}
    )
    # pos 3, online 2: kept, most frequent first; a missing value (once) is rare.
    assert transform.categorical["channel"] == {"codes": {"pos": 0, "online": 1}, "rare_code": 2}
    out = transform.apply(test)
    assert out["amount"].tolist() == pytest.approx(
        [(1000 - 2.4) / math.sqrt(3.44), (2.0 - 2.4) / math.sqrt(3.44)]
    )
    assert out["card_present"].tolist() == pytest.approx([-2.0, 0.5])
    assert out["channel"].tolist() == [2.0, 2.0]  # unseen in train, and missing: rare
    assert transform.rare(test) == {"channel": 2}
    assert transform.apply(train)["channel"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 2.0]


def test_transform_survives_its_json_and_degenerate_columns():
    train = pd.DataFrame({"flat": [3.0, 3.0], "empty": [None, None], "c": ["a", "b"]})
    transform = Transform.fit(train, ["flat", "empty"], ["c"], rare_min_count=1)

    assert transform.numeric["flat"] == {"median": 3.0, "mean": 3.0, "std": 1.0}
    assert transform.numeric["empty"] == {"median": 0.0, "mean": 0.0, "std": 1.0}
    assert transform.categorical["c"]["codes"] == {"a": 0, "b": 1}  # a tie: by value
    again = Transform.from_dict(json.loads(json.dumps(transform.to_dict())))
    frame = pd.DataFrame({"flat": [5.0], "empty": [1.0], "c": ["b"]})
    assert again.apply(frame).equals(transform.apply(frame))
    with pytest.raises(TrainsetError, match=r"columns \['c'\] the transform was fitted on"):
        transform.apply(frame.drop(columns="c"))


# ------------------------------------------------------------------------ split, balance
def test_matrix_of_arrow_rows_equals_apply_of_their_pandas_frame():
    train = pd.DataFrame({
        "amount": [1.5, 2.0, 6.0, None, 2.0, 9.0],
        "count": [1, 2, 3, 4, 5, 6],
        "present": [True, False, True, True, False, True],
        "city": ["Zürich", "東京", "東京", "Lyon", "Zürich", "東京"],
        "mcc": [5411, 5411, 7995, 7995, 7995, 1234],
        "flag": [True, True, False, False, True, True],
    })  # fmt: skip
    transform = Transform.fit(
        train, ["amount", "count", "present"], ["city", "mcc", "flag"], rare_min_count=2
    )
    rows = pa.table({
        "amount": pa.array([None, float("nan"), 3.25, -1e9, 2.0], pa.float64()),
        "count": pa.array([7, None, 0, 2, 1], pa.int32()),
        "present": [None, True, False, True, False],
        "city": pa.array(["Atlantis", None, "東京", "Zürich", "Lyon"], pa.large_string()),
        "mcc": pa.array([5411, None, 7995, 9999, 1234], pa.int64()),  # a number as a category
        "flag": [True, None, False, True, False],
        "extra": ["not", "a", "model", "input", "!"],
    })  # fmt: skip

    got = transform.matrix(rows)

    expected = transform.apply(rows.to_pandas()).to_numpy(np.float32)
    assert got.dtype == np.float32 and got.shape == (5, 6)
    np.testing.assert_array_equal(got, expected)
    # Unseen ("Atlantis", 9999) and missing values get the rare code, as in apply.
    assert got[:, 3].tolist() == [transform.categorical["city"]["rare_code"], 2.0, 0.0, 1.0, 2.0]
    dictionary = rows.set_column(3, "city", rows["city"].cast(pa.string()).dictionary_encode())
    np.testing.assert_array_equal(transform.matrix(dictionary), got)
    with pytest.raises(TrainsetError, match=r"\['mcc'\] the transform was fitted on"):
        transform.matrix(rows.drop_columns(["mcc"]))


def test_split_by_time_takes_whole_days_newest_last_whatever_the_row_order():
    frame = rows(
        *(
            (f"t{day}{hour}", "c1", at(day, hour), 0, at(day + 2, hour), "window_closed")
            for day in (4, 2, 5, 1, 3)
            for hour in (20, 8)
        )
    )
    cfg = SplitSettings(test_days=1, validation_days=2)

    splits = split_by_time(frame, cfg, DATASET)

    assert {name: split["transaction_id"].tolist() for name, split in splits.items()} == {
        "train": ["t18", "t120", "t28", "t220"],
        "validation": ["t38", "t320", "t48", "t420"],
        "test": ["t58", "t520"],
    }
    with pytest.raises(
        TrainsetError,
        match=r"cover 5 day\(s\) \(2026-01-01..2026-01-05\); a time split needs at least 6 "
        r"\(split.test_days=1 \+ split.validation_days=4 \+ 1 for train\)",
    ):
        split_by_time(frame, SplitSettings(test_days=1, validation_days=4), DATASET)


def training_split() -> pd.DataFrame:
    """Two positives, six negatives, one an hour."""
    return rows(
        *((f"t{i}", "c1", at(1, i), int(i in (2, 5)), at(3, i), "window_closed") for i in range(8))
    )


def test_undersampling_keeps_every_positive_and_a_seeded_choice_of_negatives():
    train = training_split()
    cfg = SplitSettings(balance="undersample", balance_ratio=1.5, seed=7)

    out = balance(train, cfg, DATASET)

    assert out["is_fraud"].tolist().count(1) == 2
    assert out["is_fraud"].tolist().count(0) == 3
    assert out["event_time"].is_monotonic_increasing
    assert set(out["transaction_id"]) <= set(train["transaction_id"])
    assert balance(train, cfg, DATASET).equals(out)  # the same seed, the same rows
    seeds = {
        tuple(balance(train, cfg.model_copy(update={"seed": s}), DATASET)["transaction_id"])
        for s in range(10)
    }
    assert len(seeds) > 1


def test_oversampling_repeats_positives_and_none_changes_nothing():
    train = training_split()

    out = balance(train, SplitSettings(balance="oversample", balance_ratio=2.0), DATASET)

    assert (out["is_fraud"] == 1).sum() == 3  # 6 negatives / 2
    assert out.loc[out["is_fraud"] == 0, "transaction_id"].tolist() == [
        "t0", "t1", "t3", "t4", "t6", "t7",
    ]  # fmt: skip
    assert set(out.loc[out["is_fraud"] == 1, "transaction_id"]) <= {"t2", "t5"}
    assert balance(train, SplitSettings(balance="none"), DATASET) is train
    with pytest.raises(TrainsetError, match="the training split has a single class"):
        balance(train[train["is_fraud"] == 0], SplitSettings(balance="oversample"), DATASET)


# ------------------------------------------------------------------------------ leakage
def clean_splits() -> dict[str, pd.DataFrame]:
    """A set that knows nothing of the future: the test event's window closes exactly at
    the cut-off (2026-01-06 00:00)."""
    return {
        "train": rows(
            ("t1", "c1", at(1, 10), 0, at(3, 10), "window_closed"),
            ("t2", "c2", at(2, 10), 1, at(2, 12), "arrived"),
        ),
        "validation": rows(("v1", "c1", at(3, 10), 0, at(5, 10), "window_closed")),
        "test": rows(("s1", "c2", at(4, 0), 0, at(6, 0), "window_closed")),
    }


def _set(split: str, row: int, **values):
    def change(splits: dict[str, pd.DataFrame]) -> None:
        for column, value in values.items():
            splits[split].loc[row, column] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set("test", 0, event_time=at(6, 0)),
            r"test: 1 event\(s\) at or after the cut-off 2026-01-06 00:00:00\+00:00, e.g. s1",
        ),
        (
            _set("train", 1, label_time=at(6, 0)),
            r"train: 1 label\(s\) that arrived after the cut-off .*, e.g. t2 labelled at "
            r"2026-01-06 00:00:00\+00:00",
        ),
        (
            _set("test", 0, label_time=at(6, 1)),
            r"test: 1 label\(s\) that arrived after the cut-off",
        ),
        (
            _set("validation", 0, is_fraud=None, label_time=None, label_status="unknown"),
            r"validation: 1 row\(s\) whose label was not known at the cut-off",
        ),
        (
            _set("validation", 0, transaction_id="t1"),
            r"train and validation share 1 event id\(s\) and 0 entity-time key\(s\), e.g. t1",
        ),
        (
            _set("test", 0, card_id="c1", event_time=at(3, 10)),
            r"validation and test share 0 event id\(s\) and 1 entity-time key\(s\)",
        ),
        (
            _set("train", 1, event_time=at(3, 10)),
            r"train ends at 2026-01-03 10:00:00\+00:00, not before validation starts at "
            r"2026-01-03 10:00:00\+00:00",
        ),
    ],
    ids=[
        "event-after-cutoff",
        "label-after-cutoff",
        "closed-window-after-cutoff",
        "unknown-label",
        "shared-event-id",
        "shared-entity-time",
        "train-not-before-validation",
    ],
)
def test_check_leakage_fails_loudly_on_each_kind_of_leak(change, message):
    splits = clean_splits()
    check_leakage(splits, DATASET, CUTOFF)  # the clean set passes

    change(splits)

    with pytest.raises(LeakageError, match=message):
        check_leakage(splits, DATASET, CUTOFF)


def test_check_leakage_reads_naive_timestamps_as_utc_and_lists_every_leak():
    splits = clean_splits()
    for frame in splits.values():
        for column in ("event_time", "label_time"):
            frame[column] = frame[column].dt.tz_localize(None)  # as Spark hands them over
    check_leakage(splits, DATASET, CUTOFF)
    splits["test"].loc[0, "event_time"] = pd.Timestamp(2026, 1, 6, 0)
    splits["validation"].loc[0, "transaction_id"] = "t1"

    with pytest.raises(LeakageError) as err:
        check_leakage(splits, DATASET, CUTOFF)
    assert str(err.value).count("\n  - ") == 2
