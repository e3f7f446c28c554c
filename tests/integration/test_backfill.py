"""A range backfill in one Spark application against the same days run one by one (as the
regrow_ingest DAG runs them): the same bronze and silver tables, row for row. And a range
that cannot run fails before it writes anything."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regrow.catalog import (
    EVENTS,
    FEATURES,
    INGESTED_AT,
    LABELS,
    QUARANTINE,
    RUN_ID,
    SILVER_LABELS,
    SILVER_TABLES,
    SOURCE_FILE,
)
from regrow.cli import app
from regrow.data import simulate
from regrow.data.backfill import BackfillError, backfill
from regrow.data.features import build_features
from regrow.data.ingest import ingest_day
from regrow.data.labels import build_labels
from regrow.validation import validate_day
from tests.conftest import context_of, lakehouse_of, write_params

REPO = Path(__file__).resolve().parents[2]
# Three days: the later ones read the earlier (feature windows, labels of earlier events).
# A range's first day is a block of its own; the second and third are one block, whose
# silver is computed in one pass.
DAY0, DAYS = dt.date(2026, 1, 1), 3
SECTIONS = {
    "simulator": {"days": DAYS, "events_per_day": 300, "n_entities": 120,
                  "mean_label_delay_days": 1.0},
    "dataset": {"label_delay_days": 3},
}  # fmt: skip
# What differs between two runs of the same rows: when and by which run they were written
# (and the landing folder's path, which is each world's own).
VOLATILE = {RUN_ID, INGESTED_AT, SOURCE_FILE, "_source_version", "_source_versions",
            "ingest_date"}  # fmt: skip


FACTORY_MODE = "spark.sql.codegen.factoryMode"


def world(root):
    from regrow.settings import load_settings

    settings = load_settings(write_params(root, **SECTIONS))
    simulate.write_landing(settings.dataset, settings.simulator, settings.landing,
                           settings.resolve(settings.landing.path), DAYS)  # fmt: skip
    return settings


def rows(settings, table):
    found = lakehouse_of(settings).to_arrow(table).to_pylist()
    kept = [{k: v for k, v in r.items() if k not in VOLATILE} for r in found]
    return sorted(kept, key=lambda r: sorted((k, str(v)) for k, v in r.items()))


@pytest.fixture(scope="module")
def both(spark, tmp_path_factory):
    one_by_one = world(tmp_path_factory.mktemp("one_by_one"))
    for i in range(DAYS):
        day = DAY0 + dt.timedelta(days=i)
        ctx = context_of(one_by_one, spark, f"day-{day}")
        ingest_day(ctx, day)
        validate_day(ctx, day)
        build_features(ctx, day)
        build_labels(ctx, day)
        validate_day(ctx, day, tables=list(SILVER_TABLES))
    ranged = world(tmp_path_factory.mktemp("ranged"))
    seen = []

    def progress(day: dict) -> None:  # with how Spark ran the day's expressions
        seen.append(day | {FACTORY_MODE: spark.conf.get(FACTORY_MODE)})

    passes = logging.getLogger("regrow.data.passes")
    level, kept = passes.level, _Kept()
    passes.setLevel(logging.INFO)
    passes.addHandler(kept)
    try:
        report = backfill(
            context_of(ranged, spark, "backfill"), DAY0, DAY0 + dt.timedelta(days=DAYS - 1),
            progress,
        )  # fmt: skip
    finally:
        passes.removeHandler(kept)
        passes.setLevel(level)
    return one_by_one, ranged, report, seen, kept.messages


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def connected(spark_connect, tmp_path_factory):
    """The same range as ``jobs/backfill.py`` (as a DAG task runs it) on a Spark Connect
    server: no RDD, no broadcast, GX on a Connect DataFrame."""
    settings = world(tmp_path_factory.mktemp("connected"))
    last = DAY0 + dt.timedelta(days=DAYS - 1)
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "backfill.py"), "--from", str(DAY0), "--to",
         str(last), "--params", settings.resolve("params.yaml"), "--run-id", "connect",
         "--spark-remote", spark_connect.url],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    return settings


@pytest.mark.parametrize("table", [EVENTS, LABELS, QUARANTINE, FEATURES, SILVER_LABELS])
def test_a_range_writes_what_day_by_day_writes(both, connected, table):
    one_by_one, ranged, _, _, _ = both
    expected = rows(one_by_one, table)
    assert rows(ranged, table) == expected
    assert rows(connected, table) == expected  # on the Spark Connect server
    if table in (EVENTS, FEATURES):
        assert len(expected) == DAYS * 300


def test_days_run_in_order_and_data_docs_are_built_once(both):
    _, ranged, report, seen, passes = both
    assert [d["day"] for d in seen] == [str(DAY0 + dt.timedelta(days=i)) for i in range(DAYS)]
    # The first day alone, then the other two as one block: their silver in one pass.
    assert (
        passes
        == [
            f"{DAY0 + dt.timedelta(days=1)}..{DAY0 + dt.timedelta(days=2)}: 2 days computed in one pass"
        ]
        * 2
    )  # features, then labels
    assert report.blocked is None and report.data_docs.endswith("index.html")
    docs = ranged.resolve(ranged.reports_dir) + "/data_docs/index.html"
    assert "bronze.events" in open(docs, encoding="utf-8").read()


def test_small_days_run_interpreted_and_the_session_is_given_back(both, spark):
    """Days of 300 events are far below spark.interpreted_below_mib: the range ran with
    Spark's expressions interpreted (so the tables above equal across both modes: the
    day-by-day run compiled them), and the session has its own settings back after it."""
    _, _, report, seen, _ = both
    assert report.interpreted
    assert [d[FACTORY_MODE] for d in seen] == ["NO_CODEGEN"] * DAYS
    assert spark.conf.get(FACTORY_MODE) == "FALLBACK"
    assert spark.conf.get("spark.sql.codegen.wholeStage") == "true"


def test_the_users_own_codegen_conf_is_left_as_it_is(spark):
    from regrow.settings import SparkSettings
    from regrow.storage.session import interpreted

    own = SparkSettings(conf={"spark.sql.codegen.wholeStage": "true"})
    spark.conf.set("spark.sql.codegen.wholeStage", "true")
    with interpreted(spark, own):
        assert spark.conf.get(FACTORY_MODE) == "NO_CODEGEN"
        assert spark.conf.get("spark.sql.codegen.wholeStage") == "true"
    assert spark.conf.get(FACTORY_MODE) == "FALLBACK"


def test_days_whose_landing_files_are_gone_run_compiled(spark, tmp_path):
    """The CLI's day loops and the daily jobs decide as the range does, from the days'
    landed files; with none left (a landing cleaned up) a day's size is unknown."""
    from regrow.data.backfill import interpreted_if_small

    settings = world(tmp_path)
    ctx = context_of(settings, spark, "sizes")
    days = [DAY0 + dt.timedelta(days=i) for i in range(DAYS)]
    with interpreted_if_small(ctx, days) as small:
        assert small and spark.conf.get(FACTORY_MODE) == "NO_CODEGEN"
    shutil.rmtree(f"{settings.resolve(settings.landing.path)}/events")
    with interpreted_if_small(ctx, days) as small:
        assert not small and spark.conf.get(FACTORY_MODE) == "FALLBACK"
    # A landing that cannot be listed (here a protocol fsspec does not know) does not fail
    # the stages after ingest, which never read it: compiled, as an unknown size.
    elsewhere = settings.landing.model_copy(update={"path": "nosuch://bucket/landing"})
    ctx = context_of(settings.model_copy(update={"landing": elsewhere}), spark, "sizes")
    with interpreted_if_small(ctx, days) as small:
        assert not small and spark.conf.get(FACTORY_MODE) == "FALLBACK"


