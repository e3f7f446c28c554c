"""The daily monitoring report: one self-contained HTML file per monitored day.

It reads ``gold.monitoring`` and ``gold.decisions`` rows (never the tables themselves) and
shows, in order: the day's decision and a summary, the drift table (flagged checks first),
the shifted distributions, the score distribution, estimated vs realised performance over
time, and the decisions timeline. Figures are matplotlib SVG inlined in the page, so the
file opens offline; every string that comes from the data is escaped.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pyarrow as pa
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from regrow.catalog import DECISION_DATE, MONITOR_DATE
from regrow.model.decisions import (
    FORCE_PROMOTE,
    KEEP,
    NONE,
    POLICY_ACTIONS,
    PROMOTE,
    RETRAIN_FULL,
    RETRAIN_WARM,
    ROLLBACK,
)
from regrow.monitoring.results import (
    DRIFT_CHECKS,
    ESTIMATED,
    FLAGGED,
    INSUFFICIENT,
    OK,
    PERFORMANCE_CHECKS,
    PREDICTION_DRIFT,
    REALISED,
    SCHEMA,
)

logger = logging.getLogger(__name__)

REPORTED_METRICS = ("pr_auc", "roc_auc")
STATUS_ORDER = (FLAGGED, INSUFFICIENT, OK)
DRIFT_HEADER = ("check", "column", "kind", "status", "statistic", "p-value", "adjusted p", "effect",
                "JS", "threshold", "n reference", "n current", "reason")  # fmt: skip
DECISION_COLUMNS = (
    DECISION_DATE,
    "decided_at",
    "action",
    "trigger",
    "reason",
    "model_version",
    "checks",
)
# Marker and colour per action in the timeline chart; an unknown action gets the last one.
ACTION_STYLE = {
    NONE: ("o", "#9e9e9e"),
    RETRAIN_WARM: ("^", "#ef6c00"),
    RETRAIN_FULL: ("s", "#c62828"),
    PROMOTE: ("P", "#2e7d32"),
    KEEP: ("X", "#546e7a"),
    FORCE_PROMOTE: ("*", "#6a1b9a"),
    ROLLBACK: ("v", "#4e342e"),
    None: ("D", "#000000"),
}
# Deterministic SVG (ids from a fixed salt, no date) and column names drawn as written:
# with parse_math a name holding two "$" would be parsed as TeX and could fail to draw.
RC = {"svg.hashsalt": "regrow", "svg.fonttype": "path", "text.parse_math": False}
CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#212121}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged{background:#ffebee}tr.insufficient_data{background:#fff8e1}
.decision{border-left:.5rem solid #9e9e9e;background:#f5f5f5;padding:.5rem 1rem;margin:1rem 0}
.decision .action{font-size:1.6rem;font-weight:bold;margin:.2rem 0}
.decision.retrain{border-color:#c62828;background:#ffebee}
.counts span{margin-right:1rem}.empty{color:#757575;font-style:italic}
figure{display:inline-block;margin:.5rem}svg{max-width:100%;height:auto}
"""


