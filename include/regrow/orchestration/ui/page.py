"""What the regrow page shows, read through the library: the champion and the challenger
(registry), the last decisions (``gold.decisions``), the newest monitored day's drift
(``gold.monitoring``), estimated and realised performance over time, and where the daily
report, the Data Docs and the MLflow runs are.

Each panel is read on its own: a project with no table or no model yet gets an empty
panel that says so, and a store that cannot be read (an unreachable S3 or MLflow, a broken
table) gets one line naming it, while the other panels still show.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from regrow.catalog import CHALLENGER, CHAMPION, DECISION_DATE, DECISIONS, MONITOR_DATE, MONITORING
from regrow.model.decisions import FORCE_PROMOTE, PROMOTE
from regrow.model.evaluation import BACKTEST
from regrow.model.registry import Registry, Version, tracking_uri
from regrow.monitoring.report import performance_series
from regrow.monitoring.results import DRIFT_CHECKS, FLAGGED, INSUFFICIENT, OK
from regrow.settings import Settings
from regrow.storage.lakehouse import Lakehouse
from regrow.validation import data_docs_dir

logger = logging.getLogger(__name__)

DECISIONS_SHOWN = 30
# Where `make mlflow` (regrow mlflow-ui) serves a local store's UI.
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
T = TypeVar("T")


@dataclass(frozen=True)
class ModelCard:
    """A version behind an alias, as the page shows it."""

    alias: str
    version: str
    metric: str
    value: float | None  # the primary metric on the backtest window (None: not known)
    cutoff: str | None  # the training cut-off date (lineage tag cutoff_date)
    age_days: int | None  # days from the cut-off to today
    warm_starts_in_a_row: int
    mode: str | None
    trigger: str | None
    run_id: str | None
    run_url: str | None  # the run in the MLflow UI


@dataclass(frozen=True)
class DriftSummary:
    """The newest monitored day: its champion, the counts per status, the flagged checks."""

    day: dt.date
    champion_version: str | None
    counts: dict[str, int]
    flagged: list[dict[str, Any]]
    report: str | None  # the file name of the day's HTML report, if it was written


@dataclass
class Page:
    """Everything on the page; ``problems`` holds one line per panel that could not be read."""

    title: str
    params: str
    registered_model: str
    primary_metric: str
    champion: ModelCard | None = None
    challenger: ModelCard | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    drift: DriftSummary | None = None
    performance: list[dict[str, Any]] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # monitoring report files, newest first
    data_docs: bool = False  # reports/data_docs/index.html exists
    mlflow_ui: str = LOCAL_MLFLOW_UI
    problems: dict[str, str] = field(default_factory=dict)


def reports_dir(settings: Settings) -> Path:
    """Where the daily monitoring reports are written (``reports_dir/monitoring``)."""
    return Path(settings.resolve(settings.reports_dir)) / "monitoring"


def data_docs(settings: Settings) -> Path:
    """Great Expectations' Data Docs site of the project."""
    return Path(data_docs_dir(settings.resolve(settings.reports_dir)))


def mlflow_ui(settings: Settings) -> str:
    """The MLflow UI of the project's store: the tracking server itself, or the one
    ``make mlflow`` starts for a local SQLite store."""
    uri = tracking_uri(settings)
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_MLFLOW_UI


def read_page(settings: Settings, params: Path, today: dt.date | None = None) -> Page:
    """Read every panel of the page for the project of ``settings``."""
    today = today or dt.datetime.now(dt.UTC).date()
    metric = settings.evaluate.primary_metric
    page = Page(
        title=f"regrow: {settings.dataset.name}",
        params=str(params),
        registered_model=settings.mlflow.registered_model or settings.dataset.name,
        primary_metric=metric,
        mlflow_ui=mlflow_ui(settings),
    )
    lakehouse = Lakehouse.from_settings(settings)
    decisions = _panel(page, "decisions", lambda: _table(lakehouse, DECISIONS), [])
    monitoring = _panel(page, "drift", lambda: _table(lakehouse, MONITORING), [])
    page.decisions = _newest_decisions(decisions)
    page.reports = sorted((p.name for p in reports_dir(settings).glob("monitoring-*.html")),
                          reverse=True)  # fmt: skip
    page.drift = _drift_summary(monitoring, page.reports)
    page.performance = [p for p in _panel(page, "performance", lambda: _series(monitoring), [])
                        if p["metric"] == metric or not metric]  # fmt: skip
    page.data_docs = (data_docs(settings) / "index.html").is_file()
    cards = _panel(page, "models", lambda: _cards(settings, decisions, today, page.mlflow_ui), {})
    page.champion, page.challenger = cards.get(CHAMPION), cards.get(CHALLENGER)
    return page


