"""Renders the mlpipe UI's pipeline view and run views of an MLMD store; runs in .venv, for runtime tests.

``python render_ui_pages.py <MLMD SQLite file> <dag id> <run id>...`` prints one JSON line: ``{"pipeline": html,
"runs": {run id: html}}``. The pages come from the real app (``ui.app.create_app``) and its real MLMD reader;
only Airflow's own database is replaced: the runs are the ones named, and no run has XComs (so the MLMD pipeline
is the DAG id).
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.backend import UiBackend


class StoreBackend(UiBackend):
    def __init__(self, mlmd_path: str, dag_id: str, run_ids: list[str]) -> None:
        super().__init__("mlmd_default")
        self.mlmd_path, self.dag_id, self.run_ids = mlmd_path, dag_id, run_ids

    def mlmd_config(self) -> dict[str, Any]:
        return {"backend": "sqlite", "path": self.mlmd_path}

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return {}

    def dag_runs(self, dag_id: str, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        """The named runs (oldest first), ``limit`` of them after skipping ``offset`` newer ones, as Airflow pages."""
        runs = [{"run_id": r, "state": "success", "logical_date": r} for r in self.run_ids if dag_id == self.dag_id]
        return runs[max(0, len(runs) - offset - limit) : max(0, len(runs) - offset)]


def main() -> None:
    mlmd_path, dag_id, *run_ids = sys.argv[1:]
    app = ui_app.create_app(StoreBackend(mlmd_path, dag_id, run_ids))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    client = TestClient(app)

    def page(route: str, **params: str) -> str:
        response = client.get(f"/{route}?{urlencode(params)}")
        assert response.status_code == 200, (route, params, response.text[-2000:])
        return response.text

    runs = {run_id: page("run", dag_id=dag_id, run_id=run_id) for run_id in run_ids}
    print(json.dumps({"pipeline": page("pipeline", dag_id=dag_id), "runs": runs}))


if __name__ == "__main__":
    main()
