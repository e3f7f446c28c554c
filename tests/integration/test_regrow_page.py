"""The regrow page's app (regrow.orchestration.ui) on real tables: a real MLflow store
(SQLite), real Delta tables written by the library (a forced promotion, monitoring results
computed by the drift and performance code, the retrain policy's decision, the daily
report), served by the real FastAPI app through fastapi.testclient.

The login: an unauthenticated request is refused by Airflow's own dependency (no token:
401). For the other requests the login dependency is overridden with a fixed user
(``app.dependency_overrides``): a valid Airflow token needs a running API server's auth
manager and metadata DB; tests/e2e/test_airflow_ui_browser.py logs in to a real one.
"""

from __future__ import annotations

import datetime as dt
import shutil
from html import escape

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from regrow.catalog import CHALLENGER, MONITOR_DATE, MONITORING, TABLES
from regrow.model.promotion import force_promote
from regrow.monitoring import drift, performance
from regrow.monitoring.drift import Distribution
from regrow.monitoring.monitor import report_day
from regrow.monitoring.results import (
    CATEGORICAL,
    DRIFT_CHECKS,
    NUMERIC,
    PERFORMANCE_CHECKS,
    SCHEMA,
    to_row,
)
from regrow.orchestration.ui.app import create_app, require_login
from regrow.policy.daily import decide_day
from regrow.settings import PARAMS_ENV, load_settings
from tests.conftest import context_of, write_params
from tests.models import register_versions

DAYS = [dt.date(2026, 1, 20) + dt.timedelta(days=i) for i in range(3)]
REFERENCE = "2026-01-01..2026-01-13"
# The amount triples on the last day; the channel keeps its mix.
AMOUNT_REF = {"[0, 10)": 500, "[10, 100)": 300, "[100, inf)": 200}
AMOUNT_SHIFTED = {"[0, 10)": 150, "[10, 100)": 300, "[100, inf)": 550}
CHANNEL = {"online": 400, "pos": 400, "mobile": 200}


def client_for(logged_in: bool = True) -> TestClient:
    app = create_app()
    if logged_in:
        app.dependency_overrides[require_login] = lambda: "tester"
    return TestClient(app)


@pytest.fixture
def empty_project(tmp_path, monkeypatch):
    params = write_params(tmp_path)
    monkeypatch.setenv(PARAMS_ENV, str(params))
    return params


def monitor_rows(settings, day: dt.date, shifted: bool, seed: int) -> list[dict]:
    """A day's gold.monitoring rows, computed by the library's drift and performance code
    from counts and scores (what Spark counts in regrow_monitor)."""
    cfg = settings.monitor
    current = AMOUNT_SHIFTED if shifted else AMOUNT_REF
    checks = drift.apply_correction(
        drift.column_checks(
            {"amount": NUMERIC, "channel": CATEGORICAL},
            {"amount": Distribution(AMOUNT_REF), "channel": Distribution(CHANNEL)},
            {"amount": Distribution(current), "channel": Distribution(CHANNEL)},
            cfg,
        ),
        cfg,
    )
    rng = np.random.default_rng(seed)
    labels = rng.random(2000) < 0.1
    scores = np.clip(np.where(labels, 0.55, 0.08) + rng.normal(0, 0.12, 2000), 0.001, 0.999)
    perf = cfg.performance
    estimated = performance.estimated(
        performance.histogram_from_arrays(scores, None, perf.score_resolution), perf
    )
    realised = performance.realised(
        performance.histogram_from_arrays(scores, labels, perf.score_resolution), perf
    )
    matured = day - dt.timedelta(days=settings.dataset.label_delay_days)
    context = {"monitor_date": day, "reference_window": REFERENCE, "current_window": str(day),
               "champion_version": "1", "run_id": f"monitor-{day}"}  # fmt: skip
    return [to_row(r, data_date=day, **context) for r in checks + estimated] + [
        to_row(r, data_date=matured, **context) for r in realised
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_template):
    """A champion (v1, forced), a challenger (v2, a warm start of it), three monitored
    days whose last one drifts, the policy's decision of each day, the daily report."""
    root = tmp_path_factory.mktemp("regrow_page")
    shutil.copyfile(mlflow_template, root / "mlflow.db")
    params = write_params(root, policy={"triggers": {"drift": {"n": 1, "m": 1, "min_features": 1}}})
    settings = load_settings(params)
    ctx = context_of(settings, actor="alice")
    registry = ctx.registry
    lineage = {"mode": "stateless", "cutoff_date": "2026-01-14", "train_window": REFERENCE,
               "train_last_event": "2026-01-13T23:59:59+00:00", "warm_starts_in_a_row": "0",
               "trigger": "test"}  # fmt: skip
    (v1,) = register_versions(registry, lineage)
    warm = {**lineage, "mode": "warm_start", "parent_version": v1.version,
            "cutoff_date": "2026-01-19", "warm_starts_in_a_row": "1", "trigger": "drift"}  # fmt: skip
    (v2,) = register_versions(registry, warm)
    for version, value in ((v1, 0.6125), (v2, 0.6481)):
        registry.client.log_metric(version.run_id, "backtest_pr_auc", value)
    promoted = force_promote(ctx, v1.version, "the first model of the page test")
    registry.set_alias(CHALLENGER, v2.version)
    decisions = []
    for i, day in enumerate(DAYS):
        rows = monitor_rows(settings, day, shifted=day == DAYS[-1], seed=i)
        ctx.lakehouse.replace_records(
            MONITORING, pa.Table.from_pylist(rows, schema=SCHEMA),
            {MONITOR_DATE: day, "check": [*DRIFT_CHECKS, *PERFORMANCE_CHECKS]},
            partition_by=list(TABLES[MONITORING].partition_by),
        )  # fmt: skip
        decisions.append(decide_day(ctx, day))
    report = report_day(ctx, DAYS[-1], log_to_mlflow=False)
    return params, settings, v1, v2, promoted, decisions, report


