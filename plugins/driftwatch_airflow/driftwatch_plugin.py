"""The driftwatch Airflow plugin: a "Model monitoring" page and a "Reports" tab on every run.

Airflow 3 plugin interface: ``fastapi_apps`` mounts the app of ``driftwatch_airflow.webapp`` on
the api-server under ``/driftwatch``; ``external_views`` put it in the UI (a top-level nav entry,
and tabs on the DAG-run and task-instance pages, whose ``{DAG_ID}``/``{RUN_ID}``/``{TASK_ID}``
placeholders the UI fills in). Hrefs are relative, so a proxy prefix (``[api] base_url``) works.

The dag-processor, scheduler and workers load every plugin too, so this module imports nothing
but Airflow's plugin base: FastAPI and the app are only imported by the first request.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/driftwatch"


class LazyApp:
    """An ASGI app that builds the real FastAPI app on its first call."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from driftwatch_airflow.webapp import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "driftwatch_airflow.webapp:create_app (built on first request)"


class DriftwatchPlugin(AirflowPlugin):
    """Model monitoring views and report pages inside the Airflow UI."""

    name = "driftwatch"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "driftwatch"}]
    external_views = [
        {
            "name": "Model monitoring",
            "href": "driftwatch/monitoring",
            "destination": "nav",
            "url_route": "model-monitoring",
            "nav_top_level": True,
        },
        {
            "name": "Reports",
            "href": "driftwatch/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "driftwatch-run-reports",
        },
        {
            "name": "Reports",
            "href": "driftwatch/runs/{DAG_ID}/{RUN_ID}?task_id={TASK_ID}",
            "destination": "task_instance",
            "url_route": "driftwatch-task-reports",
        },
    ]
