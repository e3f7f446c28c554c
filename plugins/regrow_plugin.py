"""regrow's Airflow plugin: the regrow page in the Airflow UI (menu: Browse → regrow).

Wiring only: the page's app and its logic live in :mod:`regrow.orchestration.ui`. Making
the app reads nothing; each request reads params.yaml ($REGROW_PARAMS) and the tables.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from regrow.orchestration.ui.app import URL_PREFIX, create_app


class RegrowPlugin(AirflowPlugin):
    name = "regrow"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "regrow page"}]
    # An iframe in the UI at /plugin/regrow; the href is relative to the UI's base URL.
    external_views = [
        {
            "name": "regrow",
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "regrow",
        }
    ]