# ----------------------------------------------------------------------- panels
def _panel(page: Page, name: str, read: Callable[[], T], empty: T) -> T:
    """``read()``, or ``empty`` with the problem recorded under ``name``."""
    try:
        return read()
    except Exception as err:  # a panel's problem must not take the page down
        logger.warning("regrow page: %s panel: %s", name, err, exc_info=True)
        text = str(err).strip().splitlines()
        page.problems[name] = f"{type(err).__name__}: {text[0] if text else ''}"[:500]
        return empty


def _table(lakehouse: Lakehouse, table: str) -> list[dict[str, Any]]:
    return lakehouse.to_arrow(table).to_pylist() if lakehouse.exists(table) else []


def _series(monitoring: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import pyarrow as pa

    from regrow.monitoring.results import SCHEMA

    if not monitoring:
        return []
    return performance_series(pa.Table.from_pylist(monitoring, schema=SCHEMA))


def _newest_decisions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    rows = sorted(
        rows,
        key=lambda r: (r[DECISION_DATE] or dt.date.min, r["decided_at"] or oldest),
        reverse=True,
    )
    return rows[:DECISIONS_SHOWN]


def _drift_summary(rows: list[dict[str, Any]], reports: list[str]) -> DriftSummary | None:
    if not rows:
        return None
    day = max(r[MONITOR_DATE] for r in rows)
    today = [r for r in rows if r[MONITOR_DATE] == day and r["check"] in DRIFT_CHECKS]
    counts = {s: sum(r["status"] == s for r in today) for s in (FLAGGED, INSUFFICIENT, OK)}
    flagged = sorted(
        (r for r in today if r["status"] == FLAGGED),
        key=lambda r: -(r["effect"] or 0.0),
    )
    champions = sorted({r["champion_version"] for r in rows
                        if r[MONITOR_DATE] == day and r["champion_version"]})  # fmt: skip
    report = f"monitoring-{day.isoformat()}.html"
    return DriftSummary(day, ", ".join(champions) or None, counts,
                        [_flag(r) for r in flagged], report if report in reports else None)  # fmt: skip


def _flag(row: dict[str, Any]) -> dict[str, Any]:
    try:
        reason = json.loads(row["detail"] or "{}").get("reason", "")
    except (ValueError, AttributeError):
        reason = ""
    return {k: row[k] for k in ("check", "column", "kind", "effect", "p_adjusted", "js",
                                "threshold")} | {"reason": reason}  # fmt: skip


# ----------------------------------------------------------------------- models
def _cards(
    settings: Settings, decisions: list[dict[str, Any]], today: dt.date, ui: str
) -> dict[str, ModelCard]:
    uri = tracking_uri(settings)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri.removeprefix(prefix)).is_file():
        return {}  # no store yet: opening one would create (and migrate) it
    registry = Registry(settings)
    cards = {}
    for alias in (CHAMPION, CHALLENGER):
        version = registry.alias(alias)
        if version is not None:
            cards[alias] = _card(registry, alias, version, settings, decisions, today, ui)
    return cards


def _card(
    registry: Registry,
    alias: str,
    version: Version,
    settings: Settings,
    decisions: list[dict[str, Any]],
    today: dt.date,
    ui: str,
) -> ModelCard:
    metric = settings.evaluate.primary_metric
    tags = version.tags
    cutoff = tags.get("cutoff_date")
    try:
        age = (today - dt.date.fromisoformat(cutoff[:10])).days if cutoff else None
    except ValueError:
        age = None
    value, run_url = None, None
    if version.run_id:
        try:
            run = registry.client.get_run(version.run_id)
            value = run.data.metrics.get(f"{BACKTEST}_{metric}")
            run_url = f"{ui}/#/experiments/{run.info.experiment_id}/runs/{version.run_id}"
        except Exception as err:  # the run may be gone; the card still shows
            logger.warning("regrow page: run %s of v%s: %s", version.run_id, version.version, err,
                           exc_info=True)  # fmt: skip
    if value is None:  # the gate's figure, when the run did not log it
        gated = [r for r in decisions if r["model_version"] == version.version
                 and r["action"] in (PROMOTE, FORCE_PROMOTE) and r["challenger_value"] is not None]  # fmt: skip
        value = max(gated, key=lambda r: r["decided_at"])["challenger_value"] if gated else None
    try:
        warm = int(tags.get("warm_starts_in_a_row", "0"))
    except ValueError:
        warm = 0
    return ModelCard(alias, version.version, metric, value, cutoff, age, warm, tags.get("mode"),
                     tags.get("trigger"), version.run_id, run_url)  # fmt: skip
