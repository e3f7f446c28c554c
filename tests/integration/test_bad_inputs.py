"""The bad-input corpus (tests/data/bad_inputs/README.md) through ingest on real Spark and
Delta: every case's rows end in bronze or in quarantine with the asserted reason, and
rows in = bronze + quarantine, per file and per kind.

Most cases share one landing day (one ingest, one file per case); the cases that need the
day to themselves (no rows at all, a day in the future) are ingested alone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from regrow.catalog import EVENTS, LABELS
from regrow.data.ingest import IngestReport, ingest_day
from regrow.settings import Settings, load_settings
from tests import bad_inputs as corpus
from tests.conftest import context_of, lakehouse_of, quarantined, write_params

DAY = corpus.DAY


def by_file(rows: list[dict], column: str) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for row in rows:
        out[Path(row[column]).stem].append(row)
    return out


@dataclass
class Outcome:
    """One ingest of a landing day, its rows grouped by the case (file) they came from."""

    report: IngestReport
    landed: dict[str, Path]
    bronze: dict[str, list[dict]]
    rejected: dict[str, list[dict]]

    def of(self, case: str, rows_in: int) -> tuple[list[dict], list[dict]]:
        """The case's (bronze rows, quarantined rows), once nothing of it is lost."""
        good, bad = self.bronze.get(case, []), self.rejected.get(case, [])
        assert len(good) + len(bad) == rows_in, (case, len(good), len(bad))
        return good, bad

    def reasons(self, case: str) -> list[str]:
        return sorted(r["reason"] for r in self.rejected.get(case, []))


def ingest(spark, settings: Settings, cases: list[corpus.Case], day: dt.date) -> Outcome:
    root = Path(settings.resolve(settings.landing.path))
    landed = {c.name: c.land(root, day) for c in cases}
    lh = lakehouse_of(settings)
    report = ingest_day(context_of(settings, spark, lakehouse=lh), day)
    for kind in (report.events, report.labels):
        assert kind.rows_in == kind.bronze_rows + kind.quarantined_rows
    bronze = []
    for table, date_column in ((EVENTS, "event_date"), (LABELS, "label_date")):
        if lh.exists(table):
            bronze += [r for r in lh.to_arrow(table).to_pylist() if r[date_column] == day]
    rejected = quarantined(lh, "events", day) + quarantined(lh, "labels", day)
    return Outcome(
        report, landed, by_file(bronze, "_source_file"), by_file(rejected, "source_file")
    )


@pytest.fixture(scope="module")
def batch(spark, tmp_path_factory) -> Outcome:
    """Every case that can share a day, landed on DAY and ingested once."""
    settings = load_settings(write_params(tmp_path_factory.mktemp("bad_inputs")))
    return ingest(spark, settings, corpus.batch(), DAY)


def test_the_batch_day_adds_up(batch):
    cases = corpus.batch()
    events = [c for c in cases if c.kind == "events"]
    assert batch.report.events.rows_in == sum(c.rows for c in events)
    assert batch.report.labels.rows_in == len(corpus.LABELS)
    assert sorted(Path(f).stem for f in batch.report.events.files) == sorted(c.name for c in events)
    # The report's reason counts are the quarantine table's.
    counted = defaultdict(int)
    for rows in batch.rejected.values():
        for row in rows:
            counted[(row["source_kind"], row["reason"])] += 1
    assert {r: n for (k, r), n in counted.items() if k == "events"} == batch.report.events.reasons
    assert {r: n for (k, r), n in counted.items() if k == "labels"} == batch.report.labels.reasons


# ------------------------------------------------------------------ 1, 2: nothing landed
@pytest.mark.parametrize("case", [corpus.EMPTY, corpus.HEADER_ONLY], ids=lambda c: c.name)
def test_a_file_without_rows_ingests_nothing(spark, make_settings, case):
    out = ingest(spark, make_settings(), [case], DAY)

    assert [Path(f).name for f in out.report.events.files] == [f"{case.name}.csv"]
    for kind in (out.report.events, out.report.labels):
        assert (kind.rows_in, kind.bronze_rows, kind.quarantined_rows) == (0, 0, 0)
        assert kind.reasons == {}
    assert out.bronze == {} and out.rejected == {}


# ----------------------------------------------------------------- 3: a truncated last line
def test_truncated_last_line_is_quarantined_alone(batch):
    good, bad = batch.of("truncated", 3)

    assert sorted(r["transaction_id"] for r in good) == ["tr1", "tr2"]
    reason = f"malformed record: 5 field(s) where the header has {len(corpus.EVENT_COLUMNS)}"
    assert [(r["reason"], r["record"], r["source_line"]) for r in bad] == [
        (reason, corpus.TRUNCATED_LINE, 4)
    ]


