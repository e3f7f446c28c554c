"""Keys that stay keys, values the contract allows, labels that arrive before their event
(issue 18, parts 4-6), through ingest on real Spark and Delta.

One lakehouse lives through four ingests, in the order a late feed makes them: D1 (most
cases, one file per case), D2 (events re-sent from D1), D2 again (a rerun), then D0 (the
late events some of D1's labels belong to, which releases them from quarantine). A second
lakehouse, with ``key_whitespace: reject``, ``unknown_categories: reject`` and a one-day
duplicate look-back, ingests two days. Every case asserts its exact outcome and that
nothing is lost: rows in = bronze rows + quarantined rows.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regrow.catalog import EVENTS, LABELS, QUARANTINE, SILVER_LABELS
from regrow.data.ingest import IngestReport, ingest_day
from regrow.data.labels import LabelsReport, build_labels, released_since_built
from regrow.settings import ConfigError, Settings, load_settings
from tests import bad_inputs as corpus
from tests.conftest import context_of, lakehouse_of, quarantined, write_params
from tests.integration.test_bad_inputs import Outcome

D0, D1, D2 = dt.date(2025, 2, 9), dt.date(2025, 2, 10), dt.date(2025, 2, 11)
B1, B3 = dt.date(2025, 3, 1), dt.date(2025, 3, 3)
NUL = "\x00"
LONG = 1000  # dataset.max_string_length of params.yaml
CATEGORIES = (
    "[grocery, restaurant, fuel, travel, electronics, fashion, entertainment, health, "
    "digital_goods, jewelry]"
)
NO_ENTITY_HEADER = "transaction_id,is_fraud,label_time"


def at(day: dt.date, time: str = "12:00:00") -> str:
    return f"{day}T{time}Z"


def ev(tid: str, day: dt.date = D1, **values: str) -> str:
    """A valid event of ``day`` as a CSV line (card ``c-<tid>`` unless given)."""
    values = {"card_id": f"c-{tid.strip()}", "event_time": at(day), **values}
    return corpus.line(corpus.event(tid, **values))


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def events(name: str, lines: list[str]) -> corpus.Case:
    return corpus.Case(name, "events", corpus.csv_text(lines), len(lines))


def labels(name: str, rows: list[str], header: str = corpus.LABEL_HEADER) -> corpus.Case:
    return corpus.Case(name, "labels", corpus.csv_text(rows, header=header), len(rows))


D1_EVENT_CASES = [
    events("resent_first", [ev("ks1"), ev("ks2"), ev("ks3")]),
    events(
        "whitespace_keys",
        [
            ev(" ws1", card_id="c-ws1"),
            ev(quoted("ws2\t"), card_id=quoted(" c-ws2 ")),
            ev("ws3"),
            ev(quoted(" ws3 "), card_id="c-ws3"),  # the same event once trimmed
            ev("\u00a0ws4", card_id="c-ws4\u00a0"),  # no-break spaces (spreadsheets)
        ],
    ),
    events(
        "control_chars",
        [
            ev("cc1", merchant_category=f"gro{NUL}cery"),
            ev("cc2", card_id="c-\x07cc2"),
            ev("cc3", merchant_category=quoted("two\twords")),  # a tab is text
        ],
    ),
    events(
        "oversize",
        [ev("os1", merchant_category="x" * (LONG + 1)), ev("os2", merchant_category="x" * LONG)],
    ),
    events(
        "ranges",
        [
            ev("rg1", amount="-5"),
            ev("rg2", merchant_risk="1.5"),
            ev("rg3", amount="0", merchant_risk="1"),  # the bounds are valid
            ev("rg4", distance_from_home_km="-0.1"),
        ],
    ),
    events("new_category", [ev("nc1", merchant_category="crypto_exchange")]),
]
# D1's event cases land as one file (a day's cost grows with its files); their rows are
# told apart by the prefix of their transaction ids.
D1_EVENTS = "d1_events"
PREFIXES = {c.name: c.data.decode().splitlines()[1].strip('" \t\u00a0')[:2] for c in D1_EVENT_CASES}
D1_CASES = [
    corpus.Case(
        D1_EVENTS,
        "events",
        corpus.csv_text([x for c in D1_EVENT_CASES for x in c.data.decode().splitlines()[1:]]),
        sum(c.rows for c in D1_EVENT_CASES),
    ),
    labels(
        "labels",
        [
            f"ks2,c-ks2,1,{at(D1, '18:00:00')}",
            f"ks3,c-other,0,{at(D1, '18:00:00')}",
            f"ks1,c-ks1,1,{at(D1, '09:00:00')}",  # before its event (12:00)
            f"late1,c-late1,1,{at(D1, '08:00:00')}",  # its event lands later, on D0
            f"late2,c-wrong,1,{at(D1, '08:00:00')}",  # ... and has another entity
            f"late3,c-late3,1,{at(D1, '08:00:00')}",  # its event never lands
            f"{quoted(' ws1 ')},c-ws1,0,{at(D1, '18:00:00')}",
        ],
    ),
    labels("labels_no_entity", [f"ws2,0,{at(D1, '20:00:00')}"], header=NO_ENTITY_HEADER),
]
D2_CASES = [events("resent", [ev("ks1", D2), ev(" ks2", D2, card_id="c-ks2"), ev("nd2", D2)])]
D0_CASES = [events("late_events", [ev("late1", D0), ev("late2", D0)])]
B1_CASES = [
    events(
        "reject",
        [
            ev(" rj1", B1, card_id="c-rj1"),
            ev("rj2", B1, card_id="c-rj2 "),
            ev("rj3", B1, merchant_category="crypto_exchange"),
            ev("lb1", B1),
        ],
    )
]
B3_CASES = [events("lookback", [ev("lb1", B3)])]


def ingest(spark, settings: Settings, cases: list[corpus.Case], day: dt.date, run_id: str):
    """Land ``cases`` on ``day``, ingest it, and return the day's rows by case (file)."""
    root = Path(settings.resolve(settings.landing.path))
    landed = {c.name: c.land(root, day) for c in cases}
    lh = lakehouse_of(settings)
    report = ingest_day(context_of(settings, spark, run_id=run_id, lakehouse=lh), day)
    return snapshot(settings, day, report, landed)


