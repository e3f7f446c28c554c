"""The FastAPI app of the regrow page, mounted in Airflow's API server by
``plugins/regrow_plugin.py`` (``fastapi_apps``) and shown in the UI's menu as an external
view.

Every route requires the Airflow UI's login: the JWT that the UI keeps in its ``_token``
cookie (the iframe sends it), or an ``Authorization: Bearer`` token of the REST API. It is
checked by Airflow's own dependency (``airflow.api_fastapi.core_api.security.get_user``):
no token is 401, an invalid or expired one 401/403.

Nothing is read when the app is made: each request reads params.yaml the way the DAGs do
(``$REGROW_PARAMS``, else the nearest ``params.yaml``) and the tables through the library,
which is imported on the first request (the API server starts without pandas or MLflow).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

logger = logging.getLogger(__name__)

URL_PREFIX = "/regrow"  # where the plugin mounts the app in the API server


async def require_login(request: Request) -> Any:
    """The logged-in Airflow user, or HTTP 401/403: Airflow's ``get_user`` on the request's
    bearer token or the UI's JWT cookie."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    return await get_user(request, None, credentials)


def create_app() -> FastAPI:
    """The regrow page (``/``) and the files it links to (``/report/<file>``,
    ``/data-docs/<path>``), every route behind :func:`require_login`."""
    app = FastAPI(
        title="regrow",
        description="The regrow page: models, decisions, drift, performance, links.",
        dependencies=[Depends(require_login)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/", response_class=HTMLResponse)
    def regrow_page() -> HTMLResponse:
        from regrow.orchestration.ui.page import read_page
        from regrow.orchestration.ui.render import render

        params, settings = _settings()
        return HTMLResponse(render(read_page(settings, params)))

    @app.get("/report/{name}")
    def daily_report(name: str) -> FileResponse:
        from regrow.orchestration.ui.page import reports_dir

        _, settings = _settings()
        if not (name.startswith("monitoring-") and name.endswith(".html")):
            raise HTTPException(404, f"{name} is not a monitoring report")
        return _file(reports_dir(settings), name)

    @app.get("/data-docs/{path:path}")
    def data_docs(path: str) -> FileResponse:
        from regrow.orchestration.ui.page import data_docs

        _, settings = _settings()
        return _file(data_docs(settings), path or "index.html")

    return app


def _settings() -> tuple[Path, Any]:
    """params.yaml and its settings, as the DAG files read them; a broken or missing file
    is one line (HTTP 500) naming it, never a traceback."""
    from regrow.orchestration.dags import dag_settings
    from regrow.settings import ConfigError, find_params

    try:
        return find_params(), dag_settings()
    except (ConfigError, OSError) as err:
        raise HTTPException(500, f"regrow cannot read its params.yaml: {err}") from None


def _file(folder: Path, relative: str) -> FileResponse:
    """A file under ``folder`` (never outside it), or 404 naming what is missing."""
    root = folder.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, f"no file {relative} under {folder}")
    return FileResponse(target)