def test_a_reversed_range_or_a_missing_day_fails_before_writing(spark, tmp_path):
    settings = world(tmp_path)
    ctx = context_of(settings, spark, "bad")
    with pytest.raises(BackfillError, match="ends \\(2026-01-01\\) before it starts"):
        backfill(ctx, DAY0 + dt.timedelta(days=1), DAY0)
    hole = DAY0 + dt.timedelta(days=1)
    shutil.rmtree(f"{settings.resolve(settings.landing.path)}/events/{hole}")
    with pytest.raises(BackfillError, match=f"no landing files of events for {hole}"):
        backfill(ctx, DAY0, DAY0 + dt.timedelta(days=DAYS - 1))
    assert not lakehouse_of(settings).exists(EVENTS)  # nothing half-written
    params = settings.resolve("params.yaml")
    result = CliRunner().invoke(
        app, ["backfill", "--from", "2026-01-01", "--to", str(hole), "--params", params]
    )
    assert result.exit_code == 1 and f"no landing files of events for {hole}" in result.output
    assert "Traceback" not in result.output

    # --keep-going: the landed day is done, the missing one is named at the end.
    kept = CliRunner().invoke(
        app, ["backfill", "--from", str(DAY0), "--to", str(hole), "--keep-going",
              "--params", params],
    )  # fmt: skip
    assert kept.exit_code == 1
    assert f"[  1/2] {DAY0}: " in kept.stdout
    assert kept.stderr.splitlines() == [
        f"error: {hole}: no landing files of events for {hole}",
        f"error: 1 of 2 day(s) failed: {hole} (why: above)",
    ]
    assert set(lakehouse_of(settings).partition_rows(FEATURES)) == {str(DAY0)}


