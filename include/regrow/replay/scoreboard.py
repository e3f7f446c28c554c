"""The replay's scoreboard: quality against training compute, per policy, as a table
(``gold.replay`` rows summed up) and an HTML page with the daily quality per policy (retrain
markers, the scenario's true drift onset) and the cost–quality frontier.

A *false retrain* is a retrain that bought nothing: its challenger was kept by the gate, or
it was promoted and then did worse than the model it replaced on the days after it
(``later_gain`` <= 0, both scoring the same days against their eventual labels).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pyarrow as pa
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from regrow.monitoring.report import CSS, RC, figure_html
from regrow.replay.policies import DAILY_FULL, NEVER

if TYPE_CHECKING:
    from regrow.replay.engine import PolicyRun
    from regrow.replay.freshness import Freshness

logger = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("replay_id", pa.string()), ("source", pa.string()), ("policy", pa.string()),
    ("day", pa.date32()), ("model_version", pa.int32()), ("model_trees", pa.int32()),
    ("rows", pa.int64()), ("estimated", pa.float64()), ("realised_known", pa.float64()),
    ("flagged", pa.string()), ("score_flagged", pa.bool_()), ("action", pa.string()),
    ("trigger", pa.string()), ("reason", pa.string()), ("retrained", pa.bool_()),
    ("train_mode", pa.string()), ("promoted", pa.bool_()), ("gate_reason", pa.string()),
    ("train_rows", pa.int64()), ("trees_added", pa.int32()), ("train_work", pa.int64()),
    ("train_cpu_seconds", pa.float64()), ("train_seconds", pa.float64()),
    ("matured", pa.bool_()), ("positives", pa.int64()), ("pr_auc", pa.float64()),
    ("roc_auc", pa.float64()), ("later_gain", pa.float64()),
])  # fmt: skip

# The scoreboard's columns: (key, heading, format). Time columns are measured; the others
# are the same for two runs of the same replay.
COLUMNS = (
    ("policy", "policy", "{}"),
    ("mean_pr_auc", "mean PR-AUC", "{:.4f}"),
    ("mean_roc_auc", "mean ROC-AUC", "{:.4f}"),
    ("quality_vs_daily_full", "quality / daily_full", "{:.3f}"),
    ("gain_vs_never", "gain vs never", "{:+.1%}"),
    ("retrains", "retrains", "{}"),
    ("warm_retrains", "warm", "{}"),
    ("full_retrains", "full", "{}"),
    ("promotions", "promotions", "{}"),
    ("false_retrains", "false retrains", "{}"),
    ("train_work", "rows x trees", "{:,}"),
    ("work_vs_daily_full", "compute / daily_full", "{:.4f}"),
    ("train_cpu_seconds", "training CPU-s", "{:.1f}"),
    ("wall_seconds", "wall s", "{:.1f}"),
    ("final_version", "final model", "v{}"),
)
MEASURED = frozenset({"train_cpu_seconds", "wall_seconds"})


def summarise(runs: Sequence[PolicyRun]) -> list[dict[str, Any]]:
    """One row per policy: mean daily quality on the matured days, retrains, promotions,
    false retrains, training compute, and the ratios to ``daily_full`` and ``never`` when
    they were replayed too."""
    board = []
    for run in runs:
        rows = run.rows
        retrained = [r for r in rows if r["retrained"]]
        false = [r for r in retrained if not r["promoted"]
                 or (r.get("later_gain") is not None and r["later_gain"] <= 0)]  # fmt: skip
        board.append({
            "policy": run.policy,
            "days": len(rows),
            "matured_days": sum(1 for r in rows if r.get("matured")),
            "mean_pr_auc": _mean(r.get("pr_auc") for r in rows),
            "mean_roc_auc": _mean(r.get("roc_auc") for r in rows),
            "retrains": len(retrained),
            "warm_retrains": sum(1 for r in retrained if r["train_mode"] == "warm_start"),
            "full_retrains": sum(1 for r in retrained if r["train_mode"] == "stateless"),
            "promotions": sum(1 for r in rows if r["promoted"]),
            "false_retrains": len(false),
            "train_work": sum(r["train_work"] for r in rows),
            "train_cpu_seconds": round(sum(r["train_cpu_seconds"] for r in rows), 3),
            "wall_seconds": run.seconds,
            "final_version": rows[-1]["model_version"] if rows else 1,
        })  # fmt: skip
    by_name = {b["policy"]: b for b in board}
    full, never = by_name.get(DAILY_FULL), by_name.get(NEVER)
    for b in board:
        b["quality_vs_daily_full"] = _ratio(b["mean_pr_auc"], full and full["mean_pr_auc"])
        b["work_vs_daily_full"] = _ratio(b["train_work"], full and full["train_work"])
        ratio = _ratio(b["mean_pr_auc"], never and never["mean_pr_auc"])
        b["gain_vs_never"] = None if ratio is None else round(ratio - 1, 6)
    return board


def _mean(values) -> float | None:
    found = [v for v in values if v is not None and not math.isnan(v)]
    return round(float(np.mean(found)), 6) if found else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 6)


def table_text(board: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The scoreboard as text cells (heading first), for the CLI and the page."""
    shown = [c for c in COLUMNS if any(b.get(c[0]) is not None for b in board)]
    out = [[heading for _, heading, _ in shown]]
    for b in board:
        out.append([format_cell(b.get(key), fmt) for key, _, fmt in shown])
    return out


