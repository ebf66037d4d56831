"""The UI after a garbage collection: runs whose artifacts were deleted still render, showing them as deleted.

The UI fixture pipeline's real MLMD store and files (spans 1-3, versions 1-2) go through the runtime's real
``gc`` with ``keep_spans: 1`` and ``keep_versions: 1``: span 1's artifacts are deleted and marked DELETED in MLMD,
span 2's (the served model's lineage) stay. Every view of span 1 still renders, and says what was deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.ui import app as ui_app
from tests.support.paths import REPO, RUNTIME_PYTHON
from tests.unit.test_ui_app import DAG, RUNS, FakeBackend, FixtureStore, make_fixture_store, q

RUN1, RUN2, RUN3 = (r for r, _, _ in RUNS)
PIPELINE = "penguins_ui"


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureStore, dict]:
    store = make_fixture_store(tmp_path_factory.mktemp("ui-gc"))
    destination = store.artifact(RUN2, "pusher", "pushed_model")["properties"]["destination"]
    command = [
        RUNTIME_PYTHON, "-m", "airflow_provider_mlpipe.runtime", "gc", PIPELINE, "--pipeline-root", str(store.root),
        "--destination", destination, "--keep-spans", "1", "--keep-versions", "1", "--min-age", "0",
    ]  # fmt: skip
    env = {**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps({"backend": "sqlite", "path": str(store.mlmd)})}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def client(collected: tuple[FixtureStore, dict], tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store, _ = collected
    app = ui_app.create_app(FakeBackend(store, tmp_path_factory.mktemp("unused") / "rollback.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app)


def test_gc_deleted_span_1_and_kept_the_served_lineage(collected: tuple[FixtureStore, dict]) -> None:
    store, plan = collected
    deleted = {e["id"] for e in plan["delete"]}
    # The fixture's transform graph is span 1's, reused by a cache hit: span 1's data stays as its lineage.
    for task, slot in (("trainer", "model"), ("evaluator", "evaluation"), ("example_validator", "anomalies")):
        assert store.artifact(RUN1, task, slot)["id"] in deleted
        assert not Path(store.artifact(RUN1, task, slot)["uri"]).exists()
    for task, slot in (("trainer", "model"), ("evaluator", "blessing"), ("example_gen", "examples")):
        assert store.artifact(RUN2, task, slot)["id"] not in deleted
        assert Path(store.artifact(RUN2, task, slot)["uri"]).is_dir()


def test_the_run_view_of_a_collected_run_renders_and_says_deleted(client: TestClient, collected) -> None:
    store, _ = collected
    page = client.get(f"/run?{q(dag_id=DAG, run_id=RUN1)}")
    assert page.status_code == 200, page.text[-2000:]
    assert "deleted by retention" in page.text
    evaluation = store.artifact(RUN1, "evaluator", "evaluation")
    artifact = client.get(f"/artifact?{q(dag_id=DAG, run_id=RUN1, artifact_id=evaluation['id'])}")
    assert artifact.status_code == 200 and "deleted by retention" in artifact.text
    statistics = store.artifact(RUN2, "statistics_gen", "statistics")
    stats = client.get(f"/stats?{q(dag_id=DAG, run_id=RUN2, artifact_id=statistics['id'], split='train')}")
    assert stats.status_code == 410 and "deleted by retention" in stats.text


def test_the_pipeline_view_and_a_comparison_with_a_collected_run_render(client: TestClient) -> None:
    pipeline = client.get(f"/pipeline?{q(dag_id=DAG)}")
    assert pipeline.status_code == 200, pipeline.text[-2000:]
    compare = client.get(f"/compare?{q(dag_id=DAG, a=RUN1, b=RUN2)}")
    assert compare.status_code == 200, compare.text[-2000:]
    assert "deleted by retention" in compare.text
    task = client.get(f"/task?{q(dag_id=DAG, run_id=RUN1, task_id='evaluator')}")
    assert task.status_code == 200 and "deleted by retention" in task.text
