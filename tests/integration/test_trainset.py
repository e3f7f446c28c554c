"""Training sets on real Spark and real Delta tables: only what was known before the
cut-off, split by time, statistics of the training split; bad dates and missing days named."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regrow.cli import app
from regrow.data.features import build_features
from regrow.data.labels import build_labels
from regrow.data.trainset import TrainsetError, build_trainset, load_trainset
from regrow.settings import Settings, load_settings
from regrow.storage.lakehouse import MissingPartitionError
from tests.bronze_rows import at, event, label, write_events, write_labels
from tests.conftest import context_of, lakehouse_of, write_params

D1, D2, D3, D4, D5, D6 = (dt.date(2026, 1, d) for d in range(1, 7))
SECTIONS = {
    "dataset": {"label_delay_days": 1},
    "features": {"windows": ["1h", "24h"], "sum_columns": ["amount"], "ratio_columns": ["amount"]},
    "split": {"window_days": 5, "test_days": 1, "validation_days": 1, "rare_category_min_count": 1},
}
DERIVED = [
    "prior_events_1h",
    "prior_events_24h",
    "amount_prior_sum_24h",
    "seconds_since_prior_event",
]


def day_events(day: dt.date) -> list[dict]:
    """Four events a day, two cards; the amount says when (day 3, 14:00 -> 44.0)."""
    return [
        event(f"e{day.day}-{hour:02d}", card, at(day, hour), amount=day.day * 10.0 + hour)
        for hour, card in ((6, "c1"), (10, "c2"), (14, "c1"), (18, "c2"))
    ]


def closing_event() -> dict:
    """e4-00, at midnight of the 4th: the only jewelry purchase."""
    return event("e4-00", "c1", at(D4, 0), amount=40.0, merchant_category="jewelry")


def features_by_event(lakehouse) -> dict[str, tuple]:
    rows = lakehouse.sql(f"SELECT transaction_id, {', '.join(DERIVED)} FROM silver.features")
    return {r["transaction_id"]: tuple(r[c] for c in DERIVED) for r in rows.to_pylist()}


def with_split(settings: Settings, **values) -> Settings:
    return settings.model_copy(update={"split": settings.split.model_copy(update=values)})


def labelled(trainset) -> dict[str, dict[str, tuple]]:
    """Per split, each event's label and label status, read back from the snapshot."""
    splits, _, _ = load_trainset(trainset.path)
    return {
        name: {r.transaction_id: (r.is_fraud, r.label_status) for r in frame.itertuples()}
        for name, frame in splits.items()
    }


@pytest.fixture(scope="module")
def five_days(spark, tmp_path_factory) -> Settings:
    """bronze.events of 2026-01-01..05 (four a day, and e4-00 at midnight of the 4th) and
    three labels landed before 2026-01-06; silver.features and silver.labels of every day.
    With 1-day label windows, the events of 2026-01-01..04 have matured by 2026-01-06."""
    settings = load_settings(write_params(tmp_path_factory.mktemp("five_days"), **SECTIONS))
    lh = lakehouse_of(settings)
    days = [D1, D2, D3, D4, D5]
    write_events(
        spark, lh, settings.dataset, [e for d in days for e in day_events(d)] + [closing_event()]
    )
    write_labels(
        spark,
        lh,
        settings.dataset,
        [
            label("e1-10", "c2", at(D2, 9)),
            label("e3-14", "c1", at(D4, 8)),
            label("e5-06", "c1", at(D5, 20)),  # arrived, but its window is still open
        ],
    )
    for day in days:
        build_features(context_of(settings, spark, "run-1", lh), day)
    for day in (D2, D4, D5):
        build_labels(context_of(settings, spark, "run-1", lh), day)
    return settings