def test_a_blocked_day_stops_the_range_there_naming_it(spark, tmp_path):
    """The second of three days landed a header and no row: the bronze gate blocks it. The
    first day is complete; the third was ingested ahead (its bronze, as the DAG's next run
    would write it) and nothing after that."""
    from regrow.data.backfill import BackfillBlocked
    from regrow.settings import load_settings

    sections = {**SECTIONS, "simulator": {**SECTIONS["simulator"], "days": 3},
                "spark": {"interpreted_below_mib": 0}}  # fmt: skip
    settings = load_settings(write_params(tmp_path, **sections))
    root = settings.resolve(settings.landing.path)
    simulate.write_landing(settings.dataset, settings.simulator, settings.landing, root, 3)
    blocked, ahead = DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=2)
    folder = Path(root) / "events" / str(blocked)
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "part-00000.csv").write_text(",".join(settings.dataset.event_columns()) + "\n")

    with pytest.raises(BackfillBlocked) as caught:
        backfill(context_of(settings, spark, "blocked"), DAY0, ahead)
    report = caught.value.report
    assert not report.interpreted  # interpreted_below_mib 0: always compiled
    assert [d["day"] for d in report.days] == [str(DAY0)]
    assert report.blocked.startswith(f"{blocked}: ") and f"bronze of {ahead}" in report.blocked
    lakehouse = lakehouse_of(settings)
    assert set(lakehouse.partition_rows(FEATURES)) == {str(DAY0)}
    assert set(lakehouse.partition_rows(EVENTS)) == {str(DAY0), str(ahead)}


def test_a_day_blocked_by_its_silver_stops_the_range_before_any_later_silver(spark, tmp_path):
    """Three small days are one block: their bronze is ingested and validated, then their
    silver is computed together and written and validated day by day. The second day's
    silver breaks a critical expectation added to its suite (only the first day's dates
    are in its set): the first day is complete, the second's silver is written and
    blocked (as a day-by-day run leaves it), and the third day's silver, computed with the
    others, is not written; its bronze is, as reported."""
    from regrow.data.backfill import BackfillBlocked
    from regrow.settings import load_settings

    suites = tmp_path / "expectations"
    shutil.copytree(REPO / "expectations", suites)
    path = suites / "silver.features.json"
    suite = json.loads(path.read_text())
    suite["expectations"].append({
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "event_date", "value_set": [str(DAY0)]},
        "meta": {"severity": "critical", "row_level": False},
        "severity": "critical",
    })  # fmt: skip
    path.write_text(json.dumps(suite))
    sections = {**SECTIONS, "simulator": {**SECTIONS["simulator"], "days": 3},
                "validation": {"expectations_dir": str(suites)}}  # fmt: skip
    settings = load_settings(write_params(tmp_path, **sections))
    root = settings.resolve(settings.landing.path)
    simulate.write_landing(settings.dataset, settings.simulator, settings.landing, root, 3)
    blocked, after = DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=2)

    with pytest.raises(BackfillBlocked) as caught:
        backfill(context_of(settings, spark, "silver-blocked"), DAY0, after)

    report = caught.value.report
    assert [d["day"] for d in report.days] == [str(DAY0)]
    assert report.blocked.startswith(f"{blocked}: ") and "event_date" in report.blocked
    assert report.blocked.endswith(f"(bronze of {after} was ingested ahead; no more)")
    lakehouse = lakehouse_of(settings)
    assert set(lakehouse.partition_rows(EVENTS)) == {str(DAY0), str(blocked), str(after)}
    assert set(lakehouse.partition_rows(FEATURES)) == {str(DAY0), str(blocked)}
    assert str(after) not in lakehouse.partition_rows(SILVER_LABELS)