# ---------------------------------------------------------------------- public API
def write_report(
    day: dt.date, monitoring: pa.Table, decisions: pa.Table, out_dir: Path, title: str = "regrow"
) -> Path:
    """Write ``out_dir/monitoring-<day>.html`` and return its path.

    Args:
        day: the monitored day.
        monitoring: ``gold.monitoring`` rows (its ``SCHEMA``); the day's rows fill the drift
            sections, every row up to ``day`` the performance history.
        decisions: ``gold.decisions`` rows (its ``SCHEMA``; an empty table when there are
            none yet); rows after ``day`` are left out, so a rerun for an old day shows
            what was known then.
        out_dir: created if missing.
        title: the page's title prefix.
    """
    rows = [r for r in _rows(monitoring, SCHEMA.names, "gold.monitoring") if r[MONITOR_DATE] <= day]
    decided = [
        r
        for r in _rows(decisions, DECISION_COLUMNS, "gold.decisions")
        if r[DECISION_DATE] is None or r[DECISION_DATE] <= day
    ]
    today = [r for r in rows if r[MONITOR_DATE] == day]
    drift = sorted((r for r in today if r["check"] in DRIFT_CHECKS), key=_drift_order)
    heading = f"{title} — monitoring {day.isoformat()}"
    with mpl.rc_context(RC):  # read when the figures' texts are made, and when saved
        body = [
            f"<h1>{escape(heading)}</h1>",
            _summary(today, drift, decided, day),
            "<h2>Drift checks</h2>",
            _drift_table(drift),
            "<h2>Shifted distributions</h2>",
            _shifted(drift),
            "<h2>Score distribution</h2>",
            _score_distribution(drift),
            "<h2>Estimated vs realised performance</h2>",
            _performance(_series(rows)),
            "<h2>Decisions</h2>",
            _timeline(decided),
        ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"monitoring-{day.isoformat()}.html"
    path.write_text(page, encoding="utf-8")
    logger.info("wrote the monitoring report of %s to %s (%d checks)", day, path, len(today))
    return path


def performance_series(monitoring: pa.Table) -> list[dict[str, Any]]:
    """Estimated and realised performance per (metric, data_date), sorted by both.

    Each value comes from the latest ``monitor_date`` that computed it (a realised metric is
    recomputed as labels mature), and the two kinds of one day are paired in one dict:
    ``{"data_date", "metric", "estimated", "estimated_low", "estimated_high", "realised",
    "realised_low", "realised_high", "rows"}``. ``rows`` counts the rows behind the realised
    value, or behind the estimate while nothing is realised. A row without a data_date
    describes its monitor_date.
    """
    return _series(_rows(monitoring, SCHEMA.names, "gold.monitoring"))


def performance_html(series: list[dict[str, Any]]) -> str:
    """The report's "estimated vs realised performance" figures (inline SVG, one per metric
    of :data:`REPORTED_METRICS`) from :func:`performance_series`; a line when empty."""
    with mpl.rc_context(RC):
        return _performance(series)


def write_performance_series(monitoring: pa.Table, path: Path, metric: str = "pr_auc") -> Path:
    """Write one metric's series as a CSV for ``dvc plots``: data_date, estimated, realised
    (an empty cell where a value is missing; a day with neither is left out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["data_date", "estimated", "realised"])
        for point in performance_series(monitoring):
            values = [point[kind] for kind in ("estimated", "realised")]
            if point["metric"] == metric and any(v is not None for v in values):
                writer.writerow([point["data_date"], *("" if v is None else v for v in values)])
    return path


# ---------------------------------------------------------------------- rows
def _rows(table: pa.Table, needed: Sequence[str], name: str) -> list[dict[str, Any]]:
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise ValueError(f"{name} rows lack the columns {missing}; expected {name}'s SCHEMA")
    return table.select(list(needed)).to_pylist()


def _series(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[tuple[str, dt.date, str], dict[str, Any]] = {}
    for row in rows:
        if row["check"] not in PERFORMANCE_CHECKS:
            continue
        key = (row["column"], row["data_date"] or row[MONITOR_DATE], row["check"])
        if key not in latest or row[MONITOR_DATE] >= latest[key][MONITOR_DATE]:
            latest[key] = row
    series: dict[tuple[str, dt.date], dict[str, Any]] = {}
    for (metric, data_date, check), row in latest.items():
        kind = "estimated" if check == ESTIMATED else "realised"
        point = series.setdefault((metric, data_date), _empty_point(metric, data_date))
        point[kind], point[f"{kind}_low"], point[f"{kind}_high"] = (
            row["value"],
            row["ci_low"],
            row["ci_high"],
        )
        if check == REALISED or point["rows"] is None:
            point["rows"] = row["n_current"]
    return [series[key] for key in sorted(series)]


def _empty_point(metric: str, data_date: dt.date) -> dict[str, Any]:
    point: dict[str, Any] = {"data_date": data_date.isoformat(), "metric": metric}
    for kind in ("estimated", "realised"):
        point.update({kind: None, f"{kind}_low": None, f"{kind}_high": None})
    return {**point, "rows": None}


def _drift_order(row: dict[str, Any]) -> tuple[int, int, str]:
    status = STATUS_ORDER.index(row["status"]) if row["status"] in STATUS_ORDER else 3
    return status, DRIFT_CHECKS.index(row["check"]), row["column"] or ""


def _detail(row: dict[str, Any]) -> dict[str, Any]:
    try:
        detail = json.loads(row["detail"] or "{}")
    except ValueError:
        logger.warning("unreadable detail JSON for %s of %s", row["check"], row["column"])
        return {}
    return detail if isinstance(detail, dict) else {}


# ---------------------------------------------------------------------- formatting
def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.2e}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _table(header: Sequence[str], rows: list[tuple[str, list[str]]], css: str) -> str:
    """An HTML table; cells are already escaped, each row comes with its class."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f'<tr class="{cls}">{"".join(cells)}</tr>\n' for cls, cells in rows)
    return f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


# ---------------------------------------------------------------------- sections
def _summary(today: list[dict], drift: list[dict], decided: list[dict], day: dt.date) -> str:
    parts = [_day_decision(decided, day)]
    if not today:
        parts.append('<p class="empty">no monitoring rows for this day</p>')
        return "\n".join(parts)
    champions = sorted({r["champion_version"] for r in today if r["champion_version"]})
    items = [("champion version", ", ".join(champions) or "—")]
    for window, n in (("reference", "n_reference"), ("current", "n_current")):
        spans = sorted({r[f"{window}_window"] for r in drift if r[f"{window}_window"]})
        rows = max((r[n] for r in drift if r[n] is not None), default=None)
        items.append((f"{window} window", f"{', '.join(spans) or '—'} ({_count(rows)} rows)"))
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    counts = "".join(
        f'<span class="{s}"><b>{sum(r["status"] == s for r in today)}</b> {s}</span>'
        for s in STATUS_ORDER
    )
    parts += [f"<dl>{dl}</dl>", f'<p class="counts">checks: {counts}</p>']
    return "\n".join(parts)


def _day_decision(decided: list[dict], day: dt.date) -> str:
    policy = [r for r in decided if r[DECISION_DATE] == day and r["action"] in POLICY_ACTIONS]
    if not policy:
        return '<div class="decision"><p class="empty">no retrain decision for this day</p></div>'
    row = max(policy, key=lambda r: r["decided_at"] or dt.datetime.min.replace(tzinfo=dt.UTC))
    css = "decision retrain" if row["action"] != NONE else "decision"
    checks = ""
    if row["checks"]:
        try:
            pretty = json.dumps(json.loads(row["checks"]), indent=2, sort_keys=True)
        except ValueError:
            pretty = row["checks"]
        checks = f"<details><summary>checks</summary><pre>{escape(pretty)}</pre></details>"
    return (
        f'<div class="{css}"><p class="action">decision: {escape(row["action"])}</p>'
        f"<p><b>trigger:</b> {escape(row['trigger'] or '—')}</p>"
        f"<p><b>reason:</b> {escape(row['reason'] or '—')}</p>{checks}</div>"
    )


def _drift_table(drift: list[dict]) -> str:
    if not drift:
        return '<p class="empty">no monitoring rows for this day</p>'
    rows = []
    for r in drift:
        text = [escape(r[c] or "") for c in ("check", "column", "kind", "status")]
        numbers = [
            _number(r[c])
            for c in ("statistic", "p_value", "p_adjusted", "effect", "js", "threshold")
        ]
        numbers += [_count(r["n_reference"]), _count(r["n_current"])]
        reason = escape(str(_detail(r).get("reason", "")))
        cells = [f"<td>{t}</td>" for t in text] + [f'<td class="num">{n}</td>' for n in numbers]
        rows.append((escape(r["status"] or ""), [*cells, f"<td>{reason}</td>"]))
    return _table(DRIFT_HEADER, rows, "drift")


def _shifted(drift: list[dict]) -> str:
    figures = [
        _distribution(r) for r in drift if r["status"] == FLAGGED and r["check"] != PREDICTION_DRIFT
    ]
    figures = [f for f in figures if f]
    return "\n".join(figures) or '<p class="empty">no flagged check with a distribution</p>'


def _score_distribution(drift: list[dict]) -> str:
    score = [r for r in drift if r["check"] == PREDICTION_DRIFT]
    return (score and _distribution(score[0])) or '<p class="empty">no score distribution</p>'


def _performance(series: list[dict]) -> str:
    figures = []
    for metric in REPORTED_METRICS:
        points = [p for p in series if p["metric"] == metric]
        if points:
            figures.append(figure_html(_performance_chart(metric, points), metric))
    return "\n".join(figures) or '<p class="empty">no performance rows yet</p>'


def _timeline(decided: list[dict]) -> str:
    if not decided:
        return '<p class="empty">no decisions yet</p>'
    newest = sorted(
        decided,
        key=lambda r: (
            r[DECISION_DATE] or dt.date.min,
            r["decided_at"] or dt.datetime.min.replace(tzinfo=dt.UTC),
        ),
        reverse=True,
    )
    rows = [
        (
            "",
            [
                f"<td>{escape(str(r[DECISION_DATE] or '—'))}</td>",
                *(
                    f"<td>{escape(r[c] or '—')}</td>"
                    for c in ("action", "trigger", "reason", "model_version")
                ),
            ],
        )
        for r in newest
    ]
    table = _table(["date", "action", "trigger", "reason", "model version"], rows, "decisions")
    dated = [r for r in decided if r[DECISION_DATE] is not None]
    chart = figure_html(_actions_chart(dated), "decisions over time") if dated else ""
    return f"{chart}\n{table}"


# ---------------------------------------------------------------------- figures
def _distribution(row: dict[str, Any]) -> str:
    """Reference vs current proportions per bin, from the detail's counts ('' if none)."""
    detail = _detail(row)
    bins, reference, current = (detail.get(k) for k in ("bins", "reference", "current"))
    if not (isinstance(bins, list) and isinstance(reference, list) and isinstance(current, list)):
        return ""
    if (
        not reference
        or len(reference) != len(current)
        or len(bins) not in (len(reference), len(reference) + 1)
        or not all(
            isinstance(c, int | float) and not isinstance(c, bool) for c in reference + current
        )
    ):
        logger.warning(
            "no chart for %s of %s: its detail's bins and counts do not match",
            row["check"],
            row["column"],
        )
        return ""
    labels = _bin_labels(bins, len(reference))
    fig = Figure(figsize=(min(14.0, max(6.0, 0.45 * len(labels))), 3.2), layout="constrained")
    ax = fig.add_subplot()
    x = range(len(labels))
    for offset, name, counts, colour in (
        (-0.2, "reference", reference, "#90a4ae"),
        (0.2, "current", current, "#e53935"),
    ):
        total = sum(counts)
        ax.bar(
            [i + offset for i in x],
            [c / total if total else 0.0 for c in counts],
            width=0.4,
            label=name,
            color=colour,
        )
    ax.set_xticks(
        list(x),
        labels,
        rotation=45 if len(labels) > 6 else 0,
        ha="right" if len(labels) > 6 else "center",
        fontsize=8,
    )
    ax.set_ylabel("share of rows")
    ax.set_title(f"{row['check']} · {row['column']} ({row['status']})", fontsize=10)
    ax.legend(fontsize=8)
    return figure_html(fig, f"{row['check']} of {row['column']}")


def _bin_labels(bins: list[Any], n: int) -> list[str]:
    def short(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text if len(text) <= 24 else text[:23] + "…"

    if len(bins) == n + 1:  # edges of numeric bins
        return [f"{short(lo)}–{short(hi)}" for lo, hi in zip(bins, bins[1:], strict=False)]
    return [short(b) for b in bins]


def _performance_chart(metric: str, points: list[dict]) -> Figure:
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    dates = [dt.date.fromisoformat(p["data_date"]) for p in points]
    for kind, style, colour in (("estimated", "--", "#1e88e5"), ("realised", "-", "#212121")):
        values = [_nan(p[kind]) for p in points]
        if all(math.isnan(v) for v in values):
            continue
        ax.plot(dates, values, style, marker="o", markersize=3, color=colour, label=kind)
        low, high = (
            [_nan(p[f"{kind}_low"]) for p in points],
            [_nan(p[f"{kind}_high"]) for p in points],
        )
        if not all(math.isnan(v) for v in low + high):
            ax.fill_between(dates, low, high, color=colour, alpha=0.15, linewidth=0)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_title(f"{metric}: estimated vs realised, by data date", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _actions_chart(decided: list[dict]) -> Figure:
    seen = {r["action"] for r in decided}
    actions = [a for a in ACTION_STYLE if a in seen] + sorted(
        a for a in seen - set(ACTION_STYLE) if a is not None
    )
    fig = Figure(figsize=(8, 0.6 + 0.35 * len(actions)), layout="constrained")
    ax = fig.add_subplot()
    for y, action in enumerate(actions):
        marker, colour = ACTION_STYLE.get(action, ACTION_STYLE[None])
        dates = [r[DECISION_DATE] for r in decided if r["action"] == action]
        ax.scatter(dates, [y] * len(dates), marker=marker, color=colour, s=40)
    ax.set_yticks(range(len(actions)), [str(a) for a in actions], fontsize=8)
    ax.set_ylim(-0.6, len(actions) - 0.4)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return fig


def figure_html(fig: Figure, caption: str) -> str:
    """The figure as inline SVG in a <figure>; the figure is cleared afterwards."""
    buffer = io.StringIO()
    try:
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        fig.clear()
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
