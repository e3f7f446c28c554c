"""The daily monitoring report: an offline HTML page from gold.monitoring and gold.decisions
rows built by hand, the performance series it plots, and its CSV for dvc plots."""

from __future__ import annotations

import csv
import datetime as dt

import pyarrow as pa
import pytest

from regrow.model.decisions import PROMOTE, RETRAIN_FULL, RETRAIN_WARM, Decision
from regrow.model.decisions import SCHEMA as DECISIONS_SCHEMA
from regrow.monitoring.report import performance_series, write_performance_series, write_report
from regrow.monitoring.results import (
    CATEGORICAL,
    DRIFT,
    ESTIMATED,
    FLAGGED,
    INSUFFICIENT,
    METRIC,
    NULL_RATE,
    NUMERIC,
    OK,
    PREDICTION_DRIFT,
    REALISED,
    SCHEMA,
    SCORE,
    CheckResult,
    to_row,
)

D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
BINS = {"bins": [0.0, 10.0, 100.0, 1000.0], "reference": [50, 30, 20], "current": [10, 30, 60]}


def row(check: str, column: str, status: str = OK, *, day: dt.date = D3, data_date=None, **kw):
    result = CheckResult(check=check, column=column, kind=kw.pop("kind", NUMERIC), status=status,
                         **kw)  # fmt: skip
    return to_row(result, monitor_date=day, data_date=data_date or day,
                  reference_window="2026-02-01..2026-02-28", current_window=str(day),
                  champion_version="7", run_id="run")  # fmt: skip


def monitoring(*rows) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def decisions(*made: Decision) -> pa.Table:
    return pa.Table.from_pylist([d.row() for d in made], schema=DECISIONS_SCHEMA)


def decision(action: str, day: dt.date, reason: str, hour: int = 22, **kw) -> Decision:
    at = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
    return Decision(action=action, model_name="fraud", model_version=kw.pop("version", "7"),
                    champion_before="7", champion_after="7", reason=reason, decided_at=at,
                    actor="test", **kw)  # fmt: skip


def section(html: str, heading: str) -> str:
    """The page between ``<h2>heading</h2>`` and the next ``<h2>``."""
    start = html.index(f"<h2>{heading}</h2>")
    end = html.find("<h2>", start + 1)
    return html[start : end if end != -1 else len(html)]


def perf(check: str, metric: str, value: float | None, *, day: dt.date, data_date: dt.date, n: int):
    ci = {} if value is None else {"ci_low": value - 0.05, "ci_high": value + 0.05}
    return row(check, metric, day=day, data_date=data_date, kind=METRIC, value=value,
               n_current=n, **ci)  # fmt: skip


# ---------------------------------------------------------------------- report
def test_the_report_puts_the_day_decision_first_and_flagged_checks_before_the_others(tmp_path):
    table = monitoring(
        row(DRIFT, "country", OK, kind=CATEGORICAL, p_value=0.4, n_reference=900, n_current=80),
        row(DRIFT, "age", INSUFFICIENT, detail={"reason": "12 current rows < 50"}),
        row(DRIFT, "amount", FLAGGED, statistic=0.31, p_value=1.2e-9, p_adjusted=3.6e-9,
            effect=0.42, js=0.2, threshold=0.2, n_reference=1000, n_current=100, detail=BINS),
        row(DRIFT, "amount", FLAGGED, day=D2, detail=BINS),  # another day: not in the table
    )  # fmt: skip
    made = decisions(
        decision(RETRAIN_WARM, D3, "amount drifted: psi 0.42 >= 0.2", trigger="drift",
                 checks=[{"check": "psi", "value": 0.42}]),
        decision(PROMOTE, D3, "promoted: a gate row, not the day's policy decision", hour=23),
        decision(RETRAIN_FULL, D2, "yesterday's decision"),
    )  # fmt: skip

    path = write_report(D3, table, made, tmp_path / "reports", title="fraud")

    assert path == tmp_path / "reports" / "monitoring-2026-03-03.html"
    html = path.read_text(encoding="utf-8")
    summary = html[: html.index("<h2>Drift checks</h2>")]
    assert "decision: retrain_warm" in summary and "amount drifted: psi 0.42 &gt;= 0.2" in summary
    assert "drift" in summary and "yesterday" not in summary and "a gate row" not in summary
    assert "1,000 rows" in summary and "2026-02-01..2026-02-28" in summary
    assert "<b>1</b> flagged" in summary and "<b>1</b> insufficient_data" in summary
    drift = section(html, "Drift checks")
    assert drift.index(">amount<") < drift.index(">age<") < drift.index(">country<")
    assert drift.count(">amount<") == 1  # D2's row is history, not this day's table
    assert "1.20e-09" in drift and "12 current rows &lt; 50" in drift