def snapshot(settings: Settings, day: dt.date, report: IngestReport | None = None, landed=None):
    lh = lakehouse_of(settings)
    bronze = []
    for table, date_column in ((EVENTS, "event_date"), (LABELS, "label_date")):
        if lh.exists(table):
            bronze += [r for r in lh.to_arrow(table).to_pylist() if r[date_column] == day]
    rejected = quarantined(lh, "events", day) + quarantined(lh, "labels", day)
    return Outcome(report, landed or {}, by_case(bronze), by_case(rejected))


def by_case(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by the case they belong to: their file, or in D1's event file the case of
    their transaction id's prefix."""
    cases = {prefix: name for name, prefix in PREFIXES.items()}
    out: dict[str, list[dict]] = {}
    for row in rows:
        case = Path(row.get("_source_file") or row["source_file"]).stem
        if case == D1_EVENTS:
            tid = row.get("transaction_id") or json.loads(row["record"])["transaction_id"]
            case = cases[tid.strip(" \t\u00a0")[:2]]
        out.setdefault(case, []).append(row)
    return out


@dataclass
class World:
    settings: Settings
    d1: Outcome
    d2: Outcome
    d2_rerun: Outcome
    d0: Outcome
    d1_after: Outcome  # D1 once D0's events released its labels
    events: list[dict]  # the whole of bronze.events at the end
    silver_d1: list[str]  # silver.labels of D1 as built after D1's ingest: its event ids
    labels_d0: LabelsReport  # silver.labels of D0, built after D0's late ingest


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory) -> World:
    settings = load_settings(write_params(tmp_path_factory.mktemp("bad_keys")))
    d1 = ingest(spark, settings, D1_CASES, D1, "run-d1")
    build_labels(context_of(settings, spark, run_id="labels-d1"), D1)
    silver_d1 = silver_ids(settings, D1)
    d2 = ingest(spark, settings, D2_CASES, D2, "run-d2")
    d2_rerun = ingest(spark, settings, [], D2, "run-d2-again")
    d0 = ingest(spark, settings, D0_CASES, D0, "run-d0")
    labels_d0 = build_labels(context_of(settings, spark, run_id="labels-d0"), D0)
    events_table = lakehouse_of(settings).to_arrow(EVENTS).to_pylist()
    return World(
        settings, d1, d2, d2_rerun, d0, snapshot(settings, D1), events_table, silver_d1, labels_d0
    )


