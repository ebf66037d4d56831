"""The mlpipe Airflow plugin: registered by the provider and by the plugins/ folder.

It mounts the FastAPI app under ``/mlpipe`` in the API server and adds two tabs to the Airflow UI: the run
view on every DAG run page and the pipeline view on every DAG page (both are iframes of the app).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_mlpipe.links.stage import (
    APP_PREFIX,
    PIPELINE_VIEW_ROUTE,
    RUN_VIEW_ROUTE,
    MlpipeArtifactsLink,
    MlpipeRunViewLink,
    base_url,
)

# External view hrefs are loaded by the browser, so they carry the API server's base path.
_ROOT = urlsplit(base_url()).path.rstrip("/")


class LazyApp:
    """An ASGI app that builds the FastAPI app on its first request.

    Every Airflow process loads plugins (workers and task runners too), but only the API server serves this
    app; building it imports FastAPI and Airflow's API security layer, seconds that no task should pay.
    """

    def __init__(self) -> None:
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from airflow_provider_mlpipe.ui.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class MlpipePlugin(AirflowPlugin):
    name = "mlpipe"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": f"/{APP_PREFIX}", "name": "mlpipe views"}]
    external_views = [
        {
            "name": "ML run",
            "href": f"{_ROOT}/{APP_PREFIX}/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": RUN_VIEW_ROUTE,
        },
        {
            "name": "ML pipeline",
            "href": f"{_ROOT}/{APP_PREFIX}/pipeline?dag_id={{DAG_ID}}",
            "destination": "dag",
            "url_route": PIPELINE_VIEW_ROUTE,
        },
    ]
    operator_extra_links = [MlpipeRunViewLink(), MlpipeArtifactsLink()]
