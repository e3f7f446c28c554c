"""Ingest on real Spark and real Delta tables: nothing lost, reruns idempotent, bad rows
quarantined with a reason."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from regrow.catalog import EVENTS, LABELS, QUARANTINE
from regrow.data import simulate
from regrow.data.ingest import IngestError, ingest_day
from regrow.storage.lakehouse import Lakehouse, LakehouseError
from tests.conftest import context_of, lakehouse_of, quarantined

DAY0 = dt.date(2026, 1, 1)


def land(settings, days: int) -> simulate.SimulationSummary:
    return simulate.write_landing(
        settings.dataset,
        settings.simulator,
        settings.landing,
        settings.resolve(settings.landing.path),
        days,
    )


def counts(lh: Lakehouse, table: str, column: str) -> dict[str, int]:
    rows = lh.sql(
        f"SELECT CAST({column} AS VARCHAR) d, count(*) n FROM {table} GROUP BY 1"
    ).to_pylist()
    return {r["d"]: r["n"] for r in rows}


def _record_id(record: str) -> str:
    """The event id of a quarantined record: JSON of its fields, or the raw line if malformed."""
    return json.loads(record)["transaction_id"] if record.startswith("{") else record.split(",")[0]


@pytest.fixture
def stable(make_settings):
    settings = make_settings(simulator={"days": 3, "events_per_day": 300, "n_entities": 200})
    land(settings, 3)
    return settings


def test_clean_days_land_every_row_in_bronze_and_reruns_are_idempotent(spark, stable):
    lh = lakehouse_of(stable)
    reports = [
        ingest_day(context_of(stable, spark, lakehouse=lh), DAY0 + dt.timedelta(days=i))
        for i in range(3)
    ]
    truth = json.loads(Path(stable.resolve(stable.landing.path), "_scenario.json").read_text())

    for report, day in zip(reports, truth["per_day"], strict=True):
        assert report.events.rows_in == day["events"] == report.events.bronze_rows
        assert report.events.quarantined_rows == 0
        assert report.labels.rows_in == report.labels.bronze_rows == day["labels"]
    before = counts(lh, EVENTS, "event_date")
    assert before == {str(DAY0 + dt.timedelta(days=i)): 300 for i in range(3)}
    # The first write made the quarantine table; clean days after it commit nothing to it.
    assert lh.table_version(QUARANTINE) == 0
    version = lh.table_version(EVENTS)

    again = ingest_day(context_of(stable, spark, lakehouse=lh), DAY0 + dt.timedelta(days=1))

    assert again.events.bronze_rows == 300
    assert counts(lh, EVENTS, "event_date") == before
    assert lh.table_version(EVENTS) == version + 1
    ids = lh.sql(
        "SELECT count(DISTINCT transaction_id) n, count(*) m FROM bronze.events"
    ).to_pylist()[0]
    assert ids["n"] == ids["m"] == 900


def test_bronze_rows_are_typed_per_contract(spark, stable):
    lh = lakehouse_of(stable)
    ingest_day(context_of(stable, spark, lakehouse=lh), DAY0)
    df = lh.read(spark, EVENTS)
    types = dict(df.dtypes)
    assert types["event_time"] == "timestamp"
    assert types["amount"] == "double"
    assert types["card_present"] == "boolean"
    assert types["merchant_category"] == "string"
    assert types["event_date"] == "date"
    row = df.where("transaction_id IS NOT NULL").orderBy("transaction_id").first()
    assert row["event_time"].date() == DAY0
    assert row["_source_file"].endswith(".csv")
    labels = lh.read(spark, LABELS)
    assert dict(labels.dtypes)["is_fraud"] == "int"


def test_same_file_landed_twice_adds_nothing(spark, stable):
    lh = lakehouse_of(stable)
    folder = Path(stable.resolve(stable.landing.path), "events", DAY0.isoformat())
    original = sorted(folder.glob("*.csv"))[0]
    shutil.copy(original, folder / "zz-copy.csv")

    report = ingest_day(context_of(stable, spark, lakehouse=lh), DAY0)

    assert report.events.rows_in == 600
    assert report.events.bronze_rows == 300
    assert report.events.quarantined_rows == 300
    rejected = quarantined(lh, "events", DAY0)
    assert {r["source_file"] for r in rejected} == {str(folder / "zz-copy.csv")}
    assert all(
        r["reason"] == f"duplicate transaction_id (first landed in {original})" for r in rejected
    )

    # The copy taken away, a rerun quarantines nothing and clears what the first run kept.
    (folder / "zz-copy.csv").unlink()
    again = ingest_day(context_of(stable, spark, lakehouse=lh), DAY0)
    assert (again.events.bronze_rows, again.events.quarantined_rows) == (300, 0)
    assert quarantined(lh, "events", DAY0) == []


def test_broken_feed_rows_go_to_quarantine_with_reasons(spark, make_settings):
    settings = make_settings(
        simulator={
            "days": 2,
            "events_per_day": 400,
            "scenario": "broken_feed",
            "drift_onset_day": 1,
        }
    )
    land(settings, 2)
    lh = lakehouse_of(settings)
    day = DAY0 + dt.timedelta(days=1)

    report = ingest_day(context_of(settings, spark, lakehouse=lh), day)

    events = report.events
    assert events.rows_in == events.bronze_rows + events.quarantined_rows
    assert events.quarantined_rows > 0
    reasons = " | ".join(r["reason"] for r in quarantined(lh, "events", day))
    assert "missing transaction_id" in reasons
    assert "missing card_id" in reasons
    assert "missing event_time" in reasons
    assert 'amount: ["abc"] is not a valid double' in reasons
    assert "malformed record" in reasons  # the truncated last line
    assert "duplicate transaction_id" in reasons  # the redelivered file
    # Every quarantined row keeps its source file and raw record.
    assert all(r["source_file"] and r["record"] for r in quarantined(lh, "events", day))
    clean = ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)
    assert clean.events.quarantined_rows == 0


def test_mistyped_and_foreign_rows_are_quarantined_individually(spark, make_settings):
    settings = make_settings()
    folder = Path(settings.resolve(settings.landing.path), "events", DAY0.isoformat())
    folder.mkdir(parents=True)
    header = "transaction_id,card_id,event_time,amount,distance_from_home_km,merchant_risk,merchant_category,channel,country,card_present"
    (folder / "a.csv").write_text(
        "\n".join(
            [
                header,
                "t1,c1,2026-01-01T10:00:00Z,12.5,1,0.1,grocery,pos,FR,true",
                "t2,c2,2026-01-01T12:00:00+02:00,7,1,0.1,café,online,DE,no",  # offset -> 10:00 UTC
                "t3,c3,2025-12-31T23:59:59Z,7,1,0.1,grocery,pos,FR,true",  # another day
                "t4,c4,2026-01-01T10:00:00Z,7,1,0.1,grocery,pos,FR,maybe",  # not a boolean
                "t5,c5,not-a-time,7,1,0.1,grocery,pos,FR,true",
                "t6,c6,2026-01-01T10:00:00Z,7,1,0.1",  # truncated
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    lh = lakehouse_of(settings)

    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)

    assert (report.events.rows_in, report.events.bronze_rows, report.events.quarantined_rows) == (
        6,
        2,
        4,
    )
    good = {r["transaction_id"]: r for r in lh.to_arrow(EVENTS).to_pylist()}
    assert good["t2"]["merchant_category"] == "café"
    assert good["t2"]["event_time"].hour == 10
    assert good["t2"]["card_present"] is False
    reasons = {_record_id(r["record"]): r["reason"] for r in quarantined(lh, "events", DAY0)}
    assert reasons["t3"] == "event_time 2025-12-31 23:59:59 is not on 2026-01-01 (UTC)"
    assert reasons["t4"] == 'card_present: ["maybe"] is not a valid boolean'
    assert reasons["t5"] == 'event_time: ["not-a-time"] is not a valid timestamp'
    assert reasons["t6"] == "malformed record: 6 field(s) where the header has 10"


def test_a_file_missing_a_column_is_quarantined_whole(spark, make_settings):
    settings = make_settings()
    folder = Path(settings.resolve(settings.landing.path), "events", DAY0.isoformat())
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(
        "transaction_id,card_id,event_time,amount_eur\nt1,c1,2026-01-01T10:00:00Z,3\n",
        encoding="utf-8",
    )
    lh = lakehouse_of(settings)

    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)

    assert (report.events.bronze_rows, report.events.quarantined_rows) == (0, 1)
    (row,) = quarantined(lh, "events", DAY0)
    assert row["reason"].startswith("file lacks column(s) amount,distance_from_home_km")
    assert json.loads(row["record"])["amount_eur"] == "3"


def test_bad_labels_are_quarantined(spark, make_settings):
    settings = make_settings()
    root = Path(settings.resolve(settings.landing.path))
    (root / "events" / DAY0.isoformat()).mkdir(parents=True)
    (root / "events" / DAY0.isoformat() / "e.csv").write_text(
        "transaction_id,card_id,event_time,amount,distance_from_home_km,merchant_risk,merchant_category,channel,country,card_present\n"
        + "".join(
            f"t{i},c{i},2026-01-01T07:00:00Z,5,1,0.1,grocery,pos,FR,true\n" for i in (1, 2, 3, 4)
        )
    )
    (root / "labels" / DAY0.isoformat()).mkdir(parents=True)
    (root / "labels" / DAY0.isoformat() / "l.csv").write_text(
        "transaction_id,card_id,is_fraud,label_time\n"
        "t1,c1,1,2026-01-01T08:00:00Z\n"
        "t2,c2,1.0,2026-01-01T08:00:00Z\n"
        "t3,c3,2,2026-01-01T08:00:00Z\n"
        "t4,c4,1,2026-01-02T08:00:00Z\n"
        ",c5,1,2026-01-01T08:00:00Z\n"
        "t9,c9,1,2026-01-01T08:00:00Z\n"
    )
    lh = lakehouse_of(settings)

    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)

    counts = (report.labels.rows_in, report.labels.bronze_rows, report.labels.quarantined_rows)
    assert counts == (6, 2, 4)
    assert sorted(r["reason"] for r in quarantined(lh, "labels", DAY0)) == [
        "is_fraud 2 not in [0, 1]",
        f"label for an unknown transaction_id t9 (not in bronze.events within "
        f"{settings.dataset.label_delay_days} days before 2026-01-01)",
        "label_time 2026-01-02 08:00:00 is after 2026-01-01 (UTC)",
        "missing transaction_id",
    ]
    assert report.events.bronze_rows == 4


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_json_and_parquet_landing(spark, make_settings, fmt):
    settings = make_settings(
        landing={"format": fmt}, simulator={"days": 1, "events_per_day": 200, "n_entities": 50}
    )
    land(settings, 1)
    report = ingest_day(context_of(settings, spark, lakehouse=lakehouse_of(settings)), DAY0)
    assert (report.events.rows_in, report.events.bronze_rows) == (200, 200)
    assert all(f.endswith(f".{fmt}") for f in report.events.files)


def test_missing_landing_file_names_the_pattern(spark, make_settings):
    settings = make_settings()
    with pytest.raises(
        IngestError,
        match=r"no events landed for 2026-01-07: nothing matches .*/events/2026-01-07/\*\.csv",
    ):
        ingest_day(context_of(settings, spark), dt.date(2026, 1, 7))


def test_landing_and_lakehouse_on_s3(spark, make_settings, s3_bucket):
    settings = make_settings(
        landing={"path": f"{s3_bucket}/landing"},
        lakehouse={"root": f"{s3_bucket}/lake"},
        simulator={"days": 1, "events_per_day": 150, "n_entities": 40},
    )
    land(settings, 1)
    lh = lakehouse_of(settings)

    report = ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)

    assert report.events.bronze_rows == 150
    assert all(f.startswith("s3://") for f in report.events.files)
    assert lh.read(spark, EVENTS).count() == 150
    assert {t.table for t in lh.tables()} == {EVENTS, LABELS, QUARANTINE}


def test_a_revised_label_replaces_the_earlier_one_of_the_day(spark, make_settings):
    settings = make_settings()
    root = Path(settings.resolve(settings.landing.path))
    (root / "events" / DAY0.isoformat()).mkdir(parents=True)
    (root / "events" / DAY0.isoformat() / "e.csv").write_text(
        "transaction_id,card_id,event_time,amount,distance_from_home_km,merchant_risk,"
        "merchant_category,channel,country,card_present\n"
        "t1,c1,2026-01-01T07:00:00Z,5,1,0.1,grocery,pos,FR,true\n"
    )
    (root / "labels" / DAY0.isoformat()).mkdir(parents=True)
    (root / "labels" / DAY0.isoformat() / "a.csv").write_text(
        "transaction_id,card_id,is_fraud,label_time\nt1,c1,1,2026-01-01T20:00:00Z\n"
    )
    (root / "labels" / DAY0.isoformat() / "b.csv").write_text(
        "transaction_id,card_id,is_fraud,label_time\nt1,c1,0,2026-01-01T09:00:00Z\n"
    )
    lh = lakehouse_of(settings)

    ingest_day(context_of(settings, spark, lakehouse=lh), DAY0)

    assert [r["is_fraud"] for r in lh.to_arrow(LABELS).to_pylist()] == [1]
    (row,) = quarantined(lh, "labels", DAY0)
    assert row["reason"] == (
        "duplicate transaction_id (the one with the latest label_time was kept, from "
        f"{root / 'labels' / DAY0.isoformat() / 'a.csv'})"
    )


# ------------------------------------------------- the duplicate lookup, on the loans' data
def test_the_duplicate_lookup_reads_only_earlier_days_whose_ids_may_match(spark, tmp_path):
    """The loans' application ids grow with the day ("APP 0301-0000", ...): a day of new
    ids reads no earlier day (the Delta log's statistics bound each day's ids), and an id
    landed again is still found on its first day; a partition whose files do not bound
    their ids is always read."""
    import deltalake
    import pyarrow as pa
    import yaml

    from regrow.data.row_rules import FIRST_LANDED, with_earlier_events
    from regrow.settings import load_settings
    from tests.conftest import REPO
    from tests.loan_applications import START, user_params
    from tests.loan_applications import write_landing as write_loans

    write_loans(tmp_path / "landing", days=3, per_day=40)
    raw = user_params(REPO, tmp_path / "landing", lakehouse={"root": str(tmp_path / "lh")})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    settings = load_settings(tmp_path / "params.yaml")
    dataset, lakehouse = settings.dataset, lakehouse_of(settings)
    ctx = context_of(settings, spark)
    for k in range(3):
        ingest_day(ctx, START + dt.timedelta(days=k))
    day = START + dt.timedelta(days=3)

    def lookup(ids: list[str]) -> tuple[dict, str]:
        landed = spark.createDataFrame([(i,) for i in ids], f"`{dataset.event_id}` string")
        looked = with_earlier_events(landed, lakehouse, dataset, day, day_rows=len(ids))
        found = {
            r[0]: r[1] and r[1][0] for r in looked.select(landed.columns[0], FIRST_LANDED).collect()
        }
        return found, looked._jdf.queryExecution().analyzed().toString()

    bounds = lakehouse.partition_bounds(EVENTS, dataset.event_id, "event_date")
    fresh, fresh_plan = lookup(["APP 0304-0000", " APP 0304-0001 "])
    again, again_plan = lookup(["APP 0304-0002", "APP 0302-0007"])

    assert bounds[str(START)] == ("APP 0301-0000", "APP 0301-0039")
    with pytest.raises(LakehouseError, match="not partitioned by Submitted At"):
        lakehouse.partition_bounds(EVENTS, dataset.event_id, "Submitted At")
    assert fresh == {"APP 0304-0000": None, " APP 0304-0001 ": None}
    assert "Join" not in fresh_plan  # no earlier day read
    assert again == {"APP 0304-0002": None, "APP 0302-0007": START + dt.timedelta(days=1)}
    assert "Join" in again_plan

    # A file written without statistics (another writer): its day is read whatever the ids.
    uri = lakehouse.uri(EVENTS)
    schema = deltalake.DeltaTable(uri).schema().to_arrow()
    row = {f.name: None for f in pa.schema(schema)} | {
        dataset.event_id: "ZZZ unbounded",
        "event_date": START,
        "Submitted At": None,
    }
    deltalake.write_deltalake(
        uri, pa.Table.from_pylist([row], pa.schema(schema)), mode="append",
        writer_properties=deltalake.WriterProperties(column_properties={
            dataset.event_id: deltalake.ColumnProperties(statistics_enabled="NONE")
        }),
    )  # fmt: skip
    unbounded = lakehouse.partition_bounds(EVENTS, dataset.event_id, "event_date")
    assert unbounded[str(START)] is None
    assert lookup(["APP 0304-0000"])[0] == {"APP 0304-0000": None}
    assert "Join" in lookup(["APP 0304-0000"])[1]