# ---------------------------------------------------- 4, 6, 7: the header is not the contract
def test_wrong_delimiter_quarantines_every_row_with_its_raw_record(batch):
    good, bad = batch.of("semicolon", 2)

    assert good == []
    lacks = "file lacks column(s) " + ",".join(corpus.EVENT_COLUMNS)
    assert {r["reason"] for r in bad} == {lacks}
    records = sorted(json.loads(r["record"])[corpus.SEMICOLON_HEADER] for r in bad)
    assert records == [corpus.line(corpus.event(t), sep=";") for t in ("sc1", "sc2")]


def test_missing_column_quarantines_the_whole_file_naming_it(batch):
    good, bad = batch.of("missing_column", 2)

    assert good == []
    assert batch.reasons("missing_column") == ["file lacks column(s) country"] * 2
    records = sorted((json.loads(r["record"]) for r in bad), key=lambda r: r["transaction_id"])
    assert records == [{c: corpus.event(t)[c] for c in corpus.NO_COUNTRY} for t in ("mc1", "mc2")]


def test_renamed_column_is_quarantined_and_keeps_the_value(batch):
    good, bad = batch.of("renamed", 1)

    assert good == []
    (row,) = bad
    assert row["reason"] == "file lacks column(s) amount"
    record = json.loads(row["record"])
    assert record["amount_eur"] == "3.5"
    assert "amount" not in record


# ---------------------------------------------------------------- 5: a column beyond the contract
def test_extra_columns_land_in_bronze_as_json(batch):
    good, bad = batch.of("extra_column", 2)

    assert bad == []
    rows = {r["transaction_id"]: r for r in good}
    # Read by name: the extra column in the middle shifts nothing.
    assert {t: r["amount"] for t, r in rows.items()} == {"ex1": 5.5, "ex2": 6.5}
    assert {t: json.loads(r["_extra_columns"]) for t, r in rows.items()} == {
        "ex1": {"loyalty_tier": "gold", "promo_code": "X1"},
        "ex2": {"loyalty_tier": "silver", "promo_code": "Y2"},
    }
    # A file with only contract columns has none.
    assert {r["_extra_columns"] for r in batch.bronze["truncated"]} == {None}


# ------------------------------------------------------------------ 8: a value of the wrong type
def test_mistyped_amount_is_quarantined_per_row(batch):
    good, bad = batch.of("mistyped", 3)

    assert [(r["transaction_id"], r["amount"]) for r in good] == [("ty3", 12.5)]
    reasons = {json.loads(r["record"])["transaction_id"]: r["reason"] for r in bad}
    assert reasons == {
        "ty1": 'amount: ["abc"] is not a valid double',
        "ty2": 'amount: ["12,50"] is not a valid double',
    }


# --------------------------------------------------------------------- 9: nulls in the keys
@pytest.mark.parametrize(
    ("column", "card"),
    [("transaction_id", "c-nk1"), ("card_id", None), ("event_time", "c-nk3")],
)
def test_null_key_is_quarantined_as_missing(batch, column, card):
    _, bad = batch.of("null_keys", 5)

    rows = [r for r in bad if r["reason"] == f"missing {column}"]
    assert len(rows) == (2 if column == "card_id" else 1)  # card_id: empty and blank
    for row in rows:
        record = json.loads(row["record"])
        assert not (record.get(column) or "").strip()
        if card:
            assert record["card_id"] == card


def test_null_keys_leave_the_complete_row_in_bronze(batch):
    good, _ = batch.of("null_keys", 5)
    assert [r["transaction_id"] for r in good] == ["nk5"]
    assert batch.reasons("null_keys") == [
        "missing card_id",
        "missing card_id",
        "missing event_time",
        "missing transaction_id",
    ]


# ---------------------------------------------------------------- 10, 11: rows landed twice
def test_duplicated_rows_keep_the_first(batch):
    good, bad = batch.of("duplicated", 4)

    assert sorted(r["transaction_id"] for r in good) == ["du1", "du2"]
    first = batch.landed["duplicated"]
    assert (
        batch.reasons("duplicated") == [f"duplicate transaction_id (first landed in {first})"] * 2
    )
    assert {json.loads(r["record"])["transaction_id"] for r in bad} == {"du1"}


def test_same_file_landed_twice_is_in_bronze_once(batch):
    first, copy = batch.of("redelivered_a", 3), batch.of("redelivered_b", 3)

    assert sorted(r["transaction_id"] for r in first[0]) == ["rd1", "rd2", "rd3"]
    assert first[1] == [] and copy[0] == []
    assert (
        batch.reasons("redelivered_b")
        == [f"duplicate transaction_id (first landed in {batch.landed['redelivered_a']})"] * 3
    )


