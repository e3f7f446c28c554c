"""The regrow page as one self-contained HTML document: no script, no CDN, the plot an
inline SVG (the daily report's figure), every string from the data escaped. Links are
relative to the page (``report/...``, ``data-docs/...``), so it works under any prefix."""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from regrow.catalog import CHALLENGER, CHAMPION
from regrow.monitoring.report import CSS, performance_html
from regrow.orchestration.ui.page import DECISIONS_SHOWN, DriftSummary, ModelCard, Page

EXTRA_CSS = """
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:.4rem;
padding:.5rem 1rem;min-width:16rem}.card h3{margin:.2rem 0}.card .version{font-size:1.8rem}
.problem{color:#b71c1c}nav>*{margin-right:1.5rem}dl{display:grid;grid-template-columns:auto 1fr;
gap:.1rem 1rem}dt{color:#616161}dd{margin:0}
"""
EMPTY = {
    CHAMPION: "no champion yet: train and gate a model (regrow retrain, or the regrow_retrain DAG)",
    CHALLENGER: "no challenger: every trained model was promoted, or none was trained yet",
    "decisions": "no decisions yet: gold.decisions is written by the gate and the retrain policy",
    "drift": "no monitored day yet: gold.monitoring is written by regrow_monitor (regrow monitor)",
    "performance": "no performance rows yet: regrow_monitor estimates and realises them",
}


def render(page: Page) -> str:
    """The whole page."""
    body = [
        f"<h1>{escape(page.title)}</h1>",
        f"<p>registered model <b>{escape(page.registered_model)}</b>; params "
        f"<code>{escape(page.params)}</code></p>",
        _links(page),
        "<h2>Models</h2>",
        _problem(page, "models"),
        '<div class="cards">',
        _card(page.champion, CHAMPION),
        _card(page.challenger, CHALLENGER),
        "</div>",
        "<h2>Newest monitored day: drift</h2>",
        _problem(page, "drift"),
        _drift(page.drift),
        f"<h2>Realised vs estimated performance ({escape(page.primary_metric)})</h2>",
        _problem(page, "performance"),
        performance_html(page.performance) if page.performance else _empty("performance"),
        f"<h2>Decisions (the last {DECISIONS_SHOWN}, newest first)</h2>",
        _problem(page, "decisions"),
        _decisions(page.decisions),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(page.title)}</title>\n<style>{CSS}{EXTRA_CSS}</style>\n</head>\n"
        "<body>\n" + "\n".join(b for b in body if b) + "\n</body>\n</html>\n"
    )


def _empty(panel: str) -> str:
    return f'<p class="empty">{escape(EMPTY[panel])}</p>'


def _problem(page: Page, panel: str) -> str:
    text = page.problems.get(panel)
    return f'<p class="problem">cannot read the {panel}: {escape(text)}</p>' if text else ""


def _number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _links(page: Page) -> str:
    links = []
    if page.reports:
        newest = page.reports[0]
        links.append(f'<a href="report/{quote(newest)}">daily report ({escape(newest)})</a>')
    else:
        links.append('<span class="empty">no daily report yet</span>')
    if page.data_docs:
        links.append('<a href="data-docs/index.html">Data Docs</a>')
    else:
        links.append('<span class="empty">no Data Docs yet</span>')
    links.append(f'<a href="{escape(page.mlflow_ui)}">MLflow</a>')
    return f"<nav>{''.join(links)}</nav>"


def _card(card: ModelCard | None, alias: str) -> str:
    if card is None:
        return f'<div class="card {alias}"><h3>{alias}</h3>{_empty(alias)}</div>'
    age = "—" if card.age_days is None else f"{card.age_days} days (cut-off {card.cutoff})"
    run = "—"
    if card.run_id:
        run = (f'<a href="{escape(card.run_url)}">{escape(card.run_id)}</a>' if card.run_url
               else escape(card.run_id))  # fmt: skip
    items = [
        (card.metric, escape(_number(card.value))),
        ("age", escape(age)),
        ("warm starts in a row", str(card.warm_starts_in_a_row)),
        ("mode", escape(card.mode or "—")),
        ("trigger", escape(card.trigger or "—")),
        ("MLflow run", run),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items)
    return (
        f'<div class="card {alias}"><h3>{alias}</h3>'
        f'<p class="version">v{escape(card.version)}</p><dl>{dl}</dl></div>'
    )


def _drift(drift: DriftSummary | None) -> str:
    if drift is None:
        return _empty("drift")
    counts = "".join(f'<span class="{s}"><b>{n}</b> {s}</span>' for s, n in drift.counts.items())
    report = (f' — <a href="report/{quote(drift.report)}">its report</a>' if drift.report
              else "")  # fmt: skip
    head = (
        f'<p class="drift-day">{drift.day.isoformat()} (champion '
        f"v{escape(drift.champion_version or '—')}){report}</p>"
        f'<p class="counts">checks: {counts}</p>'
    )
    if not drift.flagged:
        return head + '<p class="empty">nothing flagged</p>'
    header = ("check", "column", "effect (PSI)", "adjusted p", "JS", "threshold", "reason")
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{escape(str(f[c] or ''))}</td>" for c in ("check", "column"))
        + "".join(
            f'<td class="num">{_number(f[c])}</td>'
            for c in ("effect", "p_adjusted", "js", "threshold")
        )  # fmt: skip
        + f"<td>{escape(str(f['reason']))}</td></tr>\n"
        for f in drift.flagged
    )
    return head + _table(header, rows, "flagged")


def _decisions(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return _empty("decisions")
    header = ("date", "action", "trigger", "reason", "model version", "champion", "by", "numbers")
    body = "".join(
        "<tr>"
        + f"<td>{escape(str(r['decision_date'] or '—'))}</td>"
        + "".join(
            f"<td>{escape(str(r[c] or '—'))}</td>"
            for c in ("action", "trigger", "reason", "model_version")
        )  # fmt: skip
        + f"<td>{escape(_champion_move(r))}</td><td>{escape(str(r['actor'] or '—'))}</td>"
        + _checks(r)
        + "</tr>\n"
        for r in rows
    )
    return _table(header, body, "decisions")


def _champion_move(row: dict[str, Any]) -> str:
    before, after = row["champion_before"], row["champion_after"]
    if before == after:
        return f"v{after}" if after else "—"
    return f"v{before or '—'} → v{after or '—'}"


def _checks(row: dict[str, Any]) -> str:
    """The decision's numbers, folded (JSON)."""
    try:
        checks = json.loads(row["checks"] or "[]")
    except ValueError:
        checks = row["checks"]
    if not checks:
        return ""
    pretty = escape(json.dumps(checks, indent=1, sort_keys=True, default=str))
    return f"<td><details><summary>numbers</summary><pre>{pretty}</pre></details></td>"


def _table(header: tuple[str, ...], rows: str, css: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>'