def test_matured_events_split_by_day_with_statistics_of_the_training_split(
    spark, five_days, tmp_path
):
    trainset = build_trainset(
        context_of(five_days, spark, lakehouse=lakehouse_of(five_days)), output_dir=tmp_path
    )

    m = trainset.manifest
    assert m["cutoff_date"] == str(D6)  # the day after the newest day of silver.features
    assert labelled(trainset) == {
        "train": {
            **{e["transaction_id"]: (0, "window_closed") for e in day_events(D1) + day_events(D2)},
            "e1-10": (1, "arrived"),
        },
        "validation": {
            **{e["transaction_id"]: (0, "window_closed") for e in day_events(D3)},
            "e3-14": (1, "arrived"),
        },
        "test": {
            e["transaction_id"]: (0, "window_closed") for e in [closing_event(), *day_events(D4)]
        },
    }
    assert m["candidates"] == {
        "events": 21,
        "arrived": 2,
        "arrived_excluded": 1,  # e5-06
        "unknown_excluded": 3,  # the other events of 2026-01-05
        "window_closed": 15,
    }
    # Train amounts 16, 20, 24, 28, 26, 30, 34, 38; validation and test would move them.
    amount = trainset.transform.numeric["amount"]
    assert amount == pytest.approx({"median": 27.0, "mean": 27.0, "std": math.sqrt(45)})
    assert trainset.transform.categorical["merchant_category"] == {
        "codes": {"grocery": 0},
        "rare_code": 1,
    }
    assert m["rare_or_unseen_categories"]["test"] == {
        "merchant_category": 1,
        "channel": 0,
        "country": 0,
    }
    splits, _, transform = load_trainset(trainset.path)
    # The snapshot keeps raw values.
    assert splits["test"]["amount"].tolist() == [40.0, 46.0, 50.0, 54.0, 58.0]
    inputs = transform.apply(splits["test"].head(1))
    assert inputs["merchant_category"].tolist() == [1.0]
    assert inputs["amount"].tolist() == pytest.approx([(40 - 27) / math.sqrt(45)])


def test_balancing_changes_only_the_training_split(spark, five_days, tmp_path):
    undersample = with_split(five_days, balance="undersample", balance_ratio=1.0)

    trainset = build_trainset(
        context_of(undersample, spark, lakehouse=lakehouse_of(five_days)), output_dir=tmp_path
    )

    splits = labelled(trainset)
    assert splits["train"]["e1-10"] == (1, "arrived")
    assert sorted(label for label, _ in splits["train"].values()) == [0, 1]
    assert set(splits["validation"]) == {e["transaction_id"] for e in day_events(D3)}
    assert set(splits["test"]) == {e["transaction_id"] for e in [closing_event(), *day_events(D4)]}
    assert trainset.manifest["balance"] == {"method": "undersample", "train_rows_before": 8}


def test_a_future_event_and_a_late_label_reach_neither_features_nor_the_training_set(
    spark, five_days, tmp_path
):
    shutil.copytree(five_days.resolve(five_days.lakehouse.root), tmp_path / "lakehouse")
    settings = load_settings(write_params(tmp_path, **SECTIONS))
    lh, dataset = lakehouse_of(settings), settings.dataset
    features_before = features_by_event(lh)
    before = build_trainset(
        context_of(settings, spark, lakehouse=lh), cutoff=D6, output_dir=tmp_path / "before"
    )

    # Planted: later events of card c1 (the same day, and after the cut-off), and a label
    # that arrives after the cut-off, for e5-10, whose window is still open. (A label
    # landing after the cut-off for a closed window, e4-00's, would belong to no event of
    # its landing day's 1-day window: ingest quarantines it.)
    write_events(
        spark,
        lh,
        dataset,
        [event("e5-23", "c1", at(D5, 23), amount=999.0), event("e6-05", "c1", at(D6, 5), 999.0)],
    )
    write_labels(spark, lh, dataset, [label("e5-10", "c2", at(D6, 7))])
    for day in (D5, D6):
        build_features(context_of(settings, spark, "run-2", lh), day)
    build_labels(context_of(settings, spark, "run-2", lh), D6)

    features_after = features_by_event(lh)
    assert {k: v for k, v in features_after.items() if k in features_before} == features_before
    # The planted events do see the earlier ones: they are in the same card's history.
    assert features_after["e5-23"][:2] == (0, 2)  # e5-06, e5-14
    assert features_after["e6-05"][:2] == (0, 3)  # e5-06, e5-14, e5-23

    after = build_trainset(
        context_of(settings, spark, lakehouse=lh), cutoff=D6, output_dir=tmp_path / "after"
    )

    assert lh.partition_rows("silver.features")[str(D5)] == 5  # replaced: 4 + e5-23
    assert after.manifest["content_hash"] == before.manifest["content_hash"]
    assert labelled(after)["test"]["e4-00"] == (0, "window_closed")
    assert after.manifest["candidates"]["events"] == 22  # e5-23; e6-05 is after the cut-off

    # Taking younger events whose label has arrived: e5-06 now, e5-10 still not.
    arrived = with_split(settings, matured="label_arrived")
    recent = build_trainset(
        context_of(arrived, spark, lakehouse=lh), cutoff=D6, output_dir=tmp_path / "arrived"
    )

    splits = labelled(recent)
    assert splits["validation"]["e4-00"] == (0, "window_closed")
    assert splits["test"] == {"e5-06": (1, "arrived")}
    assert recent.manifest["candidates"]["unknown_excluded"] == 4  # e5-10 among them