@pytest.fixture
def page(project, monkeypatch):
    params = project[0]
    monkeypatch.setenv(PARAMS_ENV, str(params))
    response = client_for().get("/")
    assert response.status_code == 200, response.text
    return response.text


def test_an_unauthenticated_request_is_refused(project, monkeypatch):
    monkeypatch.setenv(PARAMS_ENV, str(project[0]))
    client = client_for(logged_in=False)
    for path in ("/", f"/report/{project[6].name}", "/data-docs/index.html"):
        response = client.get(path)
        assert response.status_code == 401, (path, response.status_code)
        assert "regrow" not in response.text


def test_an_empty_project_says_no_champion_yet(empty_project):
    response = client_for().get("/")
    assert response.status_code == 200, response.text
    text = response.text
    assert "no champion yet" in text
    assert "no challenger" in text
    assert "no decisions yet" in text
    assert "no monitored day yet" in text
    assert "no performance rows yet" in text
    assert "no daily report yet" in text and "no Data Docs yet" in text
    assert "cannot read" not in text
    # Looking did not create an MLflow store or a table.
    assert not (empty_project.parent / "mlflow.db").exists()
    assert not (empty_project.parent / "lakehouse").exists()


def test_the_page_shows_champion_and_challenger_from_the_registry(project, page):
    _, _, v1, v2, *_ = project
    champion = page[page.index('class="card champion"') : page.index('class="card challenger"')]
    challenger = page[page.index('class="card challenger"') :]
    assert f"v{v1.version}</p>" in champion and "0.6125" in champion
    assert f"v{v2.version}</p>" in challenger and "0.6481" in challenger
    assert "warm_start" in challenger
    warm = challenger[challenger.index("warm starts in a row") :]
    assert warm.startswith("warm starts in a row</dt><dd>1</dd>")
    today = dt.datetime.now(dt.UTC).date()
    assert f"{(today - dt.date(2026, 1, 14)).days} days (cut-off 2026-01-14)" in champion
    assert f"/runs/{v1.run_id}" in champion  # the MLflow run's link


def test_the_page_lists_the_decisions_with_their_reasons(project, page):
    *_, promoted, decisions, _ = project
    table = page[page.index('<table class="decisions">') :]
    assert escape(promoted.reason) in table  # forced: ..., written by force_promote
    for decision in decisions:  # the policy's reasons, newest first
        assert escape(decision.reason) in table
    positions = [table.index(str(day)) for day in reversed(DAYS)]
    assert positions == sorted(positions)
    assert decisions[-1].action.startswith("retrain")  # the drift fired on the last day


def test_the_page_summarises_the_newest_days_drift_and_plots_performance(project, page):
    *_, report = project
    section = page[page.index("Newest monitored day") : page.index("Realised vs estimated")]
    assert str(DAYS[-1]) in section
    flagged = section[section.index('<table class="flagged">') :]
    assert "<td>amount</td>" in flagged and "<td>channel</td>" not in flagged
    plot = page[page.index("Realised vs estimated") : page.index("Decisions (")]
    assert "<svg" in plot and "estimated vs realised" in plot
    assert f'href="report/{report.name}"' in page


def test_the_report_is_served_and_nothing_outside_it(project, monkeypatch):
    params, *_, report = project
    monkeypatch.setenv(PARAMS_ENV, str(params))
    client = client_for()
    served = client.get(f"/report/{report.name}")
    assert served.status_code == 200
    assert served.text == report.read_text(encoding="utf-8")
    assert client.get("/report/..%2Fparams.yaml").status_code == 404
    assert client.get("/data-docs/..%2F..%2Fparams.yaml").status_code == 404
    assert client.get("/data-docs/index.html").status_code == 404  # no Data Docs built


def test_a_broken_params_file_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text("dataset: {name: [\n")
    monkeypatch.setenv(PARAMS_ENV, str(params))
    response = client_for().get("/")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert str(params) in detail and "Traceback" not in detail