def test_a_flagged_feature_gets_a_bar_chart_and_an_ok_only_day_gets_none(tmp_path):
    flagged = monitoring(
        row(DRIFT, "amount", FLAGGED, detail=BINS),
        row(DRIFT, "age", OK),
        row(DRIFT, "odd", FLAGGED, detail={**BINS, "current": [1, 2]}),  # counts do not match
        row(DRIFT, "odder", FLAGGED, detail={**BINS, "current": ["a", "b", "c"]}),
    )
    ok_only = monitoring(
        row(DRIFT, "amount", OK, detail=BINS),
        row(PREDICTION_DRIFT, "score", OK, kind=SCORE, detail=BINS),
    )
    empty = DECISIONS_SCHEMA.empty_table()

    shifted = section(
        write_report(D3, flagged, empty, tmp_path).read_text(), "Shifted distributions"
    )
    html = write_report(D3, ok_only, empty, tmp_path / "ok").read_text()

    assert shifted.count("<svg") == 1 and "drift of amount" in shifted  # the odd ones: none
    assert "<svg" not in section(html, "Shifted distributions")
    assert section(html, "Score distribution").count("<svg") == 1  # shown though not flagged


def test_strings_from_the_data_are_escaped_and_never_parsed_as_tex(tmp_path):
    evil = "<script>alert(1)</script>"
    table = monitoring(
        row(DRIFT, evil, FLAGGED, kind=CATEGORICAL,
            detail={"bins": ["<b>", "$\\frac{$", None], "reference": [1, 2, 3],
                    "current": [3, 2, 1], "reason": "<img src=x onerror=alert(2)>"}),
        row(NULL_RATE, "$\\frac{a}{$", FLAGGED, detail={**BINS}),
    )  # fmt: skip
    made = decisions(decision(RETRAIN_WARM, D3, "</div><script>x()</script>", trigger="<i>"))

    html = write_report(D3, table, made, tmp_path, title="<title>").read_text()

    assert "<script" not in html and "<img" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section(html, "Drift checks")
    assert "&lt;/div&gt;&lt;script&gt;x()&lt;/script&gt;" in html and "&lt;title&gt;" in html
    assert section(html, "Shifted distributions").count("<svg") == 2


def test_a_day_without_rows_still_renders_its_history(tmp_path):
    history = monitoring(
        perf(ESTIMATED, "pr_auc", 0.3, day=D1, data_date=D1, n=100),
        perf(ESTIMATED, "roc_auc", 0.8, day=D1, data_date=D1, n=100),
    )
    made = decisions(decision(RETRAIN_FULL, D1, "scheduled"), decision(PROMOTE, D3, "later"))

    html = write_report(D2, history, made, tmp_path).read_text()

    assert html.count("no monitoring rows for this day") == 2  # the summary and the table
    assert "no retrain decision for this day" in html
    performance = section(html, "Estimated vs realised performance")
    assert performance.count("<svg") == 2 and "<figcaption>roc_auc</figcaption>" in performance
    timeline = section(html, "Decisions")
    assert "scheduled" in timeline and "later" not in timeline  # D3 is after the report's day
    assert timeline.count("<svg") == 1


def test_no_rows_at_all_render_an_empty_report(tmp_path):
    path = write_report(D3, SCHEMA.empty_table(), DECISIONS_SCHEMA.empty_table(), tmp_path)

    html = path.read_text()
    assert "no monitoring rows for this day" in html and "no decisions yet" in html
    assert "no performance rows yet" in html and "<svg" not in html