def test_the_trainset_command_prints_the_splits_or_one_clear_line(spark, five_days, tmp_path):
    params = str(Path(five_days.base_dir) / "params.yaml")

    built = CliRunner().invoke(app, ["trainset", "--params", params, "--output", str(tmp_path)])
    refused = CliRunner().invoke(app, ["trainset", "--params", params, "--cutoff", "2025-12-01"])

    assert built.exit_code == 0, built.output
    lines = built.output.splitlines()
    assert lines[0] == (
        f"training set of cut-off 2026-01-06 (window 2026-01-01..2026-01-05) -> {tmp_path}"
    )
    assert [line.split() for line in lines[1:4]] == [
        ["train", "8", "rows", "label", "rate", "0.1250", "2026-01-01..2026-01-02"],
        ["validation", "4", "rows", "label", "rate", "0.2500", "2026-01-03..2026-01-03"],
        ["test", "5", "rows", "label", "rate", "0.0000", "2026-01-04..2026-01-04"],
    ]
    assert (tmp_path / "manifest.json").is_file()
    assert refused.exit_code == 1
    assert "error: window 2025-11-26..2025-11-30 (cut-off 2025-12-01, 5 days) is outside" in (
        refused.output
    )


@pytest.fixture(scope="module")
def gappy(spark, tmp_path_factory):
    """bronze.events of 2026-01-01..03 and labels landed on 2026-01-03; silver.features of
    the 1st and 3rd only, silver.labels not built."""
    settings = load_settings(write_params(tmp_path_factory.mktemp("gappy"), **SECTIONS))
    lh = lakehouse_of(settings)
    write_events(spark, lh, settings.dataset, [e for d in (D1, D2, D3) for e in day_events(d)])
    write_labels(spark, lh, settings.dataset, [label("e1-10", "c2", at(D3, 9))])
    for day in (D1, D3):
        build_features(context_of(settings, spark, "run-1", lh), day)
    return settings, lh


@pytest.mark.parametrize(
    ("cutoff", "message"),
    [
        (
            D2,
            r"cut-off 2026-01-02: none of the 4 events of 2026-01-01..2026-01-01 has a matured "
            r"label .* events of 2026-01-01 mature from 2026-01-03 on",
        ),
        (
            dt.date(2025, 12, 1),
            r"window 2025-11-26..2025-11-30 \(cut-off 2025-12-01, 5 days\) is outside the data: "
            r"silver.features has 2026-01-01..2026-01-03",
        ),
        (
            dt.date(2026, 1, 10),
            r"cut-off 2026-01-10 is after the newest day of silver.features \(2026-01-03\): "
            r"events and labels of 2026-01-04..2026-01-09 are not known",
        ),
    ],
    ids=["no-matured-label", "before-the-data", "after-the-data"],
)
def test_a_cutoff_the_data_cannot_serve_names_the_dates(spark, gappy, tmp_path, cutoff, message):
    settings, lh = gappy
    with pytest.raises(TrainsetError, match=message):
        build_trainset(
            context_of(settings, spark, lakehouse=lh), cutoff=cutoff, output_dir=tmp_path
        )
    assert not (tmp_path / "manifest.json").exists()


def test_a_day_missing_in_silver_names_the_partition(spark, gappy, tmp_path):
    settings, lh = gappy
    with pytest.raises(
        MissingPartitionError, match="silver.features has no partition event_date=2026-01-02 "
    ):
        build_trainset(context_of(settings, spark, lakehouse=lh), cutoff=D4, output_dir=tmp_path)
    last_day = with_split(settings, window_days=1)
    with pytest.raises(
        TrainsetError,
        match=r"silver.labels has no partition label_date=2026-01-03 .*regrow labels --date 2026-01-03",
    ):
        build_trainset(context_of(last_day, spark, lakehouse=lh), cutoff=D4, output_dir=tmp_path)