def silver_ids(settings: Settings, day: dt.date) -> list[str]:
    rows = lakehouse_of(settings).to_arrow(SILVER_LABELS).to_pylist()
    return sorted(r["transaction_id"] for r in rows if r["label_date"] == day)


@pytest.fixture(scope="module")
def strict(spark, tmp_path_factory) -> tuple[Outcome, Outcome]:
    """The reject settings, and a one-day duplicate look-back."""
    rules = {"key_whitespace": "reject", "unknown_categories": "reject"}
    params = write_params(
        tmp_path_factory.mktemp("bad_keys_strict"),
        dataset={**rules, "duplicate_lookback_days": 1},
    )
    settings = load_settings(params)
    return ingest(spark, settings, B1_CASES, B1, "b1"), ingest(spark, settings, B3_CASES, B3, "b3")


def reasons(outcome: Outcome, case: str) -> dict[str, str]:
    """Quarantine reasons of a case by the transaction id of the record."""
    return {
        json.loads(r["record"])["transaction_id"]: r["reason"]
        for r in outcome.rejected.get(case, [])
    }


def ids(rows: list[dict]) -> list[str]:
    return sorted(r["transaction_id"] for r in rows)


# ------------------------------------------------------------- 4. keys stay keys: re-sent
def test_an_event_resent_on_a_later_day_is_a_duplicate_and_kept_once(world):
    good, _ = world.d2.of("resent", 3)

    assert ids(good) == ["nd2"]
    first = str(world.d1.landed[D1_EVENTS])
    assert reasons(world.d2, "resent") == {
        tid: f"duplicate transaction_id (first landed in {first}, in bronze.events on {D1})"
        for tid in ("ks1", " ks2")
    }
    everywhere = [r["transaction_id"] for r in world.events]
    assert everywhere.count("ks1") == everywhere.count("ks2") == 1
    assert world.d2.report.events.rows_in == 3


def test_rerunning_a_day_does_not_find_its_own_rows(world):
    good, bad = world.d2_rerun.of("resent", 3)

    assert ids(good) == ["nd2"]  # not a duplicate of itself
    assert reasons(world.d2_rerun, "resent") == reasons(world.d2, "resent")
    assert world.d2_rerun.report.events.bronze_rows == 1
    assert len(bad) == 2


def test_a_long_history_is_looked_up_through_the_days_ids_with_the_same_result(spark, world):
    """Past SEMI_JOIN_HISTORY_RATIO times the day's rows, the lookup semi-joins the day's
    ids before aggregating the history: the same first landings, key rules included."""
    from regrow.data.row_rules import FIRST_LANDED, with_earlier_events

    dataset, lakehouse = world.settings.dataset, lakehouse_of(world.settings)
    day = D2 + dt.timedelta(days=1)
    raw = spark.createDataFrame(
        [(" ks2",), ("ks1",), ("nd2",), ("never-landed",), (None,)], f"`{dataset.event_id}` string"
    )

    def lookup(day_rows):
        looked = with_earlier_events(raw, lakehouse, dataset, day, day_rows)
        found = {
            r[0]: r[1] and (r[1][0], r[1][1])
            for r in looked.select(raw.columns[0], FIRST_LANDED).collect()
        }
        return found, looked._jdf.queryExecution().analyzed().toString()

    semi, semi_plan = lookup(day_rows=0)  # any history is long against an empty day
    whole, whole_plan = lookup(day_rows=None)

    assert "LeftSemi" in semi_plan and "LeftSemi" not in whole_plan
    assert semi == whole
    first = str(world.d1.landed[D1_EVENTS])
    assert semi[" ks2"] == semi["ks1"] == (D1, first)  # trimmed as the day's keys are
    assert semi["nd2"][0] == D2 and semi["never-landed"] is None and semi[None] is None


# ------------------------------------------------------------------ whitespace around keys
def test_whitespace_around_keys_is_trimmed_never_a_second_entity(world):
    good, _ = world.d1.of("whitespace_keys", 5)

    cards = {r["transaction_id"]: r["card_id"] for r in good}
    assert cards == {"ws1": "c-ws1", "ws2": "c-ws2", "ws3": "c-ws3", "ws4": "c-ws4"}
    path = world.d1.landed[D1_EVENTS]
    assert reasons(world.d1, "whitespace_keys") == {
        " ws3 ": f"duplicate transaction_id (first landed in {path})"
    }


