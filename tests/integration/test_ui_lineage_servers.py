"""The UI's MLMD reader on PostgreSQL and on MySQL (MariaDB): the same SQL schema, read-only, as the runtime's
ml-metadata wrote it."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from airflow_provider_mlpipe.ui.data import build_pipeline_view, build_run_view
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader
from tests.support.airflow_env import REPO, RUNTIME_PYTHON

pytestmark = [pytest.mark.integration]
FIXTURE = REPO / "tests" / "dags" / "mlpipe_ui_fixture.py"


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)]
)
def test_reader_reads_a_server_store_read_only(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server = request.getfixturevalue(backend)
    server.create_database("mlmd_ui")
    config = server.mlmd_config("mlmd_ui")
    csv = str(files("palmerpenguins") / "data" / "penguins.csv")
    runs = [{"run_id": f"r{i}", "span": 20240100 + i, "conf": {}, "root": str(tmp_path), "csv": csv} for i in (1, 2)]
    proc = subprocess.run(
        [RUNTIME_PYTHON, str(FIXTURE), "--batch", json.dumps(runs)],
        env={**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps(config)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("RESULT ", 1)[1])

    reader = MlmdReader.from_config(config)
    assert reader.check_schema() == 10
    assert reader.run_ids("penguins_ui") == ["r1", "r2"]
    view = build_run_view(reader, "penguins_ui", "r2", "penguins_ui")
    assert [e.id for e in view.graph.executions] == sorted(r["execution_id"] for r in results["r2"].values())
    assert [e.state for e in view.graph.executions if e.component == "Transform"] == ["CACHED"]
    assert view.blessing_artifact.id == results["r2"]["evaluator"]["outputs"]["blessing"][0]["id"]
    assert (
        view.anomalies["counts"]
        == results["r2"]["example_validator"]["outputs"]["anomalies"][0]["properties"]["severity_counts"]
    )
    pipeline = build_pipeline_view(reader, "penguins_ui", "penguins_ui", [{"run_id": "r1"}, {"run_id": "r2"}])
    assert [p["version"] for p in pipeline.pushes] == [1, 2] and pipeline.serving_version == 2
    with pytest.raises(Exception, match=r"(?i)read[- ]only"), reader.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM artifact")