def test_the_decisions_timeline_is_newest_first(tmp_path):
    made = decisions(decision(RETRAIN_FULL, D1, "first reason"),
                     decision(PROMOTE, D3, "third reason", version="8"),
                     decision(RETRAIN_WARM, D2, "second reason"))  # fmt: skip

    timeline = section(
        write_report(D3, SCHEMA.empty_table(), made, tmp_path).read_text(), "Decisions"
    )

    assert timeline.index("third") < timeline.index("second") < timeline.index("first")
    assert "<td>8</td>" in timeline


def test_rows_without_a_column_of_the_schema_are_refused_by_name(tmp_path):
    table = monitoring(row(DRIFT, "amount")).drop_columns(["detail"])

    with pytest.raises(ValueError, match=r"gold\.monitoring.*'detail'"):
        write_report(D3, table, DECISIONS_SCHEMA.empty_table(), tmp_path)
    with pytest.raises(ValueError, match=r"gold\.decisions.*'action'"):
        write_report(D3, SCHEMA.empty_table(), pa.table({"decision_date": [D3]}), tmp_path)


# ---------------------------------------------------------------------- performance series
def test_performance_series_takes_the_latest_monitor_date_and_pairs_the_two_kinds():
    table = monitoring(
        perf(REALISED, "pr_auc", 0.50, day=D3, data_date=D1, n=150),  # D1's labels matured more
        perf(REALISED, "pr_auc", 0.40, day=D2, data_date=D1, n=90),
        perf(ESTIMATED, "pr_auc", 0.35, day=D1, data_date=D1, n=1000),
        perf(ESTIMATED, "pr_auc", 0.30, day=D3, data_date=D3, n=1200),
        perf(ESTIMATED, "roc_auc", 0.80, day=D3, data_date=D3, n=1200),
        row(DRIFT, "amount", FLAGGED, value=0.9),
    )

    series = performance_series(table)

    assert [(p["metric"], p["data_date"]) for p in series] == [
        ("pr_auc", "2026-03-01"), ("pr_auc", "2026-03-03"), ("roc_auc", "2026-03-03")
    ]  # fmt: skip
    assert series[0] == pytest.approx({
        "data_date": "2026-03-01", "metric": "pr_auc", "estimated": 0.35,
        "estimated_low": 0.30, "estimated_high": 0.40, "realised": 0.50, "realised_low": 0.45,
        "realised_high": 0.55, "rows": 150,
    })  # fmt: skip
    assert series[1]["realised"] is None and series[1]["rows"] == 1200


def test_the_csv_holds_one_metric_with_empty_cells_for_missing_values(tmp_path):
    table = monitoring(
        perf(ESTIMATED, "pr_auc", 0.35, day=D1, data_date=D1, n=10),
        perf(REALISED, "pr_auc", 0.5, day=D3, data_date=D1, n=10),
        perf(ESTIMATED, "pr_auc", 0.25, day=D2, data_date=D2, n=10),
        perf(ESTIMATED, "roc_auc", 0.8, day=D2, data_date=D2, n=10),
        # a matured day that was never scored: realised is insufficient_data, no value
        perf(REALISED, "pr_auc", None, day=D3, data_date=D3, n=0),
    )

    path = write_performance_series(table, tmp_path / "plots" / "pr_auc.csv")

    with path.open(newline="") as f:
        lines = list(csv.reader(f))
    assert lines == [["data_date", "estimated", "realised"], ["2026-03-01", "0.35", "0.5"],
                     ["2026-03-02", "0.25", ""]]  # fmt: skip
    roc = write_performance_series(table, tmp_path / "roc.csv", metric="roc_auc")
    assert roc.read_text().splitlines()[1:] == ["2026-03-02,0.8,"]
    empty = write_performance_series(SCHEMA.empty_table(), tmp_path / "empty.csv")
    assert empty.read_text() == "data_date,estimated,realised\n"
    assert performance_series(SCHEMA.empty_table()) == []