def test_whitespace_around_keys_is_rejected_when_configured(strict):
    b1, _ = strict
    good, _ = b1.of("reject", 4)

    assert ids(good) == ["lb1"]
    found = reasons(b1, "reject")
    assert found[" rj1"] == (
        'transaction_id: [" rj1"] has whitespace around it (dataset.key_whitespace: reject)'
    )
    assert found["rj2"] == (
        'card_id: ["c-rj2 "] has whitespace around it (dataset.key_whitespace: reject)'
    )


# ------------------------------------------------------------------- control characters
def test_control_characters_are_quarantined_naming_the_column(world):
    good, bad = world.d1.of("control_chars", 3)

    assert {r["transaction_id"]: r["merchant_category"] for r in good} == {"cc3": "two\twords"}
    allowed = "in the value (only tab and line breaks are allowed in text)"
    assert reasons(world.d1, "control_chars") == {
        "cc1": f"merchant_category: control character U+0000 {allowed}",
        "cc2": f"card_id: control character U+0007 {allowed}",
    }
    # The record keeps the value as landed (JSON escapes the character).
    cc1 = next(json.loads(r["record"]) for r in bad if "cc1" in r["record"])
    assert cc1["merchant_category"] == f"gro{NUL}cery"


def test_strings_longer_than_the_maximum_are_quarantined(world):
    good, _ = world.d1.of("oversize", 2)

    assert [len(r["merchant_category"]) for r in good] == [LONG]
    assert reasons(world.d1, "oversize") == {
        "os1": f"merchant_category: {LONG + 1} characters, longer than the maximum {LONG} "
        "(dataset.max_string_length)"
    }


# ----------------------------------------------------------- 5. what a valid value is
def test_values_outside_their_range_are_quarantined(world):
    good, _ = world.d1.of("ranges", 4)

    assert [(r["transaction_id"], r["amount"], r["merchant_risk"]) for r in good] == [
        ("rg3", 0.0, 1.0)
    ]
    assert reasons(world.d1, "ranges") == {
        "rg1": "amount: -5.0 is below the minimum 0",
        "rg2": "merchant_risk: 1.5 is above the maximum 1",
        "rg4": "distance_from_home_km: -0.1 is below the minimum 0",
    }


def test_an_unknown_category_is_kept_and_warned_by_default(world):
    from regrow.validation import build_suite

    good, bad = world.d1.of("new_category", 1)

    assert [r["merchant_category"] for r in good] == ["crypto_exchange"] and bad == []
    dataset = world.settings.dataset
    in_set = [
        e.configuration
        for e in build_suite(dataset, EVENTS).expectations
        if e.configuration.type == "expect_column_values_to_be_in_set"
        and e.configuration.kwargs["column"] == "merchant_category"
    ]
    assert [c.meta["severity"] for c in in_set] == ["warning"]


def test_an_unknown_category_is_rejected_when_configured(strict):
    b1, _ = strict
    b1.of("reject", 4)

    assert reasons(b1, "reject")["rj3"] == (
        f'merchant_category: ["crypto_exchange"] is not an allowed value {CATEGORIES} '
        "(dataset.allowed_values)"
    )


def test_the_duplicate_check_looks_back_as_far_as_configured(strict):
    _, b3 = strict
    good, _ = b3.of("lookback", 1)

    # lb1 landed on B1, two days back: beyond duplicate_lookback_days 1, so not looked up.
    assert ids(good) == ["lb1"]


# ------------------------------------------------------------------ labels and their event
def test_labels_must_match_their_event(world):
    good, _ = world.d1.of("labels", 7)
    unknown = (
        "label for an unknown transaction_id {} (not in bronze.events within 14 days "
        f"before {D1})"
    )

    assert ids(good) == ["ks2", "ws1"]  # " ws1 " trimmed: the label of event ws1
    assert reasons(world.d1, "labels") == {
        "ks3": "card_id c-other is not the entity of transaction_id ks3 (its event has c-ks3)",
        "ks1": "label_time 2025-02-10 09:00:00 is before its event's event_time "
        "2025-02-10 12:00:00",
        "late1": unknown.format("late1"),
        "late2": unknown.format("late2"),
        "late3": unknown.format("late3"),
    }


def test_a_label_file_may_omit_the_entity(world):
    good, bad = world.d1.of("labels_no_entity", 1)

    assert [(r["transaction_id"], r["card_id"], r["is_fraud"]) for r in good] == [("ws2", None, 0)]
    assert bad == []


