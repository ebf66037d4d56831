"""The UI's pipeline and run views over a year's MLMD, rendered by the UI's own FastAPI app and timed.

The app is the one the Airflow API server mounts (``ui.app.create_app``), called through Starlette's test client;
only Airflow's own database is replaced: the DAG runs are the year's, listed as ``UiBackend.dag_runs`` lists them,
and authorization is allowed. MLMD is read from the PostgreSQL store the stages wrote, read-only, as in production.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.backend import UiBackend

REPEATS = 5


class YearBackend(UiBackend):
    """Airflow's DAG runs and XComs as the year left them; everything else is the production backend."""

    def __init__(self, mlmd: dict[str, Any], runs: list[dict[str, Any]]) -> None:
        super().__init__("mlmd_default")
        self.mlmd, self.runs = mlmd, runs

    def mlmd_config(self) -> dict[str, Any]:
        return self.mlmd

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return {}  # the pipeline is named as its DAG, so the views need no execution id to find it

    def dag_runs(self, dag_id: str, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        return self.runs[::-1][offset : offset + limit][::-1]


def timed_get(client: TestClient, route: str, params: dict[str, str], must_contain: str) -> float:
    """Seconds to answer one request; a page without what it must show ends the benchmark."""
    started = time.perf_counter()
    response = client.get(route, params=params)
    seconds = time.perf_counter() - started
    if response.status_code != 200 or must_contain not in response.text:
        raise SystemExit(f"GET {route} {params} answered {response.status_code} without {must_contain!r}.")
    return seconds


def time_views(mlmd: dict[str, Any], pipeline: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    app = ui_app.create_app(YearBackend(mlmd, runs))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    client = TestClient(app)
    last = runs[-1]["run_id"]  # a retraining day: the run view shows every stage
    pipeline_page = ("/pipeline", {"dag_id": pipeline}, last)
    run_page = ("/run", {"dag_id": pipeline, "run_id": last}, "BLESSED")
    first = timed_get(client, *pipeline_page)
    pipeline_s = [timed_get(client, *pipeline_page) for _ in range(REPEATS)]
    timed_get(client, *run_page)
    run_s = [timed_get(client, *run_page) for _ in range(REPEATS)]
    return {
        "pipeline_first": first,
        "pipeline": statistics.median(pipeline_s),
        "run": statistics.median(run_s),
        "repeats": REPEATS,
    }