def freshness_table(summary: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The value of freshness per staleness as text cells, with a heading row."""
    head = ["staleness", "days", "mean PR-AUC", "mean ROC-AUC", "PR-AUC / freshest"]
    return [head] + [
        [f"{s['staleness_days']} d", str(s["days_measured"]),
         format_cell(s["mean_pr_auc"], "{:.4f}"), format_cell(s["mean_roc_auc"], "{:.4f}"),
         format_cell(s["pr_auc_vs_freshest"], "{:.3f}")]
        for s in summary
    ]  # fmt: skip


def format_cell(value: Any, fmt: str) -> str:
    """A table cell: the value formatted, or "n/a" for none."""
    return "n/a" if value is None else fmt.format(value)


def write_scoreboard(
    path: Path,
    replay_id: str,
    source: str,
    runs: Sequence[PolicyRun],
    board: Sequence[dict[str, Any]],
    truth: dict[str, Any],
    first: dict[str, Any],
    freshness: Freshness | None = None,
) -> Path:
    """Write the scoreboard page to ``path`` and return it (with ``freshness``, its
    section too; without policies, only that section)."""
    onset = truth.get("onset_date")
    days = [r["day"] for r in runs[0].rows] if runs and runs[0].rows else []
    if not days and freshness is not None:
        days = freshness.days
    heading = f"regrow — replay {replay_id}"
    facts = [
        f"history: {escape(source)}",
        f"days scored: {days[0]}..{days[-1]} ({len(days)})" if days else "no day scored",
        f"first model: cut-off {first.get('cutoff')}, {first.get('trees')} trees",
    ]
    if truth:
        facts.append(f"scenario: {escape(str(truth.get('scenario')))}"
                     + (f", true drift onset {onset}" if onset else ", no drift"))  # fmt: skip
    sections = []
    with mpl.rc_context(RC):
        if runs:
            sections += [
                "<h2>Scoreboard</h2>",
                _table_html(table_text(board), "scoreboard"),
                "<p>Quality: PR-AUC and ROC-AUC of each day's scores against its eventually "
                "matured labels (days whose labels had not all matured by the end are left "
                "out). Compute: rows x trees added over the replay's retrains (the same on "
                "every run) and the training thread's CPU seconds (measured). A false retrain "
                "was kept by the gate, or did worse than the model it replaced on the days "
                "after it.</p>",
                "<h2>Daily quality</h2>",
                figure_html(_quality_chart(runs, onset), "daily PR-AUC per policy (7-day mean)"),
                "<h2>Cost and quality</h2>",
                figure_html(_frontier_chart(board), "cost–quality frontier"),
            ]
        if freshness is not None:
            sections += [
                "<h2>The value of freshness</h2>",
                _table_html(freshness_table(freshness.summary), "freshness"),
                f"<p>Each of the {len(freshness.days)} day(s) {freshness.days[0]}.."
                f"{freshness.days[-1]} is scored by the stateless model trained at the cut-off "
                "k days before it (everything known before day t − k), for each k; quality "
                "is measured against the day's eventually matured labels, as for a policy. "
                "One model per cut-off: "
                f"{freshness.models} trained, {freshness.train_cpu_seconds:.1f} training "
                "CPU-s.</p>",
                figure_html(_freshness_chart(freshness), "mean PR-AUC against staleness"),
            ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(heading)}</h1>\n<p>{' · '.join(facts)}</p>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    logger.info("wrote the replay scoreboard to %s", path)
    return path


def _table_html(cells: list[list[str]], css_class: str) -> str:
    """Text cells as an HTML table (the first row its heading), every cell escaped."""
    head = "".join(f"<th>{escape(c)}</th>" for c in cells[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:]
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _freshness_chart(freshness: Freshness) -> Figure:
    """Mean PR-AUC per staleness, with the standard error of the daily values."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ks, means, errors = [], [], []
    for k in freshness.staleness:
        values = [r["pr_auc"] for r in freshness.rows
                  if r["staleness_days"] == k and r["pr_auc"] is not None]  # fmt: skip
        if not values:
            continue
        ks.append(k)
        means.append(float(np.mean(values)))
        errors.append(float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1
                      else 0.0)  # fmt: skip
    ax.errorbar(ks, means, yerr=errors, marker="o", capsize=3, linewidth=1.4)
    ax.set_xticks(freshness.staleness)
    ax.set_xlabel("staleness k (days between the model's cut-off and the day it scores)",
                  fontsize=9)  # fmt: skip
    ax.set_ylabel("mean PR-AUC", fontsize=9)
    return fig


def _quality_chart(runs: Sequence[PolicyRun], onset: str | None) -> Figure:
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        days = [r["day"] for r in run.rows]
        values = np.array([np.nan if r.get("pr_auc") is None else r["pr_auc"] for r in run.rows])
        smooth = _rolling(values, 7)
        (line,) = ax.plot(days, smooth, label=run.policy, linewidth=1.4)
        promoted = [(r["day"], s) for r, s in zip(run.rows, smooth, strict=True) if r["promoted"]]
        if promoted:
            ax.scatter([d for d, _ in promoted], [s for _, s in promoted], marker="^", s=28,
                       color=line.get_color(), zorder=3)  # fmt: skip
    if onset:
        ax.axvline(dt.date.fromisoformat(onset), color="#c62828", linestyle=":", linewidth=1.2,
                   label="true drift onset")  # fmt: skip
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("PR-AUC", fontsize=9)
    ax.set_title("daily quality (triangles: a retrained model starts serving)", fontsize=10)
    ax.legend(fontsize=8, ncols=4)
    return fig


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        if np.isfinite(part).any():
            out[i] = np.nanmean(part)
    return out


def _frontier_chart(board: Sequence[dict[str, Any]]) -> Figure:
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for b in board:
        if b["mean_pr_auc"] is None:
            continue
        ax.scatter(b["train_work"], b["mean_pr_auc"], s=36)
        ax.annotate(b["policy"], (b["train_work"], b["mean_pr_auc"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    if any(b["train_work"] > 0 for b in board):
        smallest = min(b["train_work"] for b in board if b["train_work"] > 0)
        ax.set_xscale("symlog", linthresh=max(1, smallest))
        # Plain numbers: the page's rc turns mathtext (the log axis' 10^k labels) off.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel("training compute (rows x trees added)", fontsize=9)
    ax.set_ylabel("mean PR-AUC", fontsize=9)
    return fig
