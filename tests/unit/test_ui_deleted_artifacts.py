"""``mlpipe gc`` end to end, and the UI after it: runs whose artifacts were deleted still render, marked deleted.

The UI fixture pipeline's real MLMD store and files (spans 1-3, versions 1-2) go through ``mlpipe gc --dry-run``
and then ``mlpipe gc``, with a spec whose ``retention`` block keeps 1 span and 1 pushed version: the dry run lists
exactly the artifacts that the real gc then marks DELETED and removes, and every view of the runs still renders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_mlpipe.operators.gc import GcTarget, MlpipeGcOperator
from airflow_provider_mlpipe.spec.validate import load_pipeline
from airflow_provider_mlpipe.ui import app as ui_app
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader
from tests.support.paths import REPO
from tests.support.spec_fixtures import full_spec, make_dags_folder
from tests.unit.test_ui_app import DAG, RUNS, FakeBackend, FixtureStore, make_fixture_store, q

RUN1, RUN2, RUN3 = (r for r, _, _ in RUNS)
PIPELINE = "penguins_ui"
SPAN_1_GONE = (
    ("example_validator", "anomalies"),
    ("trainer", "model"),
    ("evaluator", "evaluation"),
    ("evaluator", "blessing"),
)
SPAN_2_GONE = (("statistics_gen", "statistics"), ("schema_gen", "schema"), ("example_validator", "anomalies"))
RETENTION = "retention: {keep_spans: 1, keep_versions: 1}\nexecution_timeout: 1s\n"


def mlpipe_gc(store: FixtureStore, dags: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    conn = {"conn_type": "mlmd", "schema": "sqlite", "host": str(store.mlmd)}
    env = {**os.environ, "AIRFLOW_HOME": str(dags.parent / "home"), "AIRFLOW_CONN_MLMD_DEFAULT": json.dumps(conn)}
    command = [str(REPO / ".venv" / "bin" / "mlpipe"), "gc", PIPELINE, "--specs", str(dags / "pipelines"), *flags]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureStore, set[int]]:
    """``mlpipe gc --dry-run`` then ``mlpipe gc`` with the spec's retention block; returns what the dry run listed."""
    tmp = tmp_path_factory.mktemp("ui-gc")
    store = make_fixture_store(tmp / "store")
    destination = store.artifact(RUN2, "pusher", "pushed_model")["properties"]["destination"]
    spec = full_spec(PIPELINE, RETENTION).replace("pipeline_root: ../artifacts", f"pipeline_root: {store.root}")
    dags = make_dags_folder(tmp, {PIPELINE: spec.replace(f"../serving/{PIPELINE}", destination)}, dag_file=False)
    time.sleep(1.5)  # every artifact is older than the spec's longest stage timeout (1 s)
    dry = mlpipe_gc(store, dags, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    listed = {int(n) for n in re.findall(r"^  #(\d+) ", dry.stdout.split("Kept:")[0], re.M)}
    assert dry.stdout.startswith(f"mlpipe gc {PIPELINE} (dry run): {len(listed)} artifacts, 1 pushed versions")
    # The retention_gc task's operator, on its own: the same plan, counted in its XCom.
    target = GcTarget.of(load_pipeline(dags / "pipelines" / f"{PIPELINE}.yaml"))
    operator = MlpipeGcOperator(task_id="retention_gc", **dataclasses.asdict(target), dry_run=True)
    conn = {"conn_type": "mlmd", "schema": "sqlite", "host": str(store.mlmd)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MLMD_DEFAULT", json.dumps(conn))
        counted = operator.execute({})
    assert (counted["delete"], counted["prune"], counted["leftovers"]) == (len(listed), 1, 0)
    real = mlpipe_gc(store, dags)
    assert real.returncode == 0, real.stderr[-3000:]
    assert real.stdout.startswith(f"mlpipe gc {PIPELINE}: {len(listed)} artifacts, 1 pushed versions")
    return store, listed


@pytest.fixture(scope="module")
def client(collected: tuple[FixtureStore, set[int]], tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store, _ = collected
    app = ui_app.create_app(FakeBackend(store, tmp_path_factory.mktemp("unused") / "rollback.py"))
    app.dependency_overrides[ui_app.read_access] = lambda: None
    return TestClient(app)


def test_the_dry_run_listed_exactly_what_gc_then_deleted(collected: tuple[FixtureStore, set[int]]) -> None:
    store, listed = collected
    # Span 3 is the newest span; span 2 holds the served (and baseline) model; the fixture's transform graph is
    # span 1's, reused by cache hits, so span 1's examples, statistics and schema are that model's lineage too.
    expected = {store.artifact(RUN1, task, slot)["id"] for task, slot in SPAN_1_GONE}
    expected |= {store.artifact(RUN2, task, slot)["id"] for task, slot in SPAN_2_GONE}
    assert listed == expected
    reader = MlmdReader.from_config({"backend": "sqlite", "path": str(store.mlmd)})
    everything = {
        a["id"] for run in store.results.values() for r in run.values() for arts in r["outputs"].values() for a in arts
    }
    states = {i: a.state for i, a in reader.artifacts(sorted(everything)).items()}
    assert {i for i, state in states.items() if state == "DELETED"} == expected
    for run, gone in ((RUN1, SPAN_1_GONE), (RUN2, SPAN_2_GONE)):
        for task, slot in gone:
            assert not Path(store.artifact(run, task, slot)["uri"]).exists()
    for task, slot in (("trainer", "model"), ("evaluator", "blessing"), ("example_gen", "examples")):
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
    rows = {run: pipeline.text.split(f'<tr data-run="{run}">', 1)[1].split("</tr>", 1)[0] for run in (RUN1, RUN2, RUN3)}
    assert "deleted by retention" in rows[RUN1] and "deleted by retention" in rows[RUN2]
    assert "deleted by retention" not in rows[RUN3]
    accuracy = pipeline.text[pipeline.text.index('aria-label="accuracy"') :].split("</svg>", 1)[0]
    assert "span 20240101" not in accuracy and "span 20240102" in accuracy  # span 1's evaluation is gone
    compare = client.get(f"/compare?{q(dag_id=DAG, a=RUN1, b=RUN2)}")
    assert compare.status_code == 200, compare.text[-2000:]
    assert "deleted by retention" in compare.text
    task = client.get(f"/task?{q(dag_id=DAG, run_id=RUN1, task_id='evaluator')}")
    assert task.status_code == 200 and "deleted by retention" in task.text