# ---------------------------------------------------------- 6. late-arriving labels
def test_a_label_landed_before_its_event_is_released_when_the_event_lands(world):
    before, after = world.d1, world.d1_after
    good, bad = after.of("labels", 7)  # D1's labels still add up: nothing counted twice

    assert world.d0.report.released_labels == {str(D1): 1}
    assert ids(good) == ["ks2", "late1", "ws1"]
    late1 = next(r for r in good if r["transaction_id"] == "late1")
    assert (late1["_run_id"], late1["_released_by"]) == ("run-d1", "run-d0")
    assert late1["_released_at"] is not None and late1["label_date"] == D1
    assert late1["_source_file"] == str(before.landed["labels"])
    assert all(r["_released_at"] is None for r in good if r["transaction_id"] != "late1")
    # Its event is known now but is another card's: that reason replaces "unknown".
    found = reasons(after, "labels")
    assert found["late2"] == (
        "card_id c-wrong is not the entity of transaction_id late2 (its event has c-late2)"
    )
    assert found["late3"] == reasons(before, "labels")["late3"]
    assert len(bad) == 4
    # The D0 ingest's own rows are only its events.
    assert world.d0.report.events.bronze_rows == 2


def test_silver_labels_of_a_day_get_the_labels_released_into_it_later(world):
    """D1's silver.labels was built before D0's events landed; building D0's labels then
    builds D1's again (its bronze.labels got a released label since), and only D1's."""
    assert world.silver_d1 == ["ks2", "ws1", "ws2"]
    assert world.labels_d0.rebuilt == [str(D1)]
    assert silver_ids(world.settings, D1) == ["ks2", "late1", "ws1", "ws2"]
    # Built again now, nothing is newer than it: a rerun of D0's labels rebuilds nothing.
    ctx = context_of(world.settings, None, run_id="labels-d0-again")
    assert released_since_built(ctx, D0) == []


def test_retry_quarantine_releases_labels_held_before_their_event_was_known(world, spark):
    """`regrow ingest --retry-quarantine`: a label quarantined for want of its event (as an
    existing lakehouse may hold them) moves to bronze.labels, and its day still adds up."""
    from regrow.cli import app

    settings = world.settings
    lh = lakehouse_of(settings)
    row = {
        "source_kind": "labels",
        "source_file": "legacy.csv",
        "reason": f"label for an unknown transaction_id nd2 (not in bronze.events within 14 "
        f"days before {D2})",
        "record": json.dumps(
            {
                "transaction_id": "nd2",
                "card_id": "c-nd2",
                "is_fraud": "1",
                "label_time": at(D2, "13:00:00"),
            }  # fmt: skip
        ),
        "source_line": 2,
        "_ingested_at": dt.datetime(2025, 2, 11, 23, 0),
        "_run_id": "old-run",
        "ingest_date": D2,
    }
    schema = lh.spark_schema(QUARANTINE)
    held = spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields)], schema)
    lh.write(held, QUARANTINE, "append")

    params = str(Path(settings.base_dir) / "params.yaml")
    result = CliRunner().invoke(
        app, ["ingest", "--retry-quarantine", "--params", params, "--run-id", "retry"]
    )

    assert result.exit_code == 0, result.output
    assert f"released 1 quarantined label(s) of {D2} to bronze.labels" in result.output
    after = snapshot(settings, D2)
    good, bad = after.of("legacy", 1)
    assert [(r["transaction_id"], r["_run_id"], r["_released_by"]) for r in good] == [
        ("nd2", "old-run", "retry")
    ]


# ------------------------------------------------------------------------- settings
def test_value_rules_must_name_features_of_the_contract(tmp_path):
    with pytest.raises(ConfigError, match=r"value_ranges names \['channel'\]"):
        load_settings(write_params(tmp_path, dataset={"value_ranges": {"channel": {"min": 0}}}))
    with pytest.raises(ConfigError, match="min 2.0 is above max 1.0"):
        load_settings(
            write_params(tmp_path, dataset={"value_ranges": {"amount": {"min": 2, "max": 1}}})
        )
    with pytest.raises(ConfigError, match="moved to dataset.allowed_values"):
        load_settings(write_params(tmp_path, validation={"allowed_values": {}}))