# ------------------------------------------------------------------------ 12, 13, 18: time
def test_timestamps_of_another_day_are_quarantined(batch):
    good, bad = batch.of("other_day", len(corpus.OTHER_DAY))

    assert sorted(r["transaction_id"] for r in good) == ["od4", "od5"]
    reasons = {json.loads(r["record"])["transaction_id"]: r["reason"] for r in bad}
    assert reasons == {
        t: f"event_time {utc} is not on {DAY} (UTC)"
        for t, (_, utc, on_day) in corpus.OTHER_DAY.items()
        if not on_day
    }


def test_timestamps_in_the_future_are_quarantined(spark, make_settings):
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)

    out = ingest(spark, make_settings(), [corpus.future(tomorrow)], tomorrow)

    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    good, bad = out.of("future", 2)
    assert good == []
    assert out.report.events.quarantined_rows == 2
    pattern = re.compile(
        rf"event_time {tomorrow} (00:00:01|12:00:00) is in the future "
        r"\(ingested at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)"
    )
    matches = [pattern.fullmatch(r["reason"]) for r in bad]
    assert all(matches), [r["reason"] for r in bad]
    assert sorted(m[1] for m in matches) == ["00:00:01", "12:00:00"]
    ingested_at = {dt.datetime.fromisoformat(m[2]) for m in matches}
    assert len(ingested_at) == 1
    assert before <= ingested_at.pop() <= after
    # The reason's time is the row's _ingested_at.
    stamped = {r["_ingested_at"].replace(tzinfo=None, microsecond=0) for r in bad}
    assert stamped == {dt.datetime.fromisoformat(m[2]) for m in matches}


def test_offsets_are_converted_to_utc_and_naive_times_taken_as_utc(batch):
    good, bad = batch.of("time_zones", len(corpus.TIME_ZONES))

    assert bad == []
    times = {r["transaction_id"]: r["event_time"] for r in good}
    utc = {
        t: v.astimezone(dt.UTC) if v.tzinfo else v.replace(tzinfo=dt.UTC) for t, v in times.items()
    }
    assert utc == dict.fromkeys(corpus.TIME_ZONES, dt.datetime.combine(DAY, dt.time(10), dt.UTC))


# ------------------------------------------------------------------------ 14, 15: labels
def test_labels_outside_the_domain_or_for_unknown_events_are_quarantined(batch):
    good, bad = batch.of("labels", len(corpus.LABELS))

    assert {r["transaction_id"]: r["is_fraud"] for r in good} == {"tz1": 1, "tz2": 0, "tz3": 1}
    reasons = {json.loads(r["record"])["transaction_id"]: r["reason"] for r in bad}
    assert reasons == {t: reason for t, (_, reason) in corpus.LABELS.items() if reason}


# --------------------------------------------------------------------------- 16, 17: text
def test_bytes_that_are_not_utf8_are_quarantined_per_row(batch):
    good, bad = batch.of("non_utf8", 2)

    assert [(r["transaction_id"], r["merchant_category"]) for r in good] == [("nu1", "grocery")]
    (row,) = bad
    assert row["reason"] == "merchant_category: bytes that are not valid UTF-8"
    assert json.loads(row["record"])["transaction_id"] == "nu2"


def test_valid_unicode_is_kept_exactly(batch):
    good, bad = batch.of("unicode", len(corpus.UNICODE))

    assert bad == []
    assert {r["transaction_id"]: r["merchant_category"] for r in good} == corpus.UNICODE


# ------------------------------------------------------- spreadsheet exports, non-finite
def test_a_byte_order_mark_is_not_part_of_the_first_column(batch):
    good, bad = batch.of("bom", 1)
    assert [r["transaction_id"] for r in good] == ["bo1"] and bad == []


def test_rfc4180_quotes_and_newlines_inside_quotes_are_one_field(batch):
    good, bad = batch.of("quoted", 2)
    assert bad == []
    assert {r["transaction_id"]: r["merchant_category"] for r in good} == {
        "qu1": 'say "hi", ok',
        "qu2": "two\nlines",
    }


def test_non_finite_amounts_are_quarantined(batch):
    good, _ = batch.of("infinite", 3)
    assert [r["transaction_id"] for r in good] == ["in3"]
    assert batch.reasons("infinite") == [
        'amount: ["Infinity"] is not a finite number',
        'amount: ["NaN"] is not a finite number',
    ]
